// The /v1 API: carts and lines, checkout into orders (idempotent, crash-safe, racing
// expiry), orders, products and the admin stock routes. After each test the main DB and
// Redis agree.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <regex>
#include <set>
#include <thread>

#include "base/session_id.hpp"
#include "harness.hpp"

namespace cartd::test {
namespace api_test {

namespace json = boost::json;
using namespace std::chrono_literals;
using Headers = std::map<std::string, std::string>;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1500, "on_hand": 10},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 2500, "on_hand": 20},
  {"inventory_id": "shoe-eu", "product_id": "shoe", "name": "Shoe EU", "price_cents": 9000, "on_hand": 5},
  {"inventory_id": "shoe-us", "product_id": "shoe", "name": "Shoe US", "price_cents": 9000, "on_hand": 3},
  {"inventory_id": "lamp", "product_id": "lamp", "name": "Lamp", "price_cents": 12900, "on_hand": 1}
])json";
const std::vector<std::string> kRows{"mug", "cap", "shoe-eu", "shoe-us", "lamp"};
constexpr const char* kToken = "s3cret-token";

std::string item(const std::string& product, const std::string& inv, int qty) {
  return json::serialize(
      json::object{{"product_id", product}, {"inventory_id", inv}, {"quantity", qty}});
}
std::string set_body(const std::string& inv, int qty) {
  return json::serialize(json::object{{"inventory_id", inv}, {"quantity", qty}});
}

// Every test here runs on a standalone Redis and on a Redis Cluster.
class Api : public ::testing::TestWithParam<RedisKind> {
 protected:
  explicit Api(std::vector<std::string> flags = {"--admin-token", kToken})
      : cartd_(redis_.url(), kCatalog, std::move(flags)) {}

  void TearDown() override { expect_db_agrees_with_redis(); }

  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = "", const Headers& h = {}) {
    return http(cartd_.port(), method, target, body, h);
  }
  std::string new_cart() {
    auto r = call("POST", "/v1/carts");
    EXPECT_EQ(r.status, 201u) << r.body;
    return std::string(r.json().at("id").as_string());
  }
  json::object cart(const std::string& id) {
    return call("GET", "/v1/carts/" + id).json().as_object();
  }
  json::object stock(const std::string& inv) {
    return call("GET", "/v1/stock/" + inv).json().as_object();
  }
  std::int64_t db(const std::string& sql) { return sqlite_int(cartd_.db_path(), sql); }
  std::int64_t db_row(const std::string& column, const std::string& inv) {
    return db("SELECT " + column + " FROM inventory WHERE inventory_id = '" + inv + "'");
  }
  std::string code(const HttpResponse& r) {
    return std::string(r.json().at("error").at("code").as_string());
  }
  HttpResponse checkout(const std::string& id, const std::string& key) {
    return call("POST", "/v1/carts/" + id + "/checkout", "", {{"Idempotency-Key", key}});
  }

  // The main DB shows what Redis holds: on_hand, and reserved within a second of quiet.
  void expect_db_agrees_with_redis() {
    bool agree = eventually(
        [&] {
          for (auto& inv : kRows) {
            auto s = stock(inv);
            if (db_row("on_hand", inv) != s["on_hand"].as_int64() ||
                db_row("reserved", inv) != s["reserved"].as_int64()) {
              return false;
            }
          }
          return true;
        },
        2s, 50ms);
    EXPECT_TRUE(agree) << "the main DB and Redis disagree";
  }

  TestRedis redis_{GetParam()};
  Cartd cartd_;
};

TEST_P(Api, a_new_cart_is_empty_and_has_a_deadline) {
  auto r = call("POST", "/v1/carts");
  ASSERT_EQ(r.status, 201u);
  auto body = r.json().as_object();
  std::string id(body["id"].as_string());
  EXPECT_TRUE(parse_session_id(id));
  EXPECT_EQ(r.headers["cart-session-id"], id);
  EXPECT_EQ(body["lines"], json::array{});
  EXPECT_TRUE(std::regex_match(std::string(body["expires_at"].as_string()),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  // 900 s, the deadline rounded up to the bucket quantum (a hundredth of the TTL).
  EXPECT_GE(body["ttl_seconds"].as_int64(), 900);
  EXPECT_LE(body["ttl_seconds"].as_int64(), 909);
  EXPECT_EQ(cart(id)["item_count"].as_int64(), 0);
}

TEST_P(Api, lines_show_names_prices_and_totals) {
  std::string id = new_cart();
  auto r = call("PUT", "/v1/carts/" + id + "/items/mug", set_body("mug", 2));
  ASSERT_EQ(r.status, 200u) << r.body;
  r = call("POST", "/v1/carts/" + id + "/items", item("shoe", "shoe-us", 1));
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = cart(id);
  EXPECT_EQ(body["lines"], json::parse(R"([
    {"product_id":"mug","inventory_id":"mug","name":"Mug","quantity":2,"unit_price_cents":1500,"line_total_cents":3000,"currency":"USD"},
    {"product_id":"shoe","inventory_id":"shoe-us","name":"Shoe US","quantity":1,"unit_price_cents":9000,"line_total_cents":9000,"currency":"USD"}])"));
  EXPECT_EQ(body["total_cents"].as_int64(), 12000);
  EXPECT_EQ(body["item_count"].as_int64(), 3);
  EXPECT_EQ(r.json().as_object()["lines"], body["lines"]) << "each change answers with the cart";
}

TEST_P(Api, post_adds_to_a_line_put_sets_it_and_delete_removes_it) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("cap", "cap", 2));
  call("POST", "/v1/carts/" + id + "/items", item("cap", "cap", 3));
  EXPECT_EQ(cart(id)["lines"].at(0).at("quantity").as_int64(), 5);
  EXPECT_EQ(stock("cap")["reserved"].as_int64(), 5);
  call("PUT", "/v1/carts/" + id + "/items/cap", set_body("cap", 1));
  EXPECT_EQ(stock("cap")["reserved"].as_int64(), 1);
  auto r = call("PUT", "/v1/carts/" + id + "/items/cap", R"({"quantity": 0})");
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(stock("cap")["reserved"].as_int64(), 0);
  call("POST", "/v1/carts/" + id + "/items", item("mug", "mug", 4));
  r = call("DELETE", "/v1/carts/" + id + "/items/mug");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.json().at("lines"), json::array{});
  EXPECT_EQ(stock("mug")["reserved"].as_int64(), 0);
}

TEST_P(Api, abandoning_a_cart_returns_its_units_at_once) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("lamp", "lamp", 1));
  EXPECT_EQ(stock("lamp")["available"].as_int64(), 0);
  auto r = call("DELETE", "/v1/carts/" + id);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("status"), "abandoned");
  EXPECT_EQ(stock("lamp")["available"].as_int64(), 1);
  auto events = redis_.cart_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].elements[1].text_at(1), "abandoned");
  auto gone = call("GET", "/v1/carts/" + id);
  EXPECT_EQ(gone.status, 404u);
  EXPECT_EQ(code(gone), "cart_expired");
  EXPECT_EQ(call("DELETE", "/v1/carts/" + id).status, 404u);
}

TEST_P(Api, line_errors_answer_with_stable_codes_and_change_nothing) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("mug", "mug", 8));
  auto before = redis_.snapshot();
  struct Case {
    std::string method, target, body;
    unsigned status;
    std::string code;
  };
  std::string base = "/v1/carts/" + id;
  std::vector<Case> cases{
      {"POST", base + "/items", item("mug", "mug", 3), 409, "insufficient_stock"},
      {"PUT", base + "/items/mug", set_body("mug", 11), 409, "insufficient_stock"},
      {"PUT", base + "/items/mug", set_body("mug", 101), 400, "invalid_quantity"},
      {"POST", base + "/items", item("mug", "mug", 93), 422, "quantity_limit"},
      {"POST", base + "/items", item("nope", "nope", 1), 404, "unknown_inventory"},
      {"POST", base + "/items", item("mug", "cap", 1), 422, "product_mismatch"},
      {"POST", base + "/items", "{", 400, "invalid_json"},
      {"POST", base + "/items", R"({"product_id":"mug","quantity":1})", 400, "missing_field"},
      {"PUT", base + "/items/mug", R"({"quantity": 2})", 400, "missing_field"},
      {"PUT", base + "/items/m%20ug", set_body("mug", 1), 400, "invalid_id"},
      {"POST", "/v1/carts/not-a-uuid/items", item("mug", "mug", 1), 400, "invalid_cart_id"},
      {"POST", "/v1/carts/" + new_session_id() + "/items", item("mug", "mug", 1), 404,
       "cart_not_found"},
      {"GET", "/v1/carts/" + new_session_id(), "", 404, "cart_not_found"},
      {"PATCH", base, "", 405, "method_not_allowed"},
  };
  for (const Case& c : cases) {
    auto r = call(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body << ": " << r.body;
    EXPECT_EQ(code(r), c.code) << c.method << " " << c.target << " " << c.body;
  }
  auto r = call("POST", base + "/items", item("mug", "mug", 3));
  EXPECT_EQ(r.json().at("error").at("available").as_int64(), 2);
  EXPECT_EQ(redis_.snapshot(), before);
}

class ApiSmallCarts : public Api {
 protected:
  ApiSmallCarts() : Api({"--max-lines", "2", "--cart-ttl", "1"}) {}
};

TEST_P(ApiSmallCarts, a_cart_holds_at_most_max_lines) {
  std::string id = new_cart();
  EXPECT_EQ(call("POST", "/v1/carts/" + id + "/items", item("mug", "mug", 1)).status, 200u);
  EXPECT_EQ(call("POST", "/v1/carts/" + id + "/items", item("cap", "cap", 1)).status, 200u);
  auto r = call("POST", "/v1/carts/" + id + "/items", item("lamp", "lamp", 1));
  EXPECT_EQ(r.status, 422u);
  EXPECT_EQ(code(r), "too_many_lines");
  EXPECT_EQ(call("POST", "/v1/carts/" + id + "/items", item("cap", "cap", 1)).status, 200u)
      << "an existing line may still change";
}

TEST_P(ApiSmallCarts, an_expired_cart_says_so) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("mug", "mug", 1));
  std::this_thread::sleep_for(1200ms);
  // The expiry is recorded when the keyspace event comes, a few ms after Redis deleted the
  // cart: a read that is the first to touch it (and so has Redis delete it) is too early
  // to know (docs/DESIGN.md), so this one may say cart_not_found.
  HttpResponse r;
  EXPECT_TRUE(eventually(
      [&] {
        r = call("GET", "/v1/carts/" + id);
        return code(r) == "cart_expired";
      },
      3s))
      << r.body;
  EXPECT_EQ(r.status, 404u);
  r = checkout(id, "k1");
  EXPECT_EQ(r.status, 410u);
  EXPECT_EQ(code(r), "cart_expired");
}

TEST_P(Api, checkout_turns_held_units_into_one_order) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("mug", "mug", 2));
  call("POST", "/v1/carts/" + id + "/items", item("shoe", "shoe-eu", 1));
  auto r = checkout(id, "order-key-1");
  ASSERT_EQ(r.status, 201u) << r.body;
  auto order = r.json().as_object();
  EXPECT_EQ(order["total_cents"].as_int64(), 2 * 1500 + 9000);
  EXPECT_EQ(order["lines"].as_array().size(), 2u);
  EXPECT_EQ(order["cart_id"], json::value(id));
  std::string order_id(order["order_id"].as_string());

  EXPECT_EQ(stock("mug")["on_hand"].as_int64(), 8);
  EXPECT_EQ(stock("mug")["reserved"].as_int64(), 0);
  EXPECT_EQ(stock("shoe-eu")["on_hand"].as_int64(), 4);
  EXPECT_EQ(db("SELECT COUNT(*) FROM orders"), 1);
  EXPECT_EQ(db("SELECT SUM(quantity) FROM order_lines"), 3);
  auto gone = call("GET", "/v1/carts/" + id);
  EXPECT_EQ(gone.status, 410u) << "the cart is gone";
  EXPECT_EQ(code(gone), "cart_checked_out");

  auto again = checkout(id, "order-key-1");
  EXPECT_EQ(again.status, 200u);
  EXPECT_EQ(again.json().at("order_id"), json::value(order_id));
  auto other = checkout(id, "order-key-2");
  EXPECT_EQ(other.status, 409u);
  EXPECT_EQ(code(other), "already_checked_out");

  auto fetched = call("GET", "/v1/orders/" + order_id);
  EXPECT_EQ(fetched.status, 200u);
  EXPECT_EQ(fetched.json(), json::value(order));
  EXPECT_EQ(call("GET", "/v1/orders/" + new_session_id()).status, 404u);

  auto events = redis_.cart_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].elements[1].text_at(1), "checked_out");
}

TEST_P(Api, checkout_refuses_what_it_cannot_do) {
  std::string id = new_cart();
  auto r = call("POST", "/v1/carts/" + id + "/checkout");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(code(r), "missing_idempotency_key");
  r = checkout(id, std::string(129, 'k'));
  EXPECT_EQ(code(r), "invalid_idempotency_key");
  r = checkout(id, "k\x01");
  EXPECT_EQ(r.status, 400u) << "a control character is refused (by the HTTP parser)";
  r = checkout(id, "k");
  EXPECT_EQ(r.status, 422u);
  EXPECT_EQ(code(r), "cart_empty");
  r = checkout(new_session_id(), "k");
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(code(r), "cart_not_found");
  EXPECT_EQ(db("SELECT COUNT(*) FROM orders"), 0);
}

TEST_P(Api, twenty_concurrent_checkouts_with_one_key_make_one_order) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("cap", "cap", 3));
  std::vector<std::thread> clients;
  std::mutex m;
  std::multiset<unsigned> statuses;
  std::set<std::string> order_ids;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([&] {
      auto r = checkout(id, "double-click");
      std::lock_guard lock(m);
      statuses.insert(r.status);
      if (r.status < 300) order_ids.insert(std::string(r.json().at("order_id").as_string()));
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(statuses.count(201), 1u);
  EXPECT_EQ(statuses.count(200) + statuses.count(201), 20u);
  EXPECT_EQ(order_ids.size(), 1u);
  EXPECT_EQ(db("SELECT COUNT(*) FROM orders"), 1);
  EXPECT_EQ(stock("cap")["on_hand"].as_int64(), 17);
}

TEST(ApiRace, checkout_racing_expiry_makes_an_order_or_releases_never_both) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--cart-ttl", "1", "--sweep-interval-ms", "20"});
  int ordered = 0, released = 0;
  std::int64_t sold = 0;
  for (int round = 0; round < 12; ++round) {
    auto c = http(cartd.port(), "POST", "/v1/carts");
    std::string id(c.json().at("id").as_string());
    auto t0 = std::chrono::steady_clock::now();
    http(cartd.port(), "POST", "/v1/carts/" + id + "/items", item("cap", "cap", 1));
    // Aim at the deadline, a little before or after, round by round.
    std::this_thread::sleep_until(t0 + 980ms + std::chrono::milliseconds(round % 4 * 15));
    auto r = http(cartd.port(), "POST", "/v1/carts/" + id + "/checkout", "",
                  {{"Idempotency-Key", "race-" + std::to_string(round)}});
    if (r.status == 201) {
      ++ordered;
      ++sold;
    } else {
      EXPECT_TRUE(r.status == 410u || r.status == 404u) << r.status << " " << r.body;
      ++released;
    }
  }
  // Every unit is in exactly one order or back in stock.
  EXPECT_TRUE(eventually(
      [&] {
        auto s = http(cartd.port(), "GET", "/v1/stock/cap").json();
        return s.at("reserved").as_int64() == 0 && s.at("on_hand").as_int64() == 20 - sold;
      },
      3s));
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT COALESCE(SUM(quantity), 0) FROM order_lines"),
            sold);
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT on_hand FROM inventory WHERE inventory_id='cap'"),
            20 - sold);
  EXPECT_EQ(ordered + released, 12);
  std::printf("checkout vs expiry: %d ordered, %d expired first\n", ordered, released);
}

// Kills cartd right after checkout step `step`, restarts it, and checks the rules: the
// cart is either exactly one order or still a live cart, and a retry completes it.
void crash_during_checkout(int step) {
  SCOPED_TRACE("fault after step " + std::to_string(step));
  RedisServer redis({"--appendonly", "yes"});
  std::vector<std::string> flags{"--fault-after-checkout-step",
                                 std::to_string(step),
                                 "--checkout-recovery-ms",
                                 "300",
                                 "--checkout-grace",
                                 "30"};
  auto cartd = std::make_unique<Cartd>(redis, kCatalog, flags);
  auto db_path = cartd->db_path();
  std::string id(http(cartd->port(), "POST", "/v1/carts").json().at("id").as_string());
  http(cartd->port(), "POST", "/v1/carts/" + id + "/items", item("mug", "mug", 4));
  EXPECT_THROW(http(cartd->port(), "POST", "/v1/carts/" + id + "/checkout", "",
                    {{"Idempotency-Key", "crash"}}),
               std::exception)
      << "the process died mid-checkout";
  cartd->stop(SIGKILL);
  std::int64_t orders = sqlite_int(db_path, "SELECT COUNT(*) FROM orders");
  EXPECT_EQ(orders, step >= 2 ? 1 : 0);

  cartd->set_flags({"--checkout-recovery-ms", "300", "--checkout-grace", "30"});
  cartd->start();
  int port = cartd->port();
  auto state_ok = [&] {
    auto s = http(port, "GET", "/v1/stock/mug").json();
    auto cart_status = http(port, "GET", "/v1/carts/" + id).status;
    auto orders = sqlite_int(db_path, "SELECT COUNT(*) FROM orders");
    if (orders == 1) {  // one order: units left on_hand, holds gone, cart gone
      return s.at("on_hand").as_int64() == 6 && s.at("reserved").as_int64() == 0 &&
             cart_status == 410;
    }
    return orders == 0 && cart_status == 200 && s.at("reserved").as_int64() == 4 &&
           s.at("on_hand").as_int64() == 10;  // a live cart, units held
  };
  EXPECT_TRUE(eventually(state_ok, 3s)) << cartd->log();

  auto retry =
      http(port, "POST", "/v1/carts/" + id + "/checkout", "", {{"Idempotency-Key", "crash"}});
  EXPECT_TRUE(retry.status == 201u || retry.status == 200u) << retry.body;
  EXPECT_EQ(sqlite_int(db_path, "SELECT COUNT(*) FROM orders"), 1);
  EXPECT_TRUE(eventually(
      [&] {
        auto s = http(port, "GET", "/v1/stock/mug").json();
        return s.at("on_hand").as_int64() == 6 && s.at("reserved").as_int64() == 0 &&
               sqlite_int(db_path, "SELECT on_hand FROM inventory WHERE inventory_id='mug'") == 6 &&
               sqlite_int(db_path, "SELECT reserved FROM inventory WHERE inventory_id='mug'") == 0;
      },
      3s));
}

TEST(ApiCrash, killed_after_checkout_began_the_cart_lives_on_and_a_retry_completes) {
  crash_during_checkout(1);
}
TEST(ApiCrash, killed_after_the_order_was_written_recovery_finishes_it) {
  crash_during_checkout(2);
}
TEST(ApiCrash, killed_after_redis_was_settled_the_order_stands) {
  crash_during_checkout(3);
}

TEST_P(Api, products_are_listed_in_pages_with_live_counts) {
  std::string id = new_cart();
  call("POST", "/v1/carts/" + id + "/items", item("shoe", "shoe-us", 2));
  auto r = call("GET", "/v1/products?limit=2");
  ASSERT_EQ(r.status, 200u) << r.body;
  auto page = r.json().as_object();
  ASSERT_EQ(page["products"].as_array().size(), 2u);
  EXPECT_EQ(page["products"].at(0).at("product_id"), "cap");
  EXPECT_EQ(page["next_cursor"], "lamp");
  std::vector<std::string> seen;
  std::string cursor;
  for (int pages = 0; pages < 10; ++pages) {
    auto p = call("GET", "/v1/products?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor))
                 .json()
                 .as_object();
    for (auto& prod : p["products"].as_array())
      seen.emplace_back(prod.at("product_id").as_string());
    if (p["next_cursor"].is_null()) break;
    cursor = std::string(p["next_cursor"].as_string());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"cap", "lamp", "mug", "shoe"}));

  auto shoe = call("GET", "/v1/products/shoe");
  ASSERT_EQ(shoe.status, 200u);
  EXPECT_EQ(shoe.json().at("stock"), json::parse(R"([
    {"inventory_id":"shoe-eu","product_id":"shoe","name":"Shoe EU","price_cents":9000,"currency":"USD","on_hand":5,"reserved":0,"available":5,"max_per_cart":null},
    {"inventory_id":"shoe-us","product_id":"shoe","name":"Shoe US","price_cents":9000,"currency":"USD","on_hand":3,"reserved":2,"available":1,"max_per_cart":null}])"));
  EXPECT_EQ(call("GET", "/v1/products/nope").status, 404u);
  EXPECT_EQ(code(call("GET", "/v1/products?limit=0")), "invalid_limit");
  EXPECT_EQ(code(call("GET", "/v1/products?limit=101")), "invalid_limit");
  EXPECT_EQ(code(call("GET", "/v1/products?cursor=a%20b")), "invalid_cursor");
}

TEST_P(Api, admin_routes_need_the_token) {
  std::string body =
      R"({"inventory_id":"new","product_id":"new","name":"New","price_cents":100,"on_hand":5})";
  auto r = call("POST", "/v1/stock", body);
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(code(r), "unauthorized");
  r = call("POST", "/v1/stock", body, {{"Authorization", "Bearer wrong"}});
  EXPECT_EQ(r.status, 403u);
  r = call("PUT", "/v1/stock/mug", R"({"on_hand": 3})", {{"Authorization", "Basic abc"}});
  EXPECT_EQ(r.status, 401u);
  EXPECT_EQ(stock("mug")["on_hand"].as_int64(), 10);
}

TEST(ApiAdminOff, admin_routes_do_not_exist_without_a_token) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  auto r = http(cartd.port(), "POST", "/v1/stock", "{}", {{"Authorization", "Bearer x"}});
  EXPECT_EQ(r.status, 404u);
}

TEST_P(Api, admin_creates_rows_and_changes_stock_db_first) {
  Headers auth{{"Authorization", std::string("Bearer ") + kToken}};
  std::string body =
      R"({"inventory_id":"vase","product_id":"vase","name":"Vase","price_cents":4200,"on_hand":5})";
  auto r = call("POST", "/v1/stock", body, auth);
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.json().at("available").as_int64(), 5);
  EXPECT_EQ(call("POST", "/v1/stock", body, auth).status, 200u) << "the same row again is a no-op";
  auto clash = call(
      "POST", "/v1/stock",
      R"({"inventory_id":"vase","product_id":"vase","name":"Vase","price_cents":1,"on_hand":5})",
      auth);
  EXPECT_EQ(clash.status, 409u);
  EXPECT_EQ(code(clash), "stock_exists");
  EXPECT_EQ(db_row("on_hand", "vase"), 5);
  EXPECT_EQ(code(call("POST", "/v1/stock", R"({"inventory_id":"x"})", auth)), "missing_field");

  std::string id = new_cart();
  ASSERT_EQ(call("POST", "/v1/carts/" + id + "/items", item("vase", "vase", 4)).status, 200u);
  r = call("PUT", "/v1/stock/vase", R"({"on_hand": 3})", auth);
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(code(r), "below_reserved");
  EXPECT_EQ(db_row("on_hand", "vase"), 5) << "refused: nothing changed";
  r = call("PUT", "/v1/stock/vase", R"({"on_hand": 9})", auth);
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("available").as_int64(), 5);
  EXPECT_EQ(db_row("on_hand", "vase"), 9);
  r = call("POST", "/v1/stock/vase/adjust", R"({"delta": -5})", auth);
  EXPECT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(stock("vase")["on_hand"].as_int64(), 4);
  r = call("POST", "/v1/stock/vase/adjust", R"({"delta": -1})", auth);
  EXPECT_EQ(code(r), "below_reserved");
  r = call("POST", "/v1/stock/nope/adjust", R"({"delta": 1})", auth);
  EXPECT_EQ(r.status, 404u);
  r = call("PUT", "/v1/stock/vase", R"({"on_hand": -1})", auth);
  EXPECT_EQ(code(r), "invalid_on_hand");
}

TEST(Cors, pages_of_an_allowed_origin_may_call_the_api) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--cors-origin", "https://shop.example"});
  auto pre = http(cartd.port(), "OPTIONS", "/v1/carts", "",
                  {{"Origin", "https://shop.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(pre.status, 204u);
  EXPECT_EQ(pre.headers["access-control-allow-origin"], "https://shop.example");
  EXPECT_NE(pre.headers["access-control-allow-headers"].find("cart-session-id"), std::string::npos);
  EXPECT_FALSE(pre.headers.contains("content-length"));

  auto created = http(cartd.port(), "POST", "/v1/carts", "", {{"Origin", "https://shop.example"}});
  EXPECT_EQ(created.status, 201u);
  EXPECT_EQ(created.headers["access-control-allow-origin"], "https://shop.example");
  EXPECT_NE(created.headers["access-control-expose-headers"].find("cart-session-id"),
            std::string::npos);

  auto other = http(cartd.port(), "POST", "/v1/carts", "", {{"Origin", "https://evil.example"}});
  EXPECT_FALSE(other.headers.contains("access-control-allow-origin"));
  auto refused =
      http(cartd.port(), "OPTIONS", "/v1/carts", "",
           {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(refused.status, 403u);
}

INSTANTIATE_TEST_SUITE_P(Redis, Api, ::testing::ValuesIn(kRedisKinds), redis_kind_name);
INSTANTIATE_TEST_SUITE_P(Redis, ApiSmallCarts, ::testing::ValuesIn(kRedisKinds), redis_kind_name);

}  // namespace api_test
}  // namespace cartd::test
