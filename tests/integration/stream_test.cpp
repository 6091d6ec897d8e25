// Live availability: GET /v1/stock/stream pushes each watched row's counts, then every
// change, as Server-Sent Events, read here by a client of our own over a raw socket.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <optional>
#include <thread>

#include "harness.hpp"

namespace cartd::test {
namespace stream_test {

using namespace std::chrono_literals;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "a", "product_id": "a", "name": "A", "price_cents": 100, "on_hand": 5},
  {"inventory_id": "b", "product_id": "b", "name": "B", "price_cents": 100, "on_hand": 3}
])json";

std::int64_t num(const boost::json::object& o, const char* key) {
  return o.at(key).as_int64();
}

std::string new_cart(Cartd& cartd) {
  auto r = cartd.post("/v1/carts", "");
  EXPECT_EQ(r.status, 201u) << r.body;
  return std::string(r.json().at("id").as_string());
}

void set_line(Cartd& cartd, const std::string& cart, const std::string& inv, int qty) {
  auto r = http(cartd.port(), "PUT", "/v1/carts/" + cart + "/items/" + inv,
                R"({"inventory_id":")" + inv + R"(","quantity":)" + std::to_string(qty) + "}");
  ASSERT_EQ(r.status, 200u) << r.body;
}

double gauge(Cartd& cartd, const std::string& name) {
  auto body = cartd.get("/metrics").body;
  auto at = body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(body.substr(at + name.size() + 2));
}

TEST(Stream, a_page_hears_the_current_counts_then_each_change_once) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  EventStreamClient page(cartd.port(), "/v1/stock/stream?inventory_id=a&inventory_id=b");
  std::string head = page.head();
  ASSERT_TRUE(head.starts_with("HTTP/1.1 200")) << head;
  EXPECT_NE(head.find("Content-Type: text/event-stream"), std::string::npos) << head;
  EXPECT_NE(head.find("Cache-Control: no-store"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;

  auto a = page.next(3s);
  ASSERT_TRUE(a) << page.raw();
  EXPECT_EQ(a->event, "stock");
  EXPECT_FALSE(a->id.empty());
  EXPECT_EQ(a->data, R"({"inventory_id":"a","available":5,"on_hand":5,"reserved":0})");
  auto b = page.next(3s);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->data, R"({"inventory_id":"b","available":3,"on_hand":3,"reserved":0})");

  std::string cart = new_cart(cartd);
  set_line(cartd, cart, "a", 2);
  auto held = page.next(3s);
  ASSERT_TRUE(held) << "the change reaches the page";
  EXPECT_EQ(held->data, R"({"inventory_id":"a","available":3,"on_hand":5,"reserved":2})");

  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + cart).status, 200u);
  auto back = page.next(3s);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->data, R"({"inventory_id":"a","available":5,"on_hand":5,"reserved":0})");

  // b never changed: the page heard of it once.
  EXPECT_FALSE(page.next(1s)) << "no event without a change: " << page.raw();
}

TEST(Stream, a_hold_that_expires_is_heard_though_nothing_writes_to_redis) {
  RedisServer redis;
  // No sweeper and no keyspace events: only logical expiry returns the units.
  Cartd cartd(redis, kCatalog,
              {"--cart-ttl", "1", "--sweep-interval-ms", "0", "--no-keyspace-events"});
  std::string cart = new_cart(cartd);
  set_line(cartd, cart, "a", 1);
  EventStreamClient page(cartd.port(), "/v1/stock/stream?inventory_id=a");
  ASSERT_TRUE(page.head().starts_with("HTTP/1.1 200"));
  auto first = page.next_for("a", 3s);
  ASSERT_TRUE(first);
  EXPECT_EQ(num(*first, "reserved"), 1);
  auto expired = page.next_for("a", 5s);
  ASSERT_TRUE(expired) << "the deadline passed";
  EXPECT_EQ(num(*expired, "reserved"), 0);
  EXPECT_EQ(num(*expired, "available"), 5);
}

TEST(Stream, an_admin_change_reaches_the_page) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--admin-token", "t0ken"});
  EventStreamClient page(cartd.port(), "/v1/stock/stream?inventory_id=b");
  ASSERT_TRUE(page.head().starts_with("HTTP/1.1 200"));
  ASSERT_TRUE(page.next_for("b", 3s));
  auto r = http(cartd.port(), "POST", "/v1/stock/b/adjust", R"({"delta":4})",
                {{"Authorization", "Bearer t0ken"}, {"Idempotency-Key", "restock-1"}});
  ASSERT_EQ(r.status, 200u) << r.body;
  auto restocked = page.next_for("b", 3s);
  ASSERT_TRUE(restocked);
  EXPECT_EQ(num(*restocked, "on_hand"), 7);
  EXPECT_EQ(num(*restocked, "available"), 7);
}

std::pair<unsigned, std::string> refused(Cartd& cartd, const std::string& target) {
  EventStreamClient c(cartd.port(), target, true);
  std::string head = c.head();
  unsigned status = head.size() > 12 ? static_cast<unsigned>(std::stoi(head.substr(9, 3))) : 0;
  return {status, c.rest()};
}

TEST(Stream, bad_requests_are_json_errors) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--stream-max-rows", "2"});
  auto code = [](const std::string& body) {
    return std::string(boost::json::parse(body).at("error").at("code").as_string());
  };
  auto [s1, b1] = refused(cartd, "/v1/stock/stream");
  EXPECT_EQ(s1, 400u);
  EXPECT_EQ(code(b1), "missing_field");
  auto [s2, b2] = refused(cartd, "/v1/stock/stream?inventory_id=a%20b");
  EXPECT_EQ(s2, 400u);
  EXPECT_EQ(code(b2), "invalid_id");
  auto [s3, b3] = refused(cartd, "/v1/stock/stream?inventory_id=a&inventory_id=b&inventory_id=c");
  EXPECT_EQ(s3, 400u);
  EXPECT_EQ(code(b3), "too_many_rows");
  EXPECT_EQ(boost::json::parse(b3).at("error").at("max_rows").as_int64(), 2);
  auto [s4, b4] = refused(cartd, "/v1/stock/stream?inventory_id=a&inventory_id=nope");
  EXPECT_EQ(s4, 404u);
  EXPECT_EQ(code(b4), "unknown_inventory");
  // The same row twice is watched once.
  EventStreamClient twice(cartd.port(),
                          "/v1/stock/stream?inventory_id=a&inventory_id=a&inventory_id=b");
  EXPECT_TRUE(twice.head().starts_with("HTTP/1.1 200"));
  // None of the refused ones holds a place or a row.
  EXPECT_TRUE(eventually([&] { return gauge(cartd, "cartd_streams_open") == 1; }, 2s));
  EXPECT_EQ(gauge(cartd, "cartd_stream_rows_watched"), 2);
}

TEST(Stream, the_stream_cap_refuses_with_503_and_a_closed_page_gives_its_place_back) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--max-streams", "1"});
  {
    EventStreamClient first(cartd.port(), "/v1/stock/stream?inventory_id=a");
    ASSERT_TRUE(first.head().starts_with("HTTP/1.1 200"));
    auto [status, body] = refused(cartd, "/v1/stock/stream?inventory_id=b");
    EXPECT_EQ(status, 503u) << body;
    EXPECT_NE(body.find("\"unavailable\""), std::string::npos) << body;
    EXPECT_EQ(gauge(cartd, "cartd_stream_rows_watched"), 1);
  }
  EXPECT_TRUE(eventually([&] { return gauge(cartd, "cartd_streams_open") == 0; }, 3s))
      << "the page left";
  EXPECT_EQ(gauge(cartd, "cartd_stream_rows_watched"), 0);
  EventStreamClient again(cartd.port(), "/v1/stock/stream?inventory_id=b");
  EXPECT_TRUE(again.head().starts_with("HTTP/1.1 200"));
}

TEST(Stream, quiet_streams_hear_heartbeats_while_other_rows_change_and_shutdown_closes_them) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--stream-heartbeat-ms", "1000"});
  EventStreamClient busy(cartd.port(), "/v1/stock/stream?inventory_id=a");
  ASSERT_TRUE(busy.head().starts_with("HTTP/1.1 200"));
  EventStreamClient page(cartd.port(), "/v1/stock/stream?inventory_id=b");
  ASSERT_TRUE(page.head().starts_with("HTTP/1.1 200"));
  ASSERT_TRUE(page.next_for("b", 3s));
  // Row a changes every 200 ms meanwhile: b's page hears nothing of it, but heartbeats.
  std::string cart = new_cart(cartd);
  std::atomic<bool> stop{false};
  std::thread changer([&] {
    for (int q = 1; !stop; q = q % 3 + 1) {
      set_line(cartd, cart, "a", q);
      std::this_thread::sleep_for(200ms);
    }
  });
  EXPECT_FALSE(page.next(2500ms));
  stop = true;
  changer.join();
  EXPECT_GE(page.comments(), 1) << "a heartbeat comment: " << page.raw();

  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(cartd.stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s) << "the stream did not hold it up";
  page.next(1s);
  EXPECT_TRUE(page.closed());
}

TEST(Stream, a_head_request_opens_no_stream) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  auto r = http(cartd.port(), "HEAD", "/v1/stock/stream?inventory_id=a", "", {}, 3s);
  EXPECT_EQ(r.status, 200u);
  EXPECT_TRUE(eventually([&] { return gauge(cartd, "cartd_streams_open") == 0; }, 2s));
  EXPECT_EQ(gauge(cartd, "cartd_stream_rows_watched"), 0);
}

}  // namespace stream_test
}  // namespace cartd::test
