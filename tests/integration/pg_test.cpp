// PostgreSQL as the main DB: what the SQLite tests prove for one instance, here for
// several cartd instances sharing one PostgreSQL (started by the test).
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "harness.hpp"

namespace cartd::test {
namespace pg_test {

using namespace std::chrono_literals;
namespace json = boost::json;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1500, "on_hand": 10},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 2500, "on_hand": 200}
])json";

std::string line(const std::string& inv, int qty) {
  return R"({"product_id":")" + inv + R"(","inventory_id":")" + inv + R"(","quantity":)" +
         std::to_string(qty) + "}";
}

class Postgres : public ::testing::Test {
 protected:
  PgServer pg_;
  std::string url_ = pg_.new_database("shop");
  std::int64_t sql(const std::string& query) { return pg_.query_int("shop", query); }
};

TEST_F(Postgres, a_read_only_main_db_makes_readyz_say_why_and_livez_stays_up) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--db", url_, "--db-heartbeat-ms", "200"});
  EXPECT_EQ(cartd.get("/readyz").status, 200u);
  // Every session of the server turns read-only (as on a standby, or a full disk that
  // an operator set read-only): reads work, the heartbeat write fails.
  sql("ALTER SYSTEM SET default_transaction_read_only = on");
  sql("SELECT pg_reload_conf()::int");
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 503u; }, 3s));
  auto ready = cartd.get("/readyz");
  EXPECT_NE(ready.body.find("the main DB cannot be written"), std::string::npos) << ready.body;
  EXPECT_EQ(cartd.get("/healthz").status, 503u);
  EXPECT_EQ(cartd.get("/livez").status, 200u) << "liveness never depends on the DB";
  EXPECT_EQ(cartd.get("/v1/stock/mug").status, 200u) << "stock reads still serve";
  sql("ALTER SYSTEM RESET default_transaction_read_only");
  sql("SELECT pg_reload_conf()::int");
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 200u; }, 3s));
}

TEST_F(Postgres, holds_orders_and_admin_changes_reach_postgres) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--db", url_, "--admin-token", "t"});
  EXPECT_EQ(sql("SELECT COUNT(*) FROM inventory"), 2) << "the catalog was imported";

  auto r = cartd.post("/add-to-cart", line("mug", 3));
  ASSERT_EQ(r.status, 200u) << r.body;
  std::string sid(r.json().at("cartSessionId").as_string());
  EXPECT_TRUE(eventually(
      [&] { return sql("SELECT reserved FROM inventory WHERE inventory_id = 'mug'") == 3; }, 3s));
  EXPECT_EQ(sql("SELECT available FROM inventory WHERE inventory_id = 'mug'"), 7);

  auto order = cartd.post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "k"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  EXPECT_EQ(sql("SELECT COUNT(*) FROM orders"), 1);
  EXPECT_EQ(sql("SELECT SUM(quantity) FROM order_lines"), 3);
  EXPECT_EQ(sql("SELECT on_hand FROM inventory WHERE inventory_id = 'mug'"), 7);
  std::string order_id(order.json().at("order_id").as_string());
  auto fetched = cartd.get("/v1/orders/" + order_id);
  EXPECT_EQ(fetched.status, 200u);
  EXPECT_EQ(fetched.json(), order.json());

  auto put = http(cartd.port(), "PUT", "/v1/stock/cap", R"({"on_hand": 150})",
                  {{"Authorization", "Bearer t"}});
  EXPECT_EQ(put.status, 200u) << put.body;
  EXPECT_EQ(sql("SELECT on_hand FROM inventory WHERE inventory_id = 'cap'"), 150);
  EXPECT_TRUE(eventually([&] { return cartd.check().exit_code == 0; }, 3s)) << cartd.check().output;
}

TEST_F(Postgres, two_instances_share_one_database_and_release_each_cart_once) {
  RedisServer redis;
  std::vector<std::string> flags{"--db", url_, "--cart-ttl", "1", "--sweep-interval-ms", "50"};
  Cartd a(redis, kCatalog, flags);
  Cartd b(redis, kCatalog, flags);
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ((i % 2 ? a : b).post("/add-to-cart", line("cap", 1 + i % 3)).status, 200u);
  }
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(eventually(
      [&] {
        return sql("SELECT reserved FROM inventory WHERE inventory_id = 'cap'") == 0 &&
               redis.cart_events().size() == 40;
      },
      4s));
  EXPECT_EQ(sql("SELECT on_hand FROM inventory WHERE inventory_id = 'cap'"), 200);
  EXPECT_EQ(redis.cart_events().size(), 40u) << "each cart recorded once";
  auto check = a.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(Postgres, concurrent_checkouts_of_one_cart_make_one_order) {
  RedisServer redis;
  std::vector<std::string> flags{"--db", url_};
  Cartd a(redis, kCatalog, flags);
  Cartd b(redis, kCatalog, flags);
  auto r = a.post("/add-to-cart", line("cap", 2));
  std::string sid(r.json().at("cartSessionId").as_string());
  std::mutex m;
  std::set<std::string> orders;
  std::vector<std::thread> clients;
  for (int i = 0; i < 10; ++i) {
    clients.emplace_back([&, i] {
      auto o =
          (i % 2 ? a : b).post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "same"}});
      std::lock_guard lock(m);
      // The same key resumes the same attempt: each answer is that one order.
      EXPECT_TRUE(o.status == 200u || o.status == 201u) << o.status << " " << o.body;
      EXPECT_EQ(o.body.find("checkout_aborted"), std::string::npos) << o.body;
      if (o.status < 300) orders.insert(std::string(o.json().at("order_id").as_string()));
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(orders.size(), 1u);
  EXPECT_EQ(sql("SELECT COUNT(*) FROM orders"), 1);
  EXPECT_EQ(sql("SELECT on_hand FROM inventory WHERE inventory_id = 'cap'"), 198);
}

// The waitlist, the per-cart limit and a checkout of a claimed offer against PostgreSQL,
// with two instances sharing it: every unit of the row explained at the end.
TEST_F(Postgres, a_waitlist_drop_accounts_for_every_unit) {
  RedisServer redis;
  const char* catalog = R"json([{"inventory_id":"drop","product_id":"drop","name":"Drop",
                                  "price_cents":100,"on_hand":3,"max_per_cart":3}])json";
  std::vector<std::string> flags{"--db", url_, "--offer-window", "1", "--sweep-interval-ms", "100"};
  Cartd a(redis, catalog, flags), b(redis, catalog, flags);
  auto new_cart = [&](Cartd& c) {
    auto r = c.post("/v1/carts", "");
    EXPECT_EQ(r.status, 201u) << r.body;
    return std::string(r.json().at("id").as_string());
  };
  auto join = [&](Cartd& c, const std::string& cart) {
    return c.post("/v1/stock/drop/waitlist", R"({"cart_id":")" + cart + R"(","quantity":1})");
  };
  std::string holder = new_cart(a), first = new_cart(a), second = new_cart(b);
  ASSERT_EQ(a.post("/v1/carts/" + holder + "/items", line("drop", 3)).status, 200u);
  EXPECT_EQ(a.post("/v1/carts/" + new_cart(a) + "/items", line("drop", 4)).status, 422u)
      << "beyond max_per_cart";
  ASSERT_EQ(join(a, first).status, 201u);
  ASSERT_EQ(join(b, second).status, 201u);

  // The holder gives up its 3: one each for the two in line, one public.
  ASSERT_EQ(http(a.port(), "DELETE", "/v1/carts/" + holder).status, 200u);
  auto stock = b.get("/v1/stock/drop").json();
  EXPECT_EQ(stock.at("reserved").as_int64(), 2);
  EXPECT_EQ(stock.at("available").as_int64(), 1);
  // The first claims its offer (on the other instance) and checks out; the second lets
  // its offer lapse.
  ASSERT_EQ(b.post("/v1/carts/" + first + "/items", line("drop", 1)).status, 200u);
  auto order = http(b.port(), "POST", "/v1/carts/" + first + "/checkout", "",
                    {{"Idempotency-Key", "drop-1"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  EXPECT_TRUE(
      eventually([&] { return b.get("/v1/stock/drop").json().at("reserved").as_int64() == 0; }, 4s))
      << "the unclaimed offer lapsed";

  // Every unit: 3 on hand at first, 1 sold, 2 on the shelf, none held, in Redis and in
  // PostgreSQL, whose ledger sums to its on_hand.
  EXPECT_EQ(b.get("/v1/stock/drop").json().at("on_hand").as_int64(), 2);
  EXPECT_EQ(sql("SELECT on_hand FROM inventory WHERE inventory_id = 'drop'"), 2);
  EXPECT_EQ(sql("SELECT SUM(delta) FROM inventory_movements WHERE inventory_id = 'drop'"), 2);
  EXPECT_EQ(sql("SELECT COALESCE(SUM(quantity), 0) FROM order_lines WHERE inventory_id = 'drop'"),
            1);
  EXPECT_TRUE(eventually(
      [&] { return sql("SELECT reserved FROM inventory WHERE inventory_id = 'drop'") == 0; }, 3s));
  auto check = a.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

}  // namespace pg_test
}  // namespace cartd::test
