// The sold-out short-circuit: after a row sells out, adds that cannot succeed are refused
// by the event loop without a Redis call, for --sold-out-memory-ms; nothing else changes.
#include <gtest/gtest.h>

#include <thread>

#include "harness.hpp"

namespace cartd::test {
namespace sold_out_test {

using namespace std::chrono_literals;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "drop", "product_id": "drop", "name": "Drop", "price_cents": 100, "on_hand": 2}
])json";
constexpr const char* kLine = R"({"product_id":"drop","inventory_id":"drop","quantity":1})";

TEST(SoldOut, a_sold_out_row_refuses_new_carts_without_asking_redis) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--threads", "1", "--sold-out-memory-ms", "400"});
  auto first = cartd.post("/add-to-cart", kLine);
  ASSERT_EQ(first.status, 200u);
  std::string sid = first.headers["cart-session-id"];
  ASSERT_EQ(cartd
                .post("/add-to-cart", R"({"product_id":"drop","inventory_id":"drop","quantity":2})",
                      {{"cart-session-id", sid}})
                .status,
            200u);
  auto t0 = std::chrono::steady_clock::now();
  auto refused = cartd.post("/add-to-cart", kLine);  // Redis answers: 0 available
  ASSERT_EQ(refused.status, 409u);

  auto before = redis.fcalls();
  for (int i = 0; i < 20; ++i) {
    auto r = cartd.post("/add-to-cart", kLine);
    EXPECT_EQ(r.status, 409u);
    EXPECT_EQ(r.body, R"({"message":"Insufficient stock","available":0})") << "as Redis says it";
  }
  if (std::chrono::steady_clock::now() - t0 < 400ms) {
    EXPECT_EQ(redis.fcalls(), before) << "refused without a Redis call";
  }

  // A named cart may still lower its own line: that asks Redis, and frees a unit.
  ASSERT_EQ(cartd.post("/add-to-cart", kLine, {{"cart-session-id", sid}}).status, 200u);
  EXPECT_EQ(cartd.post("/add-to-cart", kLine).status, 200u)
      << "its own change made this loop forget the row";
  EXPECT_EQ(cartd.get("/v1/stock/drop").json().at("reserved").as_int64(), 2);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(SoldOut, units_that_come_back_are_offered_again_when_the_memory_lapses) {
  RedisServer redis;
  Cartd a(redis, kCatalog, {"--threads", "1", "--sold-out-memory-ms", "300"});
  Cartd b(redis, kCatalog, {"--threads", "1"}, a.db_path());
  std::string id(b.post("/v1/carts", "").json().at("id").as_string());
  ASSERT_EQ(b.post("/v1/carts/" + id + "/items",
                   R"({"product_id":"drop","inventory_id":"drop","quantity":2})")
                .status,
            200u);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(a.post("/add-to-cart", kLine).status, 409u);
  // Another instance frees the units: `a` does not hear of it, and refuses until its
  // memory lapses.
  ASSERT_EQ(http(b.port(), "DELETE", "/v1/carts/" + id).status, 200u);
  auto early = a.post("/add-to-cart", kLine).status;
  if (std::chrono::steady_clock::now() - t0 < 300ms) {
    EXPECT_EQ(early, 409u);
  }
  std::this_thread::sleep_until(t0 + 350ms);
  EXPECT_EQ(a.post("/add-to-cart", kLine).status, 200u);
  auto check = a.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

}  // namespace sold_out_test
}  // namespace cartd::test
