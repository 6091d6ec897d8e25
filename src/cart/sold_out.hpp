// sold_out: an event loop's short memory of stock rows that had nothing available, so a
// flood of adds after a sell-out is refused without a Redis call. No I/O, one thread.
//
// A row is remembered for `ttl` after Redis answered "insufficient, 0 available". Within
// that time, a request that cannot succeed on such a row (see may_skip in service.cpp) is
// refused at once, as if it had come a moment earlier. Units that come back in between
// (an expiry, an abandon) are offered again when the memory lapses: a refusal may come
// up to `ttl` late to see them, never a hold granted that Redis would refuse.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace cartd::cart {

class SoldOutMemory {
 public:
  using Clock = std::chrono::steady_clock;
  // `ttl` 0 remembers nothing. At most `capacity` rows; a full memory starts afresh.
  explicit SoldOutMemory(std::chrono::milliseconds ttl, std::size_t capacity = 10000)
      : ttl_(ttl), capacity_(capacity) {}

  // `waitlisted`: carts wait on the row, so a cart the request names may hold an offer
  // of its units, which only Redis knows: only requests for new carts are refused here.
  void remember(std::string_view inventory_id, Clock::time_point now, bool waitlisted = false) {
    if (ttl_.count() == 0) return;
    if (rows_.size() >= capacity_) rows_.clear();
    rows_.insert_or_assign(std::string(inventory_id), Entry{now + ttl_, waitlisted});
  }
  // True while the row is remembered as sold out for a request on a new cart, or (when
  // `named_cart`) on a cart that exists.
  bool sold_out(std::string_view inventory_id, Clock::time_point now, bool named_cart = false) {
    if (rows_.empty()) return false;
    auto it = rows_.find(std::string(inventory_id));
    if (it == rows_.end()) return false;
    if (now < it->second.until) return !(named_cart && it->second.waitlisted);
    rows_.erase(it);
    return false;
  }
  void forget(std::string_view inventory_id) { rows_.erase(std::string(inventory_id)); }

 private:
  std::chrono::milliseconds ttl_;
  std::size_t capacity_;
  struct Entry {
    Clock::time_point until;
    bool waitlisted = false;
  };
  std::unordered_map<std::string, Entry> rows_;
};

}  // namespace cartd::cart
