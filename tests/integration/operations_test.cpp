// What an operator relies on: probes that tell liveness from readiness, --version, and
// settings from a config file, the environment and flags, in that order of weight.
#include <gtest/gtest.h>

#include <fstream>

#include "harness.hpp"

namespace cartd::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kCatalog =
    R"([{"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 100, "on_hand": 5}])";

TEST(Probes, livez_stays_up_while_redis_is_down_and_readyz_says_why_not) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  EXPECT_EQ(cartd.get("/livez").status, 200u);
  EXPECT_EQ(cartd.get("/readyz").status, 200u);
  redis.stop();
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 503u; }, 3s));
  auto ready = cartd.get("/readyz");
  EXPECT_NE(ready.body.find("Redis is unavailable"), std::string::npos) << ready.body;
  EXPECT_EQ(cartd.get("/healthz").status, 503u);
  EXPECT_EQ(cartd.get("/livez").status, 200u) << "liveness never depends on Redis";
  redis.start();
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 200u; }, 5s));
}

// Runs the cartd binary with `args` and `env` (NAME=value); returns its output.
std::string run_cartd(const std::string& args, const std::string& env = "") {
  std::string cmd = env + " " + CARTD_BINARY + " " + args + " 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

TEST(Flags, version_names_the_release_and_commit) {
  auto out = run_cartd("--version");
  EXPECT_NE(out.find("cartd "), std::string::npos) << out;
  EXPECT_NE(out.find("(commit "), std::string::npos) << out;
}

TEST(Flags, the_command_line_wins_over_the_environment_which_wins_over_the_config_file) {
  TempDir dir;
  auto file = dir.path() / "cartd.toml";
  std::ofstream(file) << "# cartd settings\ncart-ttl = 111\nmax-lines = 7\n";
  RedisServer redis;
  auto ttl_of_a_new_cart = [&](std::vector<std::string> flags) {
    Cartd cartd(redis, kCatalog, std::move(flags));
    auto r = cartd.post("/v1/carts", "");
    return r.json().at("ttl_seconds").as_int64();
  };
  EXPECT_EQ(ttl_of_a_new_cart({"--config", file.string()}), 111);
  setenv("CARTD_CART_TTL", "222", 1);
  EXPECT_EQ(ttl_of_a_new_cart({"--config", file.string()}), 222);
  EXPECT_EQ(ttl_of_a_new_cart({"--config", file.string(), "--cart-ttl", "333"}), 333);
  unsetenv("CARTD_CART_TTL");
}

TEST(Flags, currency_is_named_beside_every_price_and_classic_routes_stay_as_they_were) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--currency", "EUR", "--admin-token", "t"});
  auto cart = cartd.post("/v1/carts", "").json().as_object();
  EXPECT_EQ(cart.at("currency"), "EUR");
  std::string id(cart.at("id").as_string());
  auto line = cartd.post("/v1/carts/" + id + "/items",
                         R"({"product_id":"mug","inventory_id":"mug","quantity":2})");
  EXPECT_EQ(line.json().at("currency"), "EUR") << line.body;
  EXPECT_EQ(line.json().at("lines").at(0).at("currency"), "EUR") << line.body;
  auto product = cartd.get("/v1/products/mug").json();
  EXPECT_EQ(product.at("currency"), "EUR");
  EXPECT_EQ(product.at("stock").at(0).at("currency"), "EUR");
  EXPECT_EQ(cartd.get("/v1/products").json().at("products").at(0).at("currency"), "EUR");
  auto order = cartd.post("/v1/carts/" + id + "/checkout", "", {{"Idempotency-Key", "k"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  EXPECT_EQ(order.json().at("currency"), "EUR");
  EXPECT_EQ(order.json().at("lines").at(0).at("currency"), "EUR");
  EXPECT_EQ(order.headers["location"],
            "/v1/orders/" + std::string(order.json().at("order_id").as_string()));

  // The classic pair knows nothing of money: its answers are as they always were.
  auto added =
      cartd.post("/add-to-cart", R"({"product_id":"mug","inventory_id":"mug","quantity":1})");
  std::string sid = added.headers["cart-session-id"];
  EXPECT_EQ(added.body,
            R"({"message":"Product added to cart successfully","cartSessionId":")" + sid + "\"}");
  EXPECT_EQ(cartd.get("/get-cart", {{"cart-session-id", sid}}).body,
            R"({"message":"Cart retrieved successfully","data":[{"product_id":"mug",)"
            R"("inventory_id":"mug","quantity":1}]})");
}

TEST(Flags, a_currency_is_three_upper_case_letters) {
  for (const char* bad : {"usd", "EURO", "U1D", "\"\""}) {
    auto out = run_cartd(std::string("--currency ") + bad + " --listen nope");
    EXPECT_NE(out.find("--currency"), std::string::npos) << bad << ": " << out;
  }
}

}  // namespace
}  // namespace cartd::test
