#include "metrics/metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <limits>
#include <map>
#include <sstream>

namespace cartd::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr double kNanosPerSecond = 1e9;

// A histogram's buckets, added up over shards.
struct HistogramSum {
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> counts{};
  std::uint64_t sum_ns = 0;

  void add(const LatencyHistogram& h) {
    auto c = h.counts();
    for (std::size_t i = 0; i < counts.size(); ++i) counts[i] += c[i];
    sum_ns += h.sum_ns();
  }

  ClientMetric metric(std::vector<ClientMetric::Label> labels) const {
    ClientMetric m;
    m.label = std::move(labels);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i];
      double bound =
          i < kLatencyBuckets.size() ? kLatencyBuckets[i] : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back({cumulative, bound});
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = static_cast<double>(sum_ns) / kNanosPerSecond;
    return m;
  }
};

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric counter(std::vector<ClientMetric::Label> labels, std::uint64_t value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = static_cast<double>(value);
  return m;
}

// One counter family with one label whose values are `names`, summed over shards by
// `cells` (which picks a shard's array of cells).
template <std::size_t N, typename Cells>
MetricFamily labelled_counter(std::string name, std::string help, std::string label,
                              const std::array<std::string_view, N>& names,
                              const std::deque<Shard>& shards, Cells cells) {
  MetricFamily f = family(std::move(name), std::move(help), MetricType::Counter);
  for (std::size_t i = 0; i < N; ++i) {
    std::uint64_t total = 0;
    for (const Shard& s : shards) total += cells(s)[i].value();
    f.metric.push_back(counter({{label, std::string(names[i])}}, total));
  }
  return f;
}

}  // namespace

void LatencyHistogram::observe(std::chrono::steady_clock::duration elapsed) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
  if (ns < 0) ns = 0;
  double seconds = static_cast<double>(ns) / kNanosPerSecond;
  std::size_t i = 0;
  while (i < kLatencyBuckets.size() && seconds > kLatencyBuckets[i]) ++i;
  buckets_[i].add();
  sum_ns_.add(static_cast<std::uint64_t>(ns));
}

std::array<std::uint64_t, kLatencyBuckets.size() + 1> LatencyHistogram::counts() const {
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].value();
  return out;
}

void Shard::set_routes(const std::vector<std::string>& patterns) {
  routes_.clear();
  for (const std::string& p : patterns) {
    routes_.push_back(std::make_unique<Route>());
    routes_.back()->pattern = p;
  }
  routes_.push_back(std::make_unique<Route>());
  routes_.back()->pattern = std::string(kUnmatchedRoute);
}

void Shard::count_request(std::size_t route, unsigned status,
                          std::chrono::steady_clock::duration elapsed) {
  if (routes_.empty()) return;  // a server without metrics routes (tests)
  Route& r = *routes_[std::min(route, routes_.size() - 1)];
  if (status >= kFirstStatus && status < kFirstStatus + kStatusSlots) {
    r.by_status[status - kFirstStatus].add();
  }
  r.duration.observe(elapsed);
}

Shard& Registry::add_shard() {
  return shards_.emplace_back();
}

void Registry::add_gauge(std::string name, std::string help, std::function<double()> read) {
  gauges_.push_back(Gauge{std::move(name), std::move(help), std::move(read)});
}

void Registry::add_counter(std::string name, std::string help, std::string label,
                           std::vector<std::string> values,
                           std::function<std::vector<std::uint64_t>()> read) {
  counters_.push_back(Counter{std::move(name), std::move(help), std::move(label), std::move(values),
                              std::move(read)});
}

std::string Registry::scrape() const {
  std::vector<MetricFamily> families;

  // HTTP: summed by route pattern (every loop has the same routes, but nothing here
  // relies on their order).
  std::map<std::string, std::array<std::uint64_t, kStatusSlots>> requests;
  std::map<std::string, HistogramSum> durations;
  for (const Shard& s : shards_) {
    for (const auto& route : s.routes_) {
      auto& by_status = requests.try_emplace(route->pattern).first->second;
      for (std::size_t i = 0; i < kStatusSlots; ++i) by_status[i] += route->by_status[i].value();
      durations[route->pattern].add(route->duration);
    }
  }
  MetricFamily total =
      family("cartd_http_requests_total",
             "HTTP requests answered, by route pattern and status code", MetricType::Counter);
  for (const auto& [route, by_status] : requests) {
    for (std::size_t i = 0; i < kStatusSlots; ++i) {
      if (by_status[i] == 0) continue;
      total.metric.push_back(
          counter({{"code", std::to_string(kFirstStatus + i)}, {"route", route}}, by_status[i]));
    }
  }
  families.push_back(std::move(total));
  MetricFamily duration =
      family("cartd_http_request_duration_seconds",
             "Time from a request read whole to its answer handed to the socket, by route pattern",
             MetricType::Histogram);
  for (const auto& [route, sum] : durations) {
    if (sum.counts == decltype(sum.counts){}) continue;  // a route never asked for
    duration.metric.push_back(sum.metric({{"route", route}}));
  }
  families.push_back(std::move(duration));

  HistogramSum redis;
  for (const Shard& s : shards_) redis.add(s.redis_latency_);
  MetricFamily redis_family =
      family("cartd_redis_command_duration_seconds",
             "Time from a Redis command sent to its reply, over every connection of the process",
             MetricType::Histogram);
  redis_family.metric.push_back(redis.metric({}));
  families.push_back(std::move(redis_family));

  families.push_back(labelled_counter(
      "cartd_holds_total",
      "Cart line changes (set, add, remove) by result: ok, insufficient (not enough units "
      "free), refused (unknown row, product mismatch, a limit, no cart, checkout in "
      "progress), error (Redis failed)",
      "result", kHoldResults, shards_, [](const Shard& s) -> auto& { return s.holds_; }));
  families.push_back(labelled_counter(
      "cartd_units_released_total",
      "Held units returned to stock, by path. logical: expired holds dropped by line changes "
      "(drops by stock reads and admin changes are not counted); sweeper: expired holds "
      "dropped by the sweeper; abandon: abandoned carts; checkout: holds turned into an order",
      "path", kReleasePaths, shards_, [](const Shard& s) -> auto& { return s.released_; }));
  families.push_back(labelled_counter(
      "cartd_checkouts_total", "Checkout requests by result (recovery is not counted)", "result",
      kCheckoutResults, shards_, [](const Shard& s) -> auto& { return s.checkouts_; }));

  MetricFamily broken = family("cartd_broken_hold_promises_total",
                               "Checkouts the main DB refused because it had fewer units on hand "
                               "than the cart held",
                               MetricType::Counter);
  std::uint64_t broken_total = 0;
  std::uint64_t open_total = 0;
  for (const Shard& s : shards_) {
    broken_total += s.broken_promises_.value();
    open_total += s.open_connections_.value();
  }
  broken.metric.push_back(counter({}, broken_total));
  families.push_back(std::move(broken));

  MetricFamily open =
      family("cartd_open_connections", "Open client HTTP connections", MetricType::Gauge);
  ClientMetric open_metric;
  open_metric.gauge.value = static_cast<double>(open_total);
  open.metric.push_back(open_metric);
  families.push_back(std::move(open));

  for (const Gauge& g : gauges_) {
    MetricFamily f = family(g.name, g.help, MetricType::Gauge);
    ClientMetric m;
    m.gauge.value = g.read();
    f.metric.push_back(m);
    families.push_back(std::move(f));
  }

  for (const Counter& c : counters_) {
    MetricFamily f = family(c.name, c.help, MetricType::Counter);
    std::vector<std::uint64_t> counts = c.read();
    for (std::size_t i = 0; i < c.values.size() && i < counts.size(); ++i) {
      f.metric.push_back(counter({{c.label, c.values[i]}}, counts[i]));
    }
    families.push_back(std::move(f));
  }

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace cartd::metrics
