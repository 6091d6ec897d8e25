// `cartd check` on live data: silent on a healthy shop, loud on a broken invariant.
#include <gtest/gtest.h>

#include "harness.hpp"

namespace cartd::test {
namespace {

constexpr const char* kCatalog = R"json([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1500, "on_hand": 10},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 2500, "on_hand": 20}
])json";

std::string add(Cartd& c, const std::string& inv, int qty) {
  auto r = c.post("/add-to-cart", R"({"product_id":")" + inv + R"(","inventory_id":")" + inv +
                                      R"(","quantity":)" + std::to_string(qty) + "}");
  EXPECT_EQ(r.status, 200u) << r.body;
  return std::string(r.json().at("cartSessionId").as_string());
}

TEST(Check, a_healthy_shop_passes) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  add(cartd, "mug", 3);
  add(cartd, "cap", 2);
  ASSERT_TRUE(eventually(
      [&] { return sqlite_int(cartd.db_path(), "SELECT SUM(reserved) FROM inventory") == 5; },
      std::chrono::seconds(3)));
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("ok: 2 stock rows, 2 carts, 0 violations"), std::string::npos)
      << run.output;
}

TEST(Check, a_drifted_reserved_count_fails) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  add(cartd, "mug", 3);
  redis.command({"HINCRBY", "st:{mug}", "r", "2"});
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("FAIL mug: reserved 5 but the holds sum to 3"), std::string::npos)
      << run.output;
}

TEST(Check, a_cart_nothing_would_release_fails) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--sweep-interval-ms", "0", "--no-keyspace-events"});
  std::string sid = add(cartd, "cap", 1);
  redis.command({"DEL", "s:{" + sid + "}"});
  redis.command({"ZREM", "dl", sid});
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("would never be released"), std::string::npos) << run.output;
}

TEST(Check, an_unreachable_redis_is_an_error) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  redis.stop();
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

}  // namespace
}  // namespace cartd::test
