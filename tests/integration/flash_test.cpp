// What a shop running a drop needs beyond live availability: a per-cart limit on a stock
// row (max_per_cart), enforced atomically with the hold, and a fair waitlist for a
// sold-out row, whose returned units are offered in order.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>

#include "harness.hpp"

namespace cartd::test {
namespace flash_test {

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

// ---- The fair waitlist ------------------------------------------------------------------

namespace waitlist {

constexpr const char* kCatalog = R"json([
  {"inventory_id": "one", "product_id": "one", "name": "One", "price_cents": 100, "on_hand": 1},
  {"inventory_id": "many", "product_id": "many", "name": "Many", "price_cents": 100, "on_hand": 5}
])json";

HttpResponse join(Cartd& cartd, const std::string& cart, const std::string& inv, int qty = 1) {
  return cartd.post("/v1/stock/" + inv + "/waitlist",
                    R"({"cart_id":")" + cart + R"(","quantity":)" + std::to_string(qty) + "}");
}

boost::json::object cart_of(Cartd& cartd, const std::string& cart) {
  auto r = cartd.get("/v1/carts/" + cart);
  EXPECT_EQ(r.status, 200u) << r.body;
  return r.json().as_object();
}

std::int64_t offered(Cartd& cartd, const std::string& cart, const std::string& inv) {
  auto view = cart_of(cartd, cart);
  for (auto& o : view.at("offers").as_array()) {
    if (o.at("inventory_id").as_string() == inv) return o.at("quantity").as_int64();
  }
  return 0;
}

boost::json::object stock(Cartd& cartd, const std::string& inv) {
  return cartd.get("/v1/stock/" + inv).json().as_object();
}

// Every test runs on a standalone Redis and on a Redis Cluster, where a wait, a leave and
// a view are steps of one slot each (the cart's, then the row's).
class Waitlist : public ::testing::TestWithParam<RedisKind> {};

TEST_P(Waitlist, a_unit_that_comes_back_is_offered_to_the_first_in_line_who_claims_it) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog);
  std::string holder = new_cart(cartd), first = new_cart(cartd), second = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);

  auto r = join(cartd, first, "one");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.json().at("position").as_int64(), 1);
  EXPECT_EQ(join(cartd, second, "one").json().at("position").as_int64(), 2);
  EXPECT_EQ(join(cartd, first, "one").status, 200u) << "again: same place";
  auto open = join(cartd, new_cart(cartd), "many");
  EXPECT_EQ(open.status, 409u) << "units are available: just add them";
  EXPECT_EQ(open.json().at("error").at("code").as_string(), "stock_available");
  auto place = cart_of(cartd, first).at("waitlist").as_array();
  ASSERT_EQ(place.size(), 1u);
  EXPECT_EQ(place[0].at("position").as_int64(), 1);
  EXPECT_EQ(place[0].at("product_id").as_string(), "one");

  // The holder gives up: the unit goes to the first in line, never to the public.
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + holder).status, 200u);
  EXPECT_EQ(offered(cartd, first, "one"), 1);
  EXPECT_TRUE(cart_of(cartd, first).at("waitlist").as_array().empty());
  EXPECT_EQ(stock(cartd, "one").at("available").as_int64(), 0);
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "one", 1).status, 409u) << "a newcomer cannot take it";
  EXPECT_EQ(put_line(cartd, second, "one", 1).status, 409u) << "nor the second in line";
  EXPECT_EQ(join(cartd, first, "one").json().at("error").at("code").as_string(), "offer_pending");

  // Claiming is an ordinary add to the cart.
  auto claim = cartd.post("/v1/carts/" + first + "/items",
                          R"({"product_id":"one","inventory_id":"one","quantity":1})");
  ASSERT_EQ(claim.status, 200u) << claim.body;
  auto after = cart_of(cartd, first);
  EXPECT_TRUE(after.at("offers").as_array().empty());
  EXPECT_EQ(after.at("lines").as_array().size(), 1u);
  EXPECT_EQ(stock(cartd, "one").at("reserved").as_int64(), 1);
  EXPECT_EQ(cart_of(cartd, second).at("waitlist").as_array()[0].at("position").as_int64(), 1);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_P(Waitlist, an_unclaimed_offer_passes_to_the_next_and_leaving_gives_an_offer_up) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog, {"--offer-window", "1", "--sweep-interval-ms", "100"});
  std::string holder = new_cart(cartd), a = new_cart(cartd), b = new_cart(cartd),
              c = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);
  for (auto& w : {a, b, c}) ASSERT_EQ(join(cartd, w, "one").status, 201u);
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + holder).status, 200u);
  ASSERT_EQ(offered(cartd, a, "one"), 1);
  // a does nothing: at its deadline the unit passes to b, with no request needed.
  EXPECT_TRUE(eventually([&] { return offered(cartd, b, "one") == 1; }, 4s));
  EXPECT_EQ(offered(cartd, a, "one"), 0);
  EXPECT_TRUE(cart_of(cartd, a).at("waitlist").as_array().empty()) << "a had its turn";
  // b leaves: its offer goes to c at once.
  auto left = http(cartd.port(), "DELETE", "/v1/stock/one/waitlist/" + b);
  ASSERT_EQ(left.status, 200u) << left.body;
  EXPECT_EQ(left.json().at("released").as_int64(), 1);
  EXPECT_EQ(offered(cartd, c, "one"), 1);
  EXPECT_EQ(http(cartd.port(), "DELETE", "/v1/stock/one/waitlist/" + b).status, 404u);
  EXPECT_EQ(stock(cartd, "one").at("reserved").as_int64(), 1);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_P(Waitlist, an_expired_hold_and_a_restock_go_to_the_line_first) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog,
              {"--cart-ttl", "1", "--sweep-interval-ms", "0", "--no-keyspace-events",
               "--admin-token", kToken, "--cart-max-lifetime", "3600"});
  std::string holder = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);
  std::string a = new_cart(cartd), b = new_cart(cartd);
  ASSERT_EQ(join(cartd, a, "one").status, 201u);
  ASSERT_EQ(join(cartd, b, "one", 2).status, 201u);
  // The waiters' carts live on (a change slides their TTL); the holder's expires.
  std::this_thread::sleep_for(600ms);
  for (auto& w : {a, b}) ASSERT_EQ(put_line(cartd, w, "many", 1).status, 200u);
  std::this_thread::sleep_for(600ms);
  // Nothing ran at the deadline; the first request to touch the row hands the unit on.
  EXPECT_EQ(put_line(cartd, new_cart(cartd), "one", 1).status, 409u);
  EXPECT_EQ(offered(cartd, a, "one"), 1);

  auto restock =
      http(cartd.port(), "POST", "/v1/stock/one/adjust", R"({"delta":3})",
           {{"Authorization", std::string("Bearer ") + kToken}, {"Idempotency-Key", "restock"}});
  ASSERT_EQ(restock.status, 200u) << restock.body;
  EXPECT_EQ(offered(cartd, b, "one"), 2) << "b asked for 2";
  EXPECT_EQ(stock(cartd, "one").at("available").as_int64(), 1) << "the rest is public";
  ASSERT_EQ(put_line(cartd, b, "one", 2).status, 200u);
  EXPECT_EQ(stock(cartd, "one").at("reserved").as_int64(), 3);
}

TEST_P(Waitlist, the_waiting_page_hears_of_its_offer_at_once) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog);
  std::string holder = new_cart(cartd), waiter = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);
  ASSERT_EQ(join(cartd, waiter, "one").status, 201u);
  EventStreamClient page(cartd.port(), "/v1/carts/" + waiter + "/stream");
  ASSERT_TRUE(page.head().starts_with("HTTP/1.1 200"));
  auto places = page.next(3s);
  ASSERT_TRUE(places) << page.raw();
  EXPECT_EQ(places->event, "waitlist");
  EXPECT_EQ(places->json().at("waitlist").at(0).at("position").as_int64(), 1);

  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + holder).status, 200u);
  auto offer = page.next(3s);
  ASSERT_TRUE(offer) << page.raw();
  EXPECT_EQ(offer->event, "offer");
  auto o = offer->json();
  EXPECT_EQ(o.at("inventory_id").as_string(), "one");
  EXPECT_EQ(o.at("product_id").as_string(), "one");
  EXPECT_EQ(o.at("quantity").as_int64(), 1);
  EXPECT_EQ(o.at("expires_at").as_string(),
            cart_of(cartd, waiter).at("offers").at(0).at("expires_at").as_string());
  EXPECT_FALSE(page.next(1s)) << "once: " << page.raw();

  EventStreamClient bad(cartd.port(), "/v1/carts/nope/stream", true);
  EXPECT_TRUE(bad.head().starts_with("HTTP/1.1 400"));
  EventStreamClient unknown(cartd.port(), "/v1/carts/00000000-0000-4000-8000-000000000000/stream",
                            true);
  EXPECT_TRUE(unknown.head().starts_with("HTTP/1.1 404"));
}

TEST_P(Waitlist, a_change_that_takes_no_more_units_leaves_the_offer_alone) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog);
  std::string holder = new_cart(cartd), a = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "many", 4).status, 200u);
  ASSERT_EQ(put_line(cartd, a, "many", 1).status, 200u);
  ASSERT_EQ(join(cartd, a, "many").status, 201u);
  ASSERT_EQ(put_line(cartd, holder, "many", 3).status, 200u);
  ASSERT_EQ(offered(cartd, a, "many"), 1);
  // Setting its line to what it has (or lower) is not a claim.
  ASSERT_EQ(put_line(cartd, a, "many", 1).status, 200u);
  EXPECT_EQ(offered(cartd, a, "many"), 1) << "the offer is still a's";
  ASSERT_EQ(put_line(cartd, a, "many", 2).status, 200u);
  EXPECT_EQ(offered(cartd, a, "many"), 0) << "claimed";
  EXPECT_EQ(stock(cartd, "many").at("reserved").as_int64(), 5);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_P(Waitlist, a_cart_waits_on_at_most_max_lines_rows) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(),
              R"([{"inventory_id":"x","product_id":"x","name":"X","price_cents":1,"on_hand":1},
                  {"inventory_id":"y","product_id":"y","name":"Y","price_cents":1,"on_hand":1},
                  {"inventory_id":"z","product_id":"z","name":"Z","price_cents":1,"on_hand":1}])",
              {"--max-lines", "2"});
  std::string holder = new_cart(cartd), a = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "x", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, holder, "y", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, new_cart(cartd), "z", 1).status, 200u);
  ASSERT_EQ(join(cartd, a, "x").status, 201u);
  ASSERT_EQ(join(cartd, a, "y").status, 201u);
  auto third = join(cartd, a, "z");
  EXPECT_EQ(third.status, 422u) << third.body;
  EXPECT_EQ(third.json().at("error").at("code").as_string(), "too_many_waits");
  EXPECT_EQ(third.json().at("error").at("limit").as_int64(), 2);
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/stock/x/waitlist/" + a).status, 200u);
  EXPECT_EQ(join(cartd, a, "z").status, 201u) << "leaving one makes room";
}

// A cart that ends leaves the lines it waited in: abandoned or checked out, the carts
// behind it move up at once. And a mark of a row whose offer was claimed (on a cluster
// the cart's mark outlives it: the row has the truth) does not count against the limit.
TEST_P(Waitlist, a_cart_that_ends_leaves_its_places_and_a_claimed_offer_frees_its_slot) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(),
              R"([{"inventory_id":"x","product_id":"x","name":"X","price_cents":1,"on_hand":1},
                  {"inventory_id":"y","product_id":"y","name":"Y","price_cents":1,"on_hand":1},
                  {"inventory_id":"z","product_id":"z","name":"Z","price_cents":1,"on_hand":1},
                  {"inventory_id":"m","product_id":"m","name":"M","price_cents":1,"on_hand":5}])",
              {"--max-lines", "2"});
  std::string hx = new_cart(cartd), hy = new_cart(cartd), hz = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, hx, "x", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, hy, "y", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, hz, "z", 1).status, 200u);
  std::string a = new_cart(cartd), b = new_cart(cartd), d = new_cart(cartd);
  ASSERT_EQ(join(cartd, a, "x").status, 201u);
  ASSERT_EQ(join(cartd, a, "y").status, 201u);
  ASSERT_EQ(join(cartd, b, "y").status, 201u);
  ASSERT_EQ(put_line(cartd, d, "m", 2).status, 200u);
  ASSERT_EQ(join(cartd, d, "y").status, 201u);
  EXPECT_EQ(join(cartd, a, "z").status, 422u) << "a waits on two rows";

  // a is offered x and claims it: it waits on one row now, so it may join z.
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + hx).status, 200u);
  ASSERT_EQ(offered(cartd, a, "x"), 1);
  ASSERT_EQ(put_line(cartd, a, "x", 1).status, 200u);
  auto z = join(cartd, a, "z");
  EXPECT_EQ(z.status, 201u) << z.body;
  auto places = cart_of(cartd, a).at("waitlist").as_array();
  EXPECT_EQ(places.size(), 2u) << "y and z";

  // a is abandoned: b and d move up on y, and z has nobody waiting.
  EXPECT_EQ(cart_of(cartd, d).at("waitlist").at(0).at("position").as_int64(), 3);
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + a).status, 200u);
  EXPECT_EQ(cart_of(cartd, b).at("waitlist").at(0).at("position").as_int64(), 1);
  EXPECT_EQ(cart_of(cartd, d).at("waitlist").at(0).at("position").as_int64(), 2);
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + hz).status, 200u);
  EXPECT_EQ(stock(cartd, "z").at("available").as_int64(), 1) << "nobody waits on z";

  // d checks out (its line of m): it leaves y, so b is alone there.
  auto order = cartd.post("/v1/carts/" + d + "/checkout", "", {{"Idempotency-Key", "d-1"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + hy).status, 200u);
  EXPECT_EQ(offered(cartd, b, "y"), 1) << "b is offered y, d is not in the way";
  EXPECT_EQ(stock(cartd, "y").at("reserved").as_int64(), 1);

  // Every unit: x free (a's line went with a), y offered to b, z free, m: 2 sold, 3 free.
  EXPECT_EQ(stock(cartd, "x").at("available").as_int64(), 1);
  EXPECT_EQ(stock(cartd, "m").at("on_hand").as_int64(), 3);
  EXPECT_EQ(stock(cartd, "m").at("reserved").as_int64(), 0);
  EXPECT_EQ(stock(cartd, "z").at("reserved").as_int64(), 0);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// The per-cart limit counts what a waiting cart holds on the row: when it joins, and when
// its turn comes (the limit may have been lowered since). On a cluster the row knows the
// cart's line by its hold record.
TEST_P(Waitlist, an_offer_never_takes_a_cart_past_the_per_cart_limit) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(),
              R"([{"inventory_id":"lim","product_id":"lim","name":"L","price_cents":1,)"
              R"("on_hand":4,"max_per_cart":2}])",
              {"--admin-token", kToken});
  std::string h = new_cart(cartd), a = new_cart(cartd), b = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, a, "lim", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, h, "lim", 2).status, 200u);
  ASSERT_EQ(put_line(cartd, new_cart(cartd), "lim", 1).status, 200u);
  auto over = join(cartd, a, "lim", 2);
  EXPECT_EQ(over.status, 422u) << "1 held + 2 asked > 2: " << over.body;
  EXPECT_EQ(over.json().at("error").at("code").as_string(), "limit_exceeded");
  ASSERT_EQ(join(cartd, a, "lim", 1).status, 201u);
  ASSERT_EQ(join(cartd, b, "lim", 2).status, 201u);

  auto lower =
      http(cartd.port(), "PUT", "/v1/stock/lim/max-per-cart", R"({"max_per_cart":1})", kAdmin);
  ASSERT_EQ(lower.status, 200u) << lower.body;
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + h).status, 200u);
  EXPECT_EQ(offered(cartd, a, "lim"), 0) << "a holds 1 already: the limit leaves it nothing";
  EXPECT_EQ(offered(cartd, b, "lim"), 1) << "b asked for 2, the limit allows 1";
  auto row = stock(cartd, "lim");
  EXPECT_EQ(row.at("available").as_int64(), 1) << "nobody is left in line";
  EXPECT_EQ(row.at("reserved").as_int64(), 3) << "a's line, the other cart's line, b's offer";
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// A waiting cart that expires loses its place: a standalone Redis skips it when its turn
// comes (pour sees the cart is gone); on a cluster, where the row cannot see the cart,
// the expiry event leaves its lines (the rows it waited on outlive the cart in its w:
// set). Without expiry events (`--no-keyspace-events`), the cluster offers the dead cart
// the unit, which passes to the next in line when the offer's window ends.
void a_waiting_cart_expires(RedisKind kind, bool events) {
  TestRedis redis(kind);
  std::vector<std::string> flags{"--cart-ttl",          "3",   "--offer-window",      "1",
                                 "--sweep-interval-ms", "100", "--cart-max-lifetime", "3600"};
  if (!events) flags.push_back("--no-keyspace-events");
  Cartd cartd(redis.url(), kCatalog, flags);
  std::string holder = new_cart(cartd), gone = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);
  ASSERT_EQ(join(cartd, gone, "one").status, 201u);
  std::this_thread::sleep_for(1500ms);
  std::string next = new_cart(cartd);
  ASSERT_EQ(join(cartd, next, "one").status, 201u);
  EXPECT_EQ(cart_of(cartd, next).at("waitlist").at(0).at("position").as_int64(), 2);
  ASSERT_EQ(put_line(cartd, holder, "many", 1).status, 200u);  // the holder lives on
  EXPECT_TRUE(eventually([&] { return cartd.get("/v1/carts/" + gone).status == 404u; }, 4s, 100ms));
  ASSERT_EQ(put_line(cartd, next, "many", 1).status, 200u);  // next lives on
  ASSERT_EQ(put_line(cartd, holder, "many", 2).status, 200u);
  bool window = kind == RedisKind::cluster && !events;
  if (kind == RedisKind::cluster && events) {
    EXPECT_TRUE(eventually(
        [&] { return cart_of(cartd, next).at("waitlist").at(0).at("position").as_int64() == 1; },
        3s))
        << "the expired cart left the line";
  }
  ASSERT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + holder).status, 200u);
  if (!window) {
    EXPECT_EQ(offered(cartd, next, "one"), 1) << "the expired cart had lost its place";
  } else {
    EXPECT_EQ(offered(cartd, next, "one"), 0) << "the unit is offered to the expired cart";
    EXPECT_EQ(stock(cartd, "one").at("reserved").as_int64(), 1);
    EXPECT_TRUE(eventually([&] { return offered(cartd, next, "one") == 1; }, 3s))
        << "then to the next in line, within the window and a sweep";
  }
  EXPECT_EQ(stock(cartd, "one").at("reserved").as_int64(), 1);
  EXPECT_EQ(stock(cartd, "one").at("available").as_int64(), 0);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_P(Waitlist, a_waiting_cart_that_expires_loses_its_place) {
  a_waiting_cart_expires(GetParam(), true);
}

TEST_P(Waitlist, without_expiry_events_a_dead_waiter_costs_the_next_one_window_at_most) {
  a_waiting_cart_expires(GetParam(), false);
}

// Strict first come, first served: 1 000 carts wait on a row of 100 units, and the units
// come back in a random order, from several threads at once.
TEST_P(Waitlist, a_thousand_waiters_are_served_strictly_in_order) {
  constexpr int kUnits = 100, kWaiters = 1000;
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(),
              R"([{"inventory_id":"drop","product_id":"drop","name":"Drop","price_cents":1,)"
              R"("on_hand":100}])",
              // The window outlasts a scan of the 1000 waiters' carts under the sanitizers
              // (with 3 s, the first offers lapsed before the scan's last look).
              {"--offer-window", "6", "--sweep-interval-ms", "100"});
  std::vector<std::string> holders, waiters;
  for (int i = 0; i < kUnits; ++i) {
    holders.push_back(new_cart(cartd));
    ASSERT_EQ(put_line(cartd, holders.back(), "drop", 1).status, 200u);
  }
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(new_cart(cartd));
    auto r = join(cartd, waiters.back(), "drop");
    ASSERT_EQ(r.status, 201u) << r.body;
    ASSERT_EQ(r.json().at("position").as_int64(), i + 1);
  }
  std::mt19937 random(7);
  std::shuffle(holders.begin(), holders.end(), random);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 pause(static_cast<unsigned>(t));
      for (std::size_t i = static_cast<std::size_t>(t); i < holders.size(); i += 4) {
        std::this_thread::sleep_for(std::chrono::milliseconds(pause() % 10));
        EXPECT_EQ(http(cartd.port(), "DELETE", "/v1/carts/" + holders[i]).status, 200u);
      }
    });
  }
  for (auto& t : threads) t.join();

  auto offers_now = [&] {
    std::vector<int> got;
    for (int i = 0; i < kWaiters; ++i) {
      if (offered(cartd, waiters[i], "drop") > 0) got.push_back(i);
    }
    return got;
  };
  auto first = offers_now();
  ASSERT_EQ(first.size(), 100u);
  for (int i = 0; i < kUnits; ++i) EXPECT_EQ(first[i], i) << "the first 100 in line, no one else";
  EXPECT_EQ(cart_of(cartd, waiters[100]).at("waitlist").at(0).at("position").as_int64(), 1);
  auto row = stock(cartd, "drop");
  EXPECT_EQ(row.at("reserved").as_int64(), 100) << "every unit offered once, none lost";
  EXPECT_EQ(row.at("available").as_int64(), 0);

  // Nobody claims: within the window (and a sweep) the next 100 have them.
  EXPECT_TRUE(eventually([&] { return offered(cartd, waiters[199], "drop") == 1; }, 12s));
  auto second = offers_now();
  ASSERT_EQ(second.size(), 100u);
  for (int i = 0; i < kUnits; ++i) EXPECT_EQ(second[i], 100 + i);
  // The accounting: 100 units on hand, all offered, none sold, none held by a line.
  row = stock(cartd, "drop");
  EXPECT_EQ(row.at("on_hand").as_int64(), 100);
  EXPECT_EQ(row.at("reserved").as_int64(), 100);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// Review: a cart that waits on a row (it has a `?<inv>` mark, so cart_view appends its
// waits) must still be able to check out its lines, and an empty cart that only waits
// answers "empty", not an error.
TEST_P(Waitlist, a_cart_that_waits_on_a_row_can_still_check_out) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog);
  std::string holder = new_cart(cartd), waiter = new_cart(cartd), only_waits = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, waiter, "many", 2).status, 200u);
  ASSERT_EQ(join(cartd, waiter, "one").status, 201u);
  ASSERT_EQ(join(cartd, only_waits, "one").status, 201u);

  auto r = cartd.post("/v1/carts/" + waiter + "/checkout", "", {{"Idempotency-Key", "w-1"}});
  EXPECT_EQ(r.status, 201u) << r.body;
  auto empty =
      cartd.post("/v1/carts/" + only_waits + "/checkout", "", {{"Idempotency-Key", "e-1"}});
  EXPECT_EQ(empty.status, 422u) << empty.body;
  EXPECT_EQ(empty.json().at("error").at("code").as_string(), "cart_empty");
  EXPECT_EQ(stock(cartd, "many").at("on_hand").as_int64(), 3) << "the order sold 2";
  EXPECT_EQ(stock(cartd, "many").at("reserved").as_int64(), 0);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// Review: a cart that holds an offer on a row it also checks out. Its finish gave the
// offer up (to the next in line) before on_hand fell by the sale: the sold unit was
// offered too, so more was held than was on hand.
TEST_P(Waitlist, a_checkout_of_a_cart_with_an_offer_oversells_nothing) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog);
  std::string a = new_cart(cartd), h = new_cart(cartd), w1 = new_cart(cartd), w2 = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, a, "many", 1).status, 200u);
  ASSERT_EQ(put_line(cartd, h, "many", 4).status, 200u);
  for (auto& w : {a, w1, w2}) ASSERT_EQ(join(cartd, w, "many").status, 201u);
  ASSERT_EQ(put_line(cartd, h, "many", 3).status, 200u);
  ASSERT_EQ(offered(cartd, a, "many"), 1);
  auto r = cartd.post("/v1/carts/" + a + "/checkout", "", {{"Idempotency-Key", "a-1"}});
  ASSERT_EQ(r.status, 201u) << r.body;
  auto row = stock(cartd, "many");
  EXPECT_EQ(row.at("on_hand").as_int64(), 4);
  EXPECT_EQ(row.at("reserved").as_int64(), 4) << "h's 3 and the unit a gave up, offered to w1";
  EXPECT_EQ(offered(cartd, w1, "many"), 1);
  EXPECT_EQ(offered(cartd, w2, "many"), 0) << "w2 was offered the unit a bought";
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// Review: an event loop that saw the row sold out before anyone waited remembers it as
// "no waitlist" and refuses every add without asking Redis, a claim included, for as
// long as it remembers (--sold-out-memory-ms; long here to see it, 100 ms by default).
TEST_P(Waitlist, the_sold_out_memory_never_refuses_a_claim) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog,
              {"--threads", "1", "--sold-out-memory-ms", "5000", "--admin-token", kToken});
  std::string holder = new_cart(cartd), waiter = new_cart(cartd);
  ASSERT_EQ(put_line(cartd, holder, "one", 1).status, 200u);
  const std::string add_one = R"({"product_id":"one","inventory_id":"one","quantity":1})";
  ASSERT_EQ(cartd.post("/v1/carts/" + waiter + "/items", add_one).status, 409u) << "sold out";
  ASSERT_EQ(join(cartd, waiter, "one").status, 201u);
  auto restock =
      http(cartd.port(), "POST", "/v1/stock/one/adjust", R"({"delta":1})",
           {{"Authorization", std::string("Bearer ") + kToken}, {"Idempotency-Key", "restock"}});
  ASSERT_EQ(restock.status, 200u) << restock.body;
  ASSERT_EQ(offered(cartd, waiter, "one"), 1);
  auto claim = cartd.post("/v1/carts/" + waiter + "/items", add_one);
  EXPECT_EQ(claim.status, 200u) << claim.body;
}

INSTANTIATE_TEST_SUITE_P(Redis, Waitlist, ::testing::ValuesIn(kRedisKinds), redis_kind_name);

}  // namespace waitlist

}  // namespace flash_test
}  // namespace cartd::test
