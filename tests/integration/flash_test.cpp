// What a shop running a drop needs beyond live availability: a per-cart limit on a stock
// row (max_per_cart), enforced atomically with the hold.
#include <gtest/gtest.h>

#include "harness.hpp"

namespace cartd::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kToken = "flash-token";
const std::map<std::string, std::string> kAdmin{{"Authorization", "Bearer flash-token"}};

constexpr const char* kCatalog = R"json([
  {"inventory_id": "a", "product_id": "a", "name": "A", "price_cents": 100, "on_hand": 10,
   "max_per_cart": 2},
  {"inventory_id": "b", "product_id": "b", "name": "B", "price_cents": 100, "on_hand": 10}
])json";

std::string new_cart(Cartd& cartd) {
  auto r = cartd.post("/v1/carts", "");
  EXPECT_EQ(r.status, 201u) << r.body;
  return std::string(r.json().at("id").as_string());
}

HttpResponse put_line(Cartd& cartd, const std::string& cart, const std::string& inv, int qty) {
  return http(cartd.port(), "PUT", "/v1/carts/" + cart + "/items/" + inv,
              R"({"inventory_id":")" + inv + R"(","quantity":)" + std::to_string(qty) + "}");
}

std::int64_t reserved(Cartd& cartd, const std::string& inv) {
  return cartd.get("/v1/stock/" + inv).json().at("reserved").as_int64();
}

TEST(MaxPerCart, adds_beyond_the_limit_are_refused_and_change_nothing) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--admin-token", kToken});
  auto product = cartd.get("/v1/products/a").json();
  EXPECT_EQ(product.at("stock").at(0).at("max_per_cart").as_int64(), 2);
  EXPECT_TRUE(cartd.get("/v1/products/b").json().at("stock").at(0).at("max_per_cart").is_null());

  std::string cart = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, cart, "a", 2).status, 200u);
  auto over = cartd.post("/v1/carts/" + cart + "/items",
                         R"({"product_id":"a","inventory_id":"a","quantity":1})");
  EXPECT_EQ(over.status, 422u) << over.body;
  EXPECT_EQ(over.json().at("error").at("code").as_string(), "limit_exceeded");
  EXPECT_EQ(over.json().at("error").at("limit").as_int64(), 2);
  EXPECT_EQ(put_line(cartd, cart, "a", 3).status, 422u);
  EXPECT_EQ(reserved(cartd, "a"), 2) << "a refused change holds nothing";
  EXPECT_EQ(put_line(cartd, cart, "a", 1).status, 200u) << "lowering is fine";
  EXPECT_EQ(put_line(cartd, cart, "b", 5).status, 200u) << "b has no limit of its own";

  // The classic route says it in its own shape.
  auto classic =
      cartd.post("/add-to-cart", R"({"product_id":"a","inventory_id":"a","quantity":3})");
  EXPECT_EQ(classic.status, 422u);
  EXPECT_EQ(classic.body,
            R"({"message":"a cart may hold at most 2 units of this item","limit":2})");
  EXPECT_EQ(reserved(cartd, "a"), 1);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(MaxPerCart, the_admin_api_sets_and_clears_it_and_it_survives_a_restart) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--admin-token", kToken});
  std::string cart = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, cart, "b", 3).status, 200u);

  auto set = http(cartd.port(), "PUT", "/v1/stock/b/max-per-cart", R"({"max_per_cart":1})", kAdmin);
  ASSERT_EQ(set.status, 200u) << set.body;
  EXPECT_EQ(set.json().at("max_per_cart").as_int64(), 1);
  EXPECT_EQ(
      sqlite_int(cartd.db_path(), "SELECT max_per_cart FROM inventory WHERE inventory_id = 'b'"),
      1);
  // A cart above a new limit keeps its line and may lower it, never raise it.
  EXPECT_EQ(put_line(cartd, cart, "b", 2).status, 200u);
  EXPECT_EQ(put_line(cartd, cart, "b", 3).status, 422u);
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "b", 2).status, 422u);

  for (auto [body, status, code] : std::vector<std::tuple<std::string, unsigned, std::string>>{
           {R"({"max_per_cart":-1})", 400, "invalid_max_per_cart"},
           {R"({"max_per_cart":"2"})", 400, "invalid_max_per_cart"},
           {R"({})", 400, "missing_field"},
           {R"(nope)", 400, "invalid_json"}}) {
    auto r = http(cartd.port(), "PUT", "/v1/stock/b/max-per-cart", body, kAdmin);
    EXPECT_EQ(r.status, status) << body << " -> " << r.body;
    EXPECT_EQ(r.json().at("error").at("code").as_string(), code) << body;
  }
  EXPECT_EQ(
      http(cartd.port(), "PUT", "/v1/stock/nope/max-per-cart", R"({"max_per_cart":1})", kAdmin)
          .status,
      404u);
  EXPECT_EQ(http(cartd.port(), "PUT", "/v1/stock/b/max-per-cart", R"({"max_per_cart":1})").status,
            401u);

  // The limit is the main DB's: a restart mirrors it again.
  ASSERT_EQ(cartd.stop(), 0);
  cartd.start();
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "b", 2).status, 422u);
  auto cleared =
      http(cartd.port(), "PUT", "/v1/stock/b/max-per-cart", R"({"max_per_cart":null})", kAdmin);
  ASSERT_EQ(cleared.status, 200u) << cleared.body;
  EXPECT_TRUE(cleared.json().at("max_per_cart").is_null());
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "b", 2).status, 200u);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(MaxPerCart, a_main_db_from_before_the_limit_gets_the_column) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--admin-token", kToken});
  ASSERT_EQ(cartd.stop(), 0);
  sqlite_exec(cartd.db_path(), "ALTER TABLE inventory DROP COLUMN max_per_cart");
  cartd.start();
  EXPECT_EQ(sqlite_int(cartd.db_path(),
                       "SELECT COUNT(*) FROM pragma_table_info('inventory') "
                       "WHERE name = 'max_per_cart'"),
            1);
  auto set = http(cartd.port(), "PUT", "/v1/stock/a/max-per-cart", R"({"max_per_cart":1})", kAdmin);
  ASSERT_EQ(set.status, 200u) << set.body;
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "a", 2).status, 422u);
}

TEST(MaxPerCart, a_created_row_may_carry_one) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--admin-token", kToken});
  auto r = http(cartd.port(), "POST", "/v1/stock",
                R"({"inventory_id":"c","product_id":"c","name":"C","price_cents":5,"on_hand":9,)"
                R"("max_per_cart":3})",
                kAdmin);
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.json().at("max_per_cart").as_int64(), 3);
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "c", 4).status, 422u);
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "c", 3).status, 200u);
}

}  // namespace
}  // namespace cartd::test
