// LineHints: what one event loop last saw of carts' lines, on a Redis Cluster, to guess
// whether a set-mode line change grows its line. A change that grows goes to its row
// first and is two steps instead of three (src/cart/split.cpp, cartd_line_grown); a
// guess that is wrong (another loop or instance changed the cart since) costs a step and
// nothing else: the row and the cart check what the guess assumed. Bounded: forgotten all
// at once when full.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cartd::cart {

class LineHints {
 public:
  using Lines = std::vector<std::pair<std::string, std::int64_t>>;  // product_id, quantity

  explicit LineHints(std::size_t most_carts = 100'000) : most_(most_carts) {}

  // The quantity of cart `sid`'s line of `product_id` when last seen (0: no such line),
  // or nothing when the cart was not seen.
  std::optional<std::int64_t> quantity(const std::string& sid,
                                       const std::string& product_id) const {
    auto cart = carts_.find(sid);
    if (cart == carts_.end()) return std::nullopt;
    for (const auto& [pid, qty] : cart->second) {
      if (pid == product_id) return qty;
    }
    return 0;
  }
  void remember(const std::string& sid, Lines lines) {
    if (carts_.size() >= most_ && !carts_.contains(sid)) carts_.clear();
    carts_[sid] = std::move(lines);
  }
  // Cart `sid`'s line of `product_id` is `quantity` now (0: gone), if the cart was seen.
  void note(const std::string& sid, const std::string& product_id, std::int64_t quantity) {
    auto cart = carts_.find(sid);
    if (cart == carts_.end()) return;
    Lines& lines = cart->second;
    std::erase_if(lines, [&](const auto& l) { return l.first == product_id; });
    if (quantity > 0) lines.emplace_back(product_id, quantity);
  }
  void forget(const std::string& sid) { carts_.erase(sid); }

 private:
  std::size_t most_;
  std::unordered_map<std::string, Lines> carts_;
};

}  // namespace cartd::cart
