// The contract of POST /add-to-cart, GET /get-cart and GET /v1/stock/{id}, against a
// real redis-server and cartd.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <random>
#include <thread>

#include "base/session_id.hpp"
#include "cart/rules.hpp"
#include "functions/keys.hpp"
#include "harness.hpp"

namespace cartd::test {
namespace classic_routes_test {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "cap-navy", "product_id": "cap-navy", "name": "Cap", "price_cents": 2499, "on_hand": 20},
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1499, "on_hand": 10},
  {"inventory_id": "shoe-42-eu", "product_id": "shoe-42", "name": "Shoe 42", "price_cents": 8999, "on_hand": 6},
  {"inventory_id": "shoe-42-us", "product_id": "shoe-42", "name": "Shoe 42 (US)", "price_cents": 8999, "on_hand": 4},
  {"inventory_id": "last-one", "product_id": "last-one", "name": "Lamp", "price_cents": 12900, "on_hand": 1}
])json";

std::string line(const std::string& product, const std::string& inventory, json::value qty) {
  return json::serialize(
      json::object{{"product_id", product}, {"inventory_id", inventory}, {"quantity", qty}});
}

// Every test here runs on a standalone Redis and on a Redis Cluster.
class ClassicRoutes : public ::testing::TestWithParam<RedisKind> {
 protected:
  TestRedis redis_{GetParam()};
  Cartd cartd_{redis_.url(), kCatalog};

  json::object stock(const std::string& inv) {
    auto r = cartd_.get("/v1/stock/" + inv);
    EXPECT_EQ(r.status, 200u) << r.body;
    return r.json().as_object();
  }
  std::int64_t reserved(const std::string& inv) { return stock(inv)["reserved"].as_int64(); }
  std::int64_t available(const std::string& inv) { return stock(inv)["available"].as_int64(); }

  // Adds a line and returns the session id of the cart.
  std::string add(const std::string& product, const std::string& inv, int qty,
                  const std::string& sid = "") {
    std::map<std::string, std::string> h;
    if (!sid.empty()) h["cart-session-id"] = sid;
    auto r = cartd_.post("/add-to-cart", line(product, inv, qty), h);
    EXPECT_EQ(r.status, 200u) << r.body;
    return std::string(r.json().at("cartSessionId").as_string());
  }
};

TEST_P(ClassicRoutes, healthz_answers_ok_when_redis_and_db_answer) {
  auto r = cartd_.get("/healthz");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.json(), json::parse(R"({"status":"ok"})"));
}

TEST_P(ClassicRoutes, add_to_cart_creates_a_session_and_holds_the_units) {
  auto r = cartd_.post("/add-to-cart", line("cap-navy", "cap-navy", 3));
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = r.json().as_object();
  EXPECT_EQ(body["message"], "Product added to cart successfully");
  std::string sid(body["cartSessionId"].as_string());
  EXPECT_EQ(r.headers["cart-session-id"], sid);
  ASSERT_TRUE(parse_session_id(sid));
  EXPECT_EQ(sid[14], '4') << "a version 4 UUID";
  EXPECT_EQ(reserved("cap-navy"), 3);
  EXPECT_EQ(available("cap-navy"), 17);

  // The cart key carries the cart TTL (900 s by default), its deadline rounded up to the
  // bucket quantum (9 s: a hundredth of the TTL).
  auto ttl = redis_.command({"PTTL", keys::cart(sid)}).integer;
  EXPECT_GT(ttl, 890'000);
  EXPECT_LE(ttl, 909'000);
}

TEST_P(ClassicRoutes, a_live_session_header_uses_that_cart) {
  std::string sid = add("cap-navy", "cap-navy", 1);
  EXPECT_EQ(add("mug", "mug", 2, sid), sid);
  auto r = cartd_.get("/get-cart", {{"cart-session-id", sid}});
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.json(), json::parse(R"({"message":"Cart retrieved successfully","data":[
      {"product_id":"cap-navy","inventory_id":"cap-navy","quantity":1},
      {"product_id":"mug","inventory_id":"mug","quantity":2}]})"));
}

TEST_P(ClassicRoutes, an_unknown_session_header_starts_a_new_cart) {
  std::string unknown = "0b7a6c4e-1f2d-4c3b-9a8e-7d6c5b4a3f21";
  std::string sid = add("mug", "mug", 1, unknown);
  EXPECT_NE(sid, unknown);
  EXPECT_EQ(cartd_.get("/get-cart", {{"cart-session-id", unknown}}).status, 404u);
}

TEST_P(ClassicRoutes, an_uppercase_session_id_names_the_same_cart) {
  std::string sid = add("mug", "mug", 1);
  std::string upper = sid;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  EXPECT_EQ(add("mug", "mug", 2, upper), sid);
}

TEST_P(ClassicRoutes, setting_a_line_holds_exactly_the_difference) {
  std::optional<cart::Line> held;
  std::string sid;
  auto set = [&](const std::string& product, const std::string& inv, int qty) {
    sid = add(product, inv, qty, sid);
    held = cart::Line{inv, qty};
  };
  set("cap-navy", "cap-navy", 3);
  EXPECT_EQ(reserved("cap-navy"), 3);
  set("cap-navy", "cap-navy", 5);
  EXPECT_EQ(reserved("cap-navy"), 5);
  set("cap-navy", "cap-navy", 1);
  EXPECT_EQ(reserved("cap-navy"), 1);

  set("shoe-42", "shoe-42-eu", 2);
  EXPECT_EQ(reserved("shoe-42-eu"), 2);
  set("shoe-42", "shoe-42-us", 3);  // the same product moves to another stock row
  EXPECT_EQ(reserved("shoe-42-eu"), 0);
  EXPECT_EQ(reserved("shoe-42-us"), 3);
  EXPECT_EQ(reserved("cap-navy"), 1) << "other lines are untouched";

  auto r = cartd_.get("/get-cart", {{"cart-session-id", sid}});
  EXPECT_EQ(r.json().at("data"), json::parse(R"([
      {"product_id":"cap-navy","inventory_id":"cap-navy","quantity":1},
      {"product_id":"shoe-42","inventory_id":"shoe-42-us","quantity":3}])"));
}

TEST_P(ClassicRoutes, the_hold_change_follows_the_line_change_model) {
  // Random line changes of one product across two stock rows; after each, the held units
  // equal what plan_line_change says moved.
  std::mt19937 rng(7);
  std::string sid = add("shoe-42", "shoe-42-eu", 1);
  std::optional<cart::Line> old_line = cart::Line{"shoe-42-eu", 1};
  std::map<std::string, std::int64_t> expected{{"shoe-42-eu", 1}, {"shoe-42-us", 0}};
  for (int i = 0; i < 25; ++i) {
    std::string inv = rng() % 2 ? "shoe-42-eu" : "shoe-42-us";
    int qty = 1 + static_cast<int>(rng() % 4);
    auto change = cart::plan_line_change(old_line, cart::Line{inv, qty});
    auto r = cartd_.post("/add-to-cart", line("shoe-42", inv, qty), {{"cart-session-id", sid}});
    ASSERT_EQ(r.status, 200u) << r.body;
    if (change.release) expected[change.release->inventory_id] -= change.release->quantity;
    if (change.hold) expected[change.hold->inventory_id] += change.hold->quantity;
    old_line = cart::Line{inv, qty};
    EXPECT_EQ(reserved("shoe-42-eu"), expected["shoe-42-eu"]);
    EXPECT_EQ(reserved("shoe-42-us"), expected["shoe-42-us"]);
  }
}

TEST_P(ClassicRoutes, insufficient_stock_answers_409_and_changes_nothing) {
  std::string sid = add("mug", "mug", 8);
  auto before = redis_.snapshot();
  auto r = cartd_.post("/add-to-cart", line("mug", "mug", 11), {{"cart-session-id", sid}});
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(r.json(), json::parse(R"({"message":"Insufficient stock","available":2})"));
  r = cartd_.post("/add-to-cart", line("mug", "mug", 3));  // another shopper
  EXPECT_EQ(r.status, 409u);
  EXPECT_EQ(redis_.snapshot(), before);
  EXPECT_EQ(add("mug", "mug", 10, sid), sid) << "the cart's own hold counts toward its line";
}

TEST_P(ClassicRoutes, unknown_inventory_answers_404) {
  auto r = cartd_.post("/add-to-cart", line("nope", "nope", 1));
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.json(), json::parse(R"({"message":"Unknown inventory_id"})"));
}

TEST_P(ClassicRoutes, inventory_of_another_product_answers_422) {
  auto before = redis_.snapshot();
  auto r = cartd_.post("/add-to-cart", line("mug", "cap-navy", 1));
  EXPECT_EQ(r.status, 422u);
  EXPECT_TRUE(r.json().as_object().contains("message"));
  EXPECT_EQ(redis_.snapshot(), before);
}

TEST_P(ClassicRoutes, bad_inputs_answer_4xx_and_change_nothing) {
  std::string sid = add("mug", "mug", 1);
  auto before = redis_.snapshot();
  struct Case {
    std::string name;
    std::string body;
    std::map<std::string, std::string> headers;
    unsigned status;
  };
  std::string long_id(65, 'a');
  std::vector<Case> cases{
      {"invalid JSON", "{\"product_id\": ", {}, 400},
      {"not an object", "[1,2]", {}, 400},
      {"empty body", "", {}, 400},
      {"missing product_id", R"({"inventory_id":"mug","quantity":1})", {}, 400},
      {"missing inventory_id", R"({"product_id":"mug","quantity":1})", {}, 400},
      {"missing quantity", R"({"product_id":"mug","inventory_id":"mug"})", {}, 400},
      {"quantity 0", line("mug", "mug", 0), {}, 400},
      {"quantity -1", line("mug", "mug", -1), {}, 400},
      {"quantity 101", line("mug", "mug", 101), {}, 400},
      {"quantity 2.5", line("mug", "mug", 2.5), {}, 400},
      {"quantity as text", line("mug", "mug", "3"), {}, 400},
      {"quantity huge",
       R"({"product_id":"mug","inventory_id":"mug","quantity":18446744073709551615})",
       {},
       400},
      {"id too long", line(long_id, "mug", 1), {}, 400},
      {"id with a brace", line("mug}", "mug", 1), {}, 400},
      {"id with a space", line("mug", "m ug", 1), {}, 400},
      {"id empty", line("", "mug", 1), {}, 400},
      {"id not a string", R"({"product_id":7,"inventory_id":"mug","quantity":1})", {}, 400},
      {"session id not a UUID", line("mug", "mug", 1), {{"cart-session-id", "s:{x}"}}, 400},
      {"session id empty", line("mug", "mug", 1), {{"cart-session-id", ""}}, 400},
      {"1 MiB body", std::string(1 << 20, ' '), {}, 413},
      {"10 000-character header", line("mug", "mug", 1), {{"x-big", std::string(10000, 'h')}}, 431},
  };
  for (const Case& c : cases) {
    HttpResponse r;
    try {
      r = cartd_.post("/add-to-cart", c.body, c.headers);
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": " << e.what();
      continue;
    }
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.body;
    EXPECT_NO_THROW(r.json()) << c.name << ": the error is JSON";
  }
  EXPECT_EQ(redis_.snapshot(), before);
  EXPECT_EQ(cartd_.get("/healthz").status, 200u) << "the service is still up";
}

TEST_P(ClassicRoutes, get_cart_answers_each_case) {
  auto r = cartd_.get("/get-cart");
  EXPECT_EQ(r.status, 400u);
  EXPECT_EQ(r.json().at("data"), json::array{});
  r = cartd_.get("/get-cart", {{"cart-session-id", "not-a-uuid"}});
  EXPECT_EQ(r.status, 400u);
  r = cartd_.get("/get-cart", {{"cart-session-id", new_session_id()}});
  EXPECT_EQ(r.status, 404u);
  EXPECT_EQ(r.json(), json::parse(R"({"message":"Cart is empty","data":[]})"));

  std::string sid = add("mug", "mug", 4);
  r = cartd_.get("/get-cart", {{"cart-session-id", sid}});
  EXPECT_EQ(r.status, 200u);
  EXPECT_TRUE(r.json().at("data").at(0).at("quantity").is_int64()) << "quantity is a number";
}

TEST_P(ClassicRoutes, reading_a_cart_does_not_extend_it) {
  std::string sid = add("mug", "mug", 1);
  auto before = redis_.command({"PEXPIRETIME", keys::cart(sid)}).integer;
  std::this_thread::sleep_for(20ms);
  cartd_.get("/get-cart", {{"cart-session-id", sid}});
  EXPECT_EQ(redis_.command({"PEXPIRETIME", keys::cart(sid)}).integer, before);
}

TEST_P(ClassicRoutes, stock_of_an_unknown_row_answers_404) {
  EXPECT_EQ(cartd_.get("/v1/stock/nope").status, 404u);
  EXPECT_EQ(cartd_.get("/v1/stock/bad%20id").status, 400u);
  auto s = stock("cap-navy");
  EXPECT_EQ(s, json::parse(R"({"inventory_id":"cap-navy","product_id":"cap-navy","on_hand":20,
                             "reserved":0,"available":20})"));
}

TEST_P(ClassicRoutes, concurrent_shoppers_never_oversell) {
  constexpr int kShoppers = 200;
  std::atomic<int> ok{0}, conflict{0}, other{0};
  std::vector<std::thread> shoppers;
  for (int i = 0; i < kShoppers; ++i) {
    shoppers.emplace_back([&] {
      try {
        auto r = cartd_.post("/add-to-cart", line("cap-navy", "cap-navy", 1));
        (r.status == 200 ? ok : r.status == 409 ? conflict : other)++;
      } catch (const std::exception&) {
        other++;
      }
    });
  }
  for (auto& t : shoppers) t.join();
  EXPECT_EQ(ok.load(), 20);
  EXPECT_EQ(conflict.load(), 180);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(available("cap-navy"), 0);
  EXPECT_EQ(reserved("cap-navy"), 20);
}

TEST_P(ClassicRoutes, unknown_routes_and_methods_answer_json) {
  auto r = cartd_.get("/nope");
  EXPECT_EQ(r.status, 404u);
  EXPECT_NO_THROW(r.json());
  r = cartd_.get("/add-to-cart");
  EXPECT_EQ(r.status, 405u);
}

TEST_P(ClassicRoutes, the_db_shows_what_is_reserved) {
  add("mug", "mug", 4);
  EXPECT_TRUE(eventually(
      [&] {
        return sqlite_int(cartd_.db_path(),
                          "SELECT reserved FROM inventory WHERE inventory_id = 'mug'") == 4;
      },
      3s));
  EXPECT_EQ(
      sqlite_int(cartd_.db_path(), "SELECT available FROM inventory WHERE inventory_id = 'mug'"),
      6);
}

INSTANTIATE_TEST_SUITE_P(Redis, ClassicRoutes, ::testing::ValuesIn(kRedisKinds), redis_kind_name);

TEST(RedisOutage, requests_fail_fast_with_503_and_recover_without_restart) {
  RedisServer redis({"--appendonly", "yes"});
  Cartd cartd(redis, kCatalog);
  auto r = cartd.post("/add-to-cart", line("mug", "mug", 2));
  ASSERT_EQ(r.status, 200u);
  std::string sid(r.json().at("cartSessionId").as_string());

  redis.stop();
  auto start = std::chrono::steady_clock::now();
  r = cartd.post("/add-to-cart", line("mug", "mug", 1));
  EXPECT_EQ(r.status, 503u) << r.body;
  EXPECT_NO_THROW(r.json());
  EXPECT_EQ(cartd.get("/get-cart", {{"cart-session-id", sid}}).status, 503u);
  EXPECT_EQ(cartd.get("/v1/stock/mug").status, 503u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "no hang";
  EXPECT_TRUE(eventually([&] { return cartd.get("/healthz").status == 503; }, 5s));

  redis.start();
  EXPECT_TRUE(cartd.wait_healthy(10s)) << cartd.log();
  r = cartd.get("/get-cart", {{"cart-session-id", sid}});
  EXPECT_EQ(r.status, 200u) << "the cart survived in Redis' AOF";
  EXPECT_EQ(cartd.get("/v1/stock/mug").json().at("reserved").as_int64(), 2);
  EXPECT_EQ(cartd.post("/add-to-cart", line("cap-navy", "cap-navy", 1)).status, 200u);
}

TEST(RedisOutage, an_empty_redis_is_mirrored_again_from_the_db) {
  RedisServer redis;  // no persistence: a restart loses everything
  Cartd cartd(redis, kCatalog);
  ASSERT_EQ(cartd.post("/add-to-cart", line("mug", "mug", 2)).status, 200u);
  redis.stop();
  redis.start();
  EXPECT_TRUE(cartd.wait_healthy(10s)) << cartd.log();
  auto s = cartd.get("/v1/stock/mug");
  ASSERT_EQ(s.status, 200u) << s.body;
  EXPECT_EQ(s.json().at("on_hand").as_int64(), 10);
  EXPECT_EQ(s.json().at("reserved").as_int64(), 0) << "the holds were lost with the data";
  EXPECT_TRUE(eventually(
      [&] {
        return sqlite_int(cartd.db_path(),
                          "SELECT reserved FROM inventory WHERE inventory_id = 'mug'") == 0;
      },
      3s));
}

TEST(Shutdown, a_request_under_way_finishes_before_cartd_exits) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  redis.command({"CLIENT", "PAUSE", "800", "ALL"});  // the next request waits on Redis
  HttpResponse answer;
  std::thread shopper([&] { answer = cartd.post("/add-to-cart", line("mug", "mug", 1)); });
  std::this_thread::sleep_for(200ms);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(cartd.stop(SIGTERM), 0);
  shopper.join();
  EXPECT_EQ(answer.status, 200u) << answer.body;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(std::stoll(redis.command({"HGET", keys::stock("mug"), "r"}).str), 1);
}

}  // namespace classic_routes_test
}  // namespace cartd::test
