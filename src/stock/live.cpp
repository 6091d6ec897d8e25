#include "stock/live.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "base/clock.hpp"

namespace cartd::stock {
namespace {

// Rows per Redis call of one poll: a call blocks Redis while it runs, so a page watching
// many rows never makes one long call.
constexpr std::size_t kPollBatch = 256;

}  // namespace

LiveStock::LiveStock(std::chrono::milliseconds interval, std::chrono::milliseconds heartbeat,
                     std::size_t max_streams)
    : interval_(interval), heartbeat_(heartbeat), max_streams_(max_streams) {}

void LiveStock::add_listener(Listener listener) {
  listeners_.push_back(std::move(listener));
}

bool LiveStock::open_stream() {
  std::size_t n = streams_.load(std::memory_order_relaxed);
  do {
    if (n >= max_streams_) return false;
  } while (!streams_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

void LiveStock::close_stream() {
  streams_.fetch_sub(1, std::memory_order_relaxed);
}

void LiveStock::watch(const std::vector<std::string>& ids) {
  std::lock_guard lock(mutex_);
  for (const std::string& id : ids) ++watched_[id];
}

void LiveStock::unwatch(const std::vector<std::string>& ids) {
  std::lock_guard lock(mutex_);
  for (const std::string& id : ids) {
    auto at = watched_.find(id);
    if (at != watched_.end() && --at->second == 0) watched_.erase(at);
  }
}

std::size_t LiveStock::rows_watched() const {
  std::lock_guard lock(mutex_);
  return watched_.size();
}

void LiveStock::start(boost::asio::io_context& io, StockService& stock) {
  stock_ = &stock;
  timer_ = std::make_unique<boost::asio::steady_timer>(io);
  last_heartbeat_ = std::chrono::steady_clock::now();
  schedule();
}

// On the poller's thread. The timer goes now: it belongs to that thread's io_context,
// which is destroyed before this object; a poll still in flight ends at schedule().
void LiveStock::stop() {
  stopped_ = true;
  timer_.reset();
}

void LiveStock::schedule() {
  if (stopped_) return;
  timer_->expires_after(interval_);
  timer_->async_wait([this](boost::system::error_code ec) {
    if (!ec) poll();
  });
}

void LiveStock::poll() {
  auto ids = std::make_shared<std::vector<std::string>>();
  {
    std::lock_guard lock(mutex_);
    ids->reserve(watched_.size());
    for (const auto& [id, n] : watched_) ids->push_back(id);
    // Rows nobody watches any more are forgotten: a page that watches one again gets
    // its counts from its own first read, and the next poll sees them as new.
    std::erase_if(last_, [&](const auto& row) { return !watched_.contains(row.first); });
  }
  poll_batch(ids, 0, std::make_shared<LiveChanges>());
}

void LiveStock::poll_batch(std::shared_ptr<std::vector<std::string>> ids, std::size_t from,
                           std::shared_ptr<LiveChanges> changes) {
  if (from >= ids->size()) return deliver(std::move(changes));
  std::size_t to = std::min(ids->size(), from + kPollBatch);
  std::vector<std::string> batch(ids->begin() + static_cast<std::ptrdiff_t>(from),
                                 ids->begin() + static_cast<std::ptrdiff_t>(to));
  stock_->watch(batch, [this, ids, from, to, changes](auto r) {
    if (!r) {
      // Redis is away: pages keep what they have and hear the next change once it is
      // back. Changes read by this poll's earlier batches are passed on: the poller has
      // taken them as seen.
      spdlog::debug("live stock: poll failed: {}", r.error().message());
      return deliver(changes);
    }
    changes->at_ms = epoch_ms();
    for (std::size_t i = from; i < to; ++i) {
      std::optional<WatchedRow>& now = (*r)[i - from];
      auto [at, fresh] = last_.try_emplace((*ids)[i], now);
      if (!fresh && at->second == now) continue;
      at->second = now;
      if (now) {
        changes->rows.push_back(RowCounts{(*ids)[i], now->counts, std::move(now->offers)});
      } else {
        changes->rows.push_back(RowCounts{(*ids)[i], std::nullopt, {}});
      }
    }
    poll_batch(ids, to, changes);
  });
}

void LiveStock::deliver(std::shared_ptr<LiveChanges> changes) {
  auto now = std::chrono::steady_clock::now();
  changes->heartbeat = now - last_heartbeat_ >= heartbeat_;
  if (changes->heartbeat) last_heartbeat_ = now;
  if (!changes->rows.empty() || changes->heartbeat) {
    if (changes->at_ms == 0) changes->at_ms = epoch_ms();
    std::shared_ptr<const LiveChanges> shared = std::move(changes);
    for (const Listener& l : listeners_) l(shared);
  }
  schedule();
}

}  // namespace cartd::stock
