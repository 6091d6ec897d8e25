// live: the stock rows that open pages watch, read from Redis once per instance and
// handed to every event loop, which pushes them to its own pages (GET /v1/stock/stream).
//
// One poller per instance reads the counts of every watched row (in one call per
// kPollBatch rows) every `interval`, and passes on the rows whose counts changed since
// its last read. Redis does the same work however many pages watch: its cost grows with
// the rows watched, never with the pages. Changes of one row are coalesced to one per
// interval. Reading rather than listening also sees logical expiry: a hold whose
// deadline passed stops counting at the next read though nothing wrote to Redis.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "stock/service.hpp"

namespace cartd::stock {

// One watched row as a poll read it: counts, nullopt when Redis does not have it, and
// its offers to carts that waited.
struct RowCounts {
  std::string inventory_id;
  std::optional<LiveCounts> counts;
  std::vector<RowOffer> offers;
};

// What one poll found: the rows whose counts changed, and whether it is time for a
// heartbeat, which keeps quiet streams open through proxies (a stream whose rows do not
// change hears nothing else, however busy the other rows are).
struct LiveChanges {
  std::int64_t at_ms = 0;  // when the poll read them (milliseconds since the epoch)
  std::vector<RowCounts> rows;
  bool heartbeat = false;
};

class LiveStock {
 public:
  using Listener = std::function<void(std::shared_ptr<const LiveChanges>)>;

  LiveStock(std::chrono::milliseconds interval, std::chrono::milliseconds heartbeat,
            std::size_t max_streams);

  // Before start: one per event loop, called on the poller's thread (it posts to its loop).
  void add_listener(Listener listener);

  // Any thread. A stream counts against max_streams from open_stream (false: at the cap)
  // to close_stream.
  bool open_stream();
  void close_stream();
  std::size_t streams() const { return streams_.load(std::memory_order_relaxed); }
  std::size_t max_streams() const { return max_streams_; }
  // Any thread: a stream's rows, counted per stream.
  void watch(const std::vector<std::string>& inventory_ids);
  void unwatch(const std::vector<std::string>& inventory_ids);
  std::size_t rows_watched() const;

  // Polls on `io` (its own thread) through `stock`, until stop (on that thread).
  void start(boost::asio::io_context& io, StockService& stock);
  void stop();

 private:
  void schedule();
  void poll();
  void poll_batch(std::shared_ptr<std::vector<std::string>> ids, std::size_t from,
                  std::shared_ptr<LiveChanges> changes);
  void deliver(std::shared_ptr<LiveChanges> changes);

  const std::chrono::milliseconds interval_;
  const std::chrono::milliseconds heartbeat_;
  const std::size_t max_streams_;
  std::vector<Listener> listeners_;
  std::atomic<std::size_t> streams_{0};
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::size_t> watched_;  // guarded by mutex_
  // The poller's own (its thread only): what each watched row last read as.
  std::unordered_map<std::string, std::optional<WatchedRow>> last_;
  std::chrono::steady_clock::time_point last_heartbeat_{};
  StockService* stock_ = nullptr;
  std::unique_ptr<boost::asio::steady_timer> timer_;
  bool stopped_ = false;
};

}  // namespace cartd::stock
