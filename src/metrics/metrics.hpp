// metrics: what cartd counts, and its Prometheus text exposition (GET /metrics).
//
// Counting happens on the request path, so it must not take a lock or contend for a
// cache line: each thread that counts (an event loop, the housekeeper) has a Shard of
// its own, written by that thread only (a relaxed load and store, no locked
// read-modify-write), and a scrape adds the shards up. prometheus-cpp's own Histogram
// takes a mutex on every Observe and its Counter is one atomic shared by every thread,
// so the shards keep the counts and prometheus-cpp only describes and writes them
// (MetricFamily, TextSerializer): the format is never written by hand.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cartd::metrics {

// A count written by one thread and read by any: the writer needs no atomic
// read-modify-write because no other thread writes it.
class Cell {
 public:
  void add(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(std::uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// Upper bounds (seconds) of the latency buckets: from a Redis reply on loopback (about
// 50 us) to a request that waited on the main DB or a Redis timeout.
inline constexpr std::array<double, 14> kLatencyBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

class LatencyHistogram {
 public:
  void observe(std::chrono::steady_clock::duration elapsed);
  // Count per bucket (not cumulative); the last is above every bound (+Inf).
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> counts() const;
  std::uint64_t sum_ns() const { return sum_ns_.value(); }

 private:
  std::array<Cell, kLatencyBuckets.size() + 1> buckets_;
  Cell sum_ns_;
};

// The label values of each counter, in the order of their enum.
enum class HoldResult : std::size_t { ok, insufficient, refused, error, count };
inline constexpr std::array<std::string_view, 4> kHoldResults = {"ok", "insufficient", "refused",
                                                                 "error"};

enum class ReleasePath : std::size_t { logical, sweeper, abandon, checkout, count };
inline constexpr std::array<std::string_view, 4> kReleasePaths = {"logical", "sweeper", "abandon",
                                                                  "checkout"};

enum class CheckoutResult : std::size_t {
  created,            // 201: this call made the order
  existing,           // 200: the same key again, the order it made
  conflict,           // 409: another key, or one in progress
  expired,            // 410
  not_found,          // 404
  empty,              // 422
  aborted,            // 409 checkout_aborted: recovery fenced it first
  stock_unavailable,  // 409: the main DB refused it (a broken hold promise)
  error,              // 503: Redis or the main DB failed
  count
};
inline constexpr std::array<std::string_view, 9> kCheckoutResults = {
    "created", "existing", "conflict",          "expired", "not_found",
    "empty",   "aborted",  "stock_unavailable", "error"};

// The route label of a request no route pattern matched (404, 400 for a bad target,
// a request refused before routing).
inline constexpr std::string_view kUnmatchedRoute = "unmatched";
// Status codes are counted by value in one slot each, from 100 to 599.
inline constexpr unsigned kFirstStatus = 100;
inline constexpr unsigned kStatusSlots = 500;

// The counts of one thread. Built, and given its routes, before that thread serves.
class Shard {
 public:
  // The router's patterns: route i of count_request is patterns[i]; i == patterns.size()
  // (or any larger index) is kUnmatchedRoute.
  void set_routes(const std::vector<std::string>& patterns);

  void count_request(std::size_t route, unsigned status,
                     std::chrono::steady_clock::duration elapsed);
  LatencyHistogram& redis_latency() { return redis_latency_; }
  void count_hold(HoldResult r) { holds_[static_cast<std::size_t>(r)].add(); }
  void count_released(ReleasePath p, std::int64_t units) {
    if (units > 0) released_[static_cast<std::size_t>(p)].add(static_cast<std::uint64_t>(units));
  }
  void count_checkout(CheckoutResult r) { checkouts_[static_cast<std::size_t>(r)].add(); }
  void count_broken_promise() { broken_promises_.add(); }
  void connection_opened() { open_connections_.add(); }
  void connection_closed() { open_connections_.sub(); }

 private:
  friend class Registry;
  struct Route {
    std::string pattern;
    std::array<Cell, kStatusSlots> by_status;
    LatencyHistogram duration;
  };
  std::vector<std::unique_ptr<Route>> routes_;  // the last one is kUnmatchedRoute
  LatencyHistogram redis_latency_;
  std::array<Cell, kHoldResults.size()> holds_;
  std::array<Cell, kReleasePaths.size()> released_;
  std::array<Cell, kCheckoutResults.size()> checkouts_;
  Cell broken_promises_;
  Cell open_connections_;
};

// Every shard of the process and the gauges read at scrape time. Shards and gauges are
// added before the threads start; scrape() runs on any thread after that.
class Registry {
 public:
  Shard& add_shard();
  // A gauge computed when scraped; `read` runs on the scraping thread.
  void add_gauge(std::string name, std::string help, std::function<double()> read);
  // A counter with one label, read when scraped: `read` answers a count for each of
  // `values`, in their order, on the scraping thread.
  void add_counter(std::string name, std::string help, std::string label,
                   std::vector<std::string> values,
                   std::function<std::vector<std::uint64_t>()> read);
  // Every metric in the Prometheus text format, version 0.0.4.
  [[nodiscard]] std::string scrape() const;

 private:
  struct Gauge {
    std::string name;
    std::string help;
    std::function<double()> read;
  };
  struct Counter {
    std::string name;
    std::string help;
    std::string label;
    std::vector<std::string> values;
    std::function<std::vector<std::uint64_t>()> read;
  };
  std::deque<Shard> shards_;  // a deque: shards do not move once added
  std::vector<Gauge> gauges_;
  std::vector<Counter> counters_;
};

// The Content-Type of scrape()'s text.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace cartd::metrics
