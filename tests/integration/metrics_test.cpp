// GET /metrics: the counters move with what cartd does, labels stay bounded (route
// patterns, never raw paths), and the output is the Prometheus text format.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "harness.hpp"

namespace cartd::test {
namespace metrics_test {

using namespace std::chrono_literals;

constexpr const char* kCatalog = R"([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 100, "on_hand": 5},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 200, "on_hand": 5}])";

// Samples by series ("name{label="value",...}" as written) of one scrape, after checking
// the text: every sample's family has a # TYPE before it, values parse, histogram
// buckets are cumulative and end at +Inf with the count.
std::map<std::string, double> parse_exposition(const std::string& text) {
  std::map<std::string, std::string> types;
  std::map<std::string, double> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_EQ(types.count(name), 0u) << "one # TYPE per family: " << line;
      types[name] = type;
      continue;
    }
    if (line[0] == '#') continue;  // # HELP
    auto space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    if (space == std::string::npos) continue;
    std::string series = line.substr(0, space);
    std::string name = series.substr(0, series.find('{'));
    EXPECT_EQ(name.rfind("cartd_", 0), 0u) << "every name starts with cartd_: " << line;
    std::string family = name;
    for (std::string suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && family.ends_with(suffix)) {
        family = family.substr(0, family.size() - suffix.size());
      }
    }
    EXPECT_EQ(types.count(family), 1u) << "a sample without # TYPE: " << line;
    if (family != name) {
      EXPECT_EQ(types[family], "histogram") << line;
    }
    std::string value = line.substr(space + 1);
    double v = value == "+Inf" ? 1e300 : std::stod(value);
    samples[series] = v;
  }
  // Buckets: cumulative, and the +Inf one equals _count.
  for (const auto& [series, v] : samples) {
    if (series.find("_bucket{") == std::string::npos ||
        series.find("le=\"+Inf\"") == std::string::npos) {
      continue;
    }
    std::string family = series.substr(0, series.find("_bucket{"));
    std::string labels = series.substr(series.find('{'));
    std::string rest = labels.substr(0, labels.find("le=\"+Inf\""));
    // The series of the same histogram without le: {route="x",} -> {route="x"} or none.
    std::string count_key = family + "_count";
    if (rest != "{") count_key += rest.substr(0, rest.size() - 1) + "}";
    EXPECT_EQ(samples.count(count_key), 1u) << count_key;
    EXPECT_EQ(samples[count_key], v) << "+Inf bucket equals the count: " << series;
  }
  return samples;
}

struct Scrape {
  std::map<std::string, double> samples;
  std::string text;
  double operator[](const std::string& series) const {
    auto it = samples.find(series);
    return it == samples.end() ? 0 : it->second;
  }
};

Scrape scrape(Cartd& cartd) {
  auto r = cartd.get("/metrics");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.headers["content-type"].rfind("text/plain; version=0.0.4", 0), 0u)
      << r.headers["content-type"];
  return Scrape{parse_exposition(r.body), r.body};
}

std::string add_line(Cartd& cartd, const std::string& cart, const std::string& inv, int qty,
                     unsigned expect = 200) {
  auto r = cartd.post("/v1/carts/" + cart + "/items",
                      R"({"product_id":")" + inv + R"(","inventory_id":")" + inv +
                          R"(","quantity":)" + std::to_string(qty) + "}");
  EXPECT_EQ(r.status, expect) << r.body;
  return r.body;
}

std::string new_cart(Cartd& cartd) {
  auto r = cartd.post("/v1/carts", "");
  EXPECT_EQ(r.status, 201u) << r.body;
  return std::string(r.json().at("id").as_string());
}

const std::string kItems = R"(cartd_http_requests_total{code="200",route="/v1/carts/{id}/items"})";

TEST(Metrics, counters_move_with_adds_a_checkout_and_an_abandon) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--cart-ttl", "1", "--sweep-interval-ms", "0"});
  Scrape before = scrape(cartd);
  EXPECT_EQ(before["cartd_redis_up"], 1);

  std::string bought = new_cart(cartd);
  add_line(cartd, bought, "mug", 2);
  add_line(cartd, bought, "mug", 10, 409);  // 2 + 10 > 5: insufficient
  auto order = cartd.post("/v1/carts/" + bought + "/checkout", "", {{"Idempotency-Key", "k1"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  auto again = cartd.post("/v1/carts/" + bought + "/checkout", "", {{"Idempotency-Key", "k1"}});
  ASSERT_EQ(again.status, 200u) << again.body;

  std::string abandoned = new_cart(cartd);
  add_line(cartd, abandoned, "cap", 1);
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + abandoned).status, 200u);

  EXPECT_EQ(cartd.get("/no/such/path").status, 404u);
  Scrape after = scrape(cartd);

  EXPECT_EQ(after[kItems] - before[kItems], 2);
  EXPECT_EQ(after[R"(cartd_http_requests_total{code="409",route="/v1/carts/{id}/items"})"], 1);
  EXPECT_EQ(after[R"(cartd_http_requests_total{code="201",route="/v1/carts/{id}/checkout"})"], 1);
  EXPECT_EQ(after[R"(cartd_http_requests_total{code="404",route="unmatched"})"], 1);
  EXPECT_GE(after[R"(cartd_http_request_duration_seconds_count{route="/v1/carts/{id}/items"})"], 3);
  EXPECT_EQ(after.text.find(bought), std::string::npos) << "no raw path in a label";

  EXPECT_EQ(after[R"(cartd_holds_total{result="ok"})"], 2);
  EXPECT_EQ(after[R"(cartd_holds_total{result="insufficient"})"], 1);
  EXPECT_EQ(after[R"(cartd_checkouts_total{result="created"})"], 1);
  EXPECT_EQ(after[R"(cartd_checkouts_total{result="existing"})"], 1);
  EXPECT_EQ(after["cartd_broken_hold_promises_total"], 0);
  EXPECT_EQ(after[R"(cartd_units_released_total{path="checkout"})"], 2);
  EXPECT_EQ(after[R"(cartd_units_released_total{path="abandon"})"], 1);
  EXPECT_EQ(after[R"(cartd_units_released_total{path="sweeper"})"], 0);

  EXPECT_GT(after["cartd_redis_command_duration_seconds_count"],
            before["cartd_redis_command_duration_seconds_count"]);
  EXPECT_GE(after["cartd_open_connections"], 1) << "the scrape's own connection";
  EXPECT_LT(after["cartd_db_sync_lag_seconds"], 5) << "the writer keeps up";
  EXPECT_EQ(after["cartd_redis_up"], 1);
}

TEST(Metrics, units_dropped_by_logical_expiry_are_counted_where_dropped) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog,
              {"--cart-ttl", "1", "--no-keyspace-events", "--sweep-interval-ms", "0"});
  std::string first = new_cart(cartd);
  add_line(cartd, first, "mug", 4);
  std::this_thread::sleep_for(1200ms);
  // The next line change on the row drops the expired hold (logical expiry).
  std::string second = new_cart(cartd);
  add_line(cartd, second, "mug", 5);
  Scrape logical = scrape(cartd);
  EXPECT_EQ(logical[R"(cartd_units_released_total{path="logical"})"], 4);
  EXPECT_EQ(logical[R"(cartd_holds_total{result="ok"})"], 2);
}

TEST(Metrics, sweeper_releases_are_counted) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog,
              {"--cart-ttl", "1", "--no-keyspace-events", "--sweep-interval-ms", "100"});
  std::string cart = new_cart(cartd);
  add_line(cartd, cart, "cap", 2);
  Scrape after;
  EXPECT_TRUE(eventually(
      [&] {
        after = scrape(cartd);
        return after[R"(cartd_units_released_total{path="sweeper"})"] == 2;
      },
      5s))
      << after.text;
}

TEST(Metrics, redis_up_falls_to_zero_while_redis_is_down) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  EXPECT_EQ(scrape(cartd)["cartd_redis_up"], 1);
  redis.stop();
  EXPECT_TRUE(eventually([&] { return scrape(cartd)["cartd_redis_up"] == 0; }, 3s));
  redis.start();
  EXPECT_TRUE(eventually([&] { return scrape(cartd)["cartd_redis_up"] == 1; }, 5s));
}

}  // namespace metrics_test
}  // namespace cartd::test
