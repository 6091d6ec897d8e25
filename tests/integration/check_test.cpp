// `cartd check` on live data: silent on a healthy shop, loud on a broken invariant.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "functions/keys.hpp"
#include "harness.hpp"

namespace cartd::test {
namespace check_test {

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
  redis.command({"HINCRBY", keys::stock("mug"), "r", "2"});
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("FAIL mug: reserved 5 but the buckets sum to 3"), std::string::npos)
      << run.output;
}

TEST(Check, a_cart_nothing_would_release_fails) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--sweep-interval-ms", "0", "--no-keyspace-events"});
  std::string sid = add(cartd, "cap", 1);
  redis.command({"PERSIST", keys::cart(sid)});
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_NE(run.output.find("Redis would never delete it"), std::string::npos) << run.output;
}

TEST(Check, an_unreachable_redis_is_an_error) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  redis.stop();
  auto run = cartd.check();
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

struct Run {
  int exit_code;
  std::string output;
};

// Runs cartd with `args` and returns its exit code and everything it printed.
Run run_cartd(std::vector<std::string> args) {
  TempDir dir;
  args.insert(args.begin(), CARTD_BINARY);
  Process p(args, dir.path() / "out.log");
  int code = p.wait();
  std::ifstream in(dir.path() / "out.log");
  std::stringstream s;
  s << in.rdbuf();
  return {code, s.str()};
}

constexpr const char* kPassword = "s3cret-pw";

TEST(Check, its_output_never_shows_the_redis_password) {
  RedisServer redis({"--requirepass", kPassword});
  TempDir dir;
  std::string db = "sqlite:" + (dir.path() / "cartd.db").string();
  std::string at = "@127.0.0.1:" + std::to_string(redis.port()) + "/0";
  std::string nobody_listens = "@127.0.0.1:" + std::to_string(free_port()) + "/0";
  struct Case {
    std::string url;
    int exit_code;
    std::string printed;  // what the output shows in place of the URL, if it shows it
  };
  for (const Case& c : std::vector<Case>{
           {std::string("redis://:") + kPassword + at, 0, ""},
           {std::string("redis://default:") + kPassword + at, 0, ""},
           {std::string("redis://:") + kPassword + nobody_listens, 2,
            "redis://:***" + nobody_listens},
           {std::string("redis://shop:") + kPassword + nobody_listens, 2,
            "redis://shop:***" + nobody_listens},
           {std::string("redis://:wrong-") + kPassword + at, 2, ""},
       }) {
    auto run = run_cartd({"check", "--redis", c.url, "--db", db});
    EXPECT_EQ(run.exit_code, c.exit_code) << run.output;
    EXPECT_EQ(run.output.find(kPassword), std::string::npos) << run.output;
    if (!c.printed.empty()) {
      EXPECT_NE(run.output.find(c.printed), std::string::npos) << run.output;
    }
  }
}

TEST(Check, a_malformed_redis_url_is_refused_without_showing_its_password) {
  TempDir dir;
  std::string db = "sqlite:" + (dir.path() / "cartd.db").string();
  for (std::string url : {std::string("redis://shop:") + kPassword + "@no host:6379/0",
                          std::string("redis://:") + kPassword + "@h:99999/0",
                          std::string("redis://:") + kPassword + "@h:6379/x"}) {
    auto check = run_cartd({"check", "--redis", url, "--db", db});
    EXPECT_EQ(check.exit_code, 2) << check.output;
    EXPECT_NE(check.output.find("--redis"), std::string::npos) << check.output;
    EXPECT_EQ(check.output.find(kPassword), std::string::npos) << check.output;

    auto serve = run_cartd(
        {"--redis", url, "--db", db, "--listen", "127.0.0.1:" + std::to_string(free_port())});
    EXPECT_EQ(serve.exit_code, 2) << serve.output;
    EXPECT_NE(serve.output.find("--redis"), std::string::npos) << serve.output;
    EXPECT_EQ(serve.output.find(kPassword), std::string::npos) << serve.output;
  }
}

}  // namespace check_test
}  // namespace cartd::test
