// Reliable expiry: held units return by themselves, on time, exactly once, and the main
// DB shows it, whatever ran or did not run in between.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <random>
#include <thread>

#include "functions/keys.hpp"
#include "harness.hpp"

namespace cartd::test {
namespace expiry_test {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1499, "on_hand": 10},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 2499, "on_hand": 1000},
  {"inventory_id": "shoe-eu", "product_id": "shoe", "name": "Shoe", "price_cents": 8999, "on_hand": 1000},
  {"inventory_id": "shoe-us", "product_id": "shoe", "name": "Shoe (US)", "price_cents": 8999, "on_hand": 1000}
])json";
const std::vector<std::string> kRows{"mug", "cap", "shoe-eu", "shoe-us"};

std::string body(const std::string& product, const std::string& inventory, int qty) {
  return json::serialize(
      json::object{{"product_id", product}, {"inventory_id", inventory}, {"quantity", qty}});
}

// Adds a line; returns the cart's id ("" on failure).
std::string add(Cartd& c, const std::string& product, const std::string& inv, int qty,
                const std::string& sid = "") {
  std::map<std::string, std::string> h;
  if (!sid.empty()) h["cart-session-id"] = sid;
  auto r = c.post("/add-to-cart", body(product, inv, qty), h);
  if (r.status != 200) return "";
  return std::string(r.json().at("cartSessionId").as_string());
}

template <typename Redis>
std::int64_t redis_reserved(Redis& redis, const std::string& inv) {
  auto r = redis.command({"HGET", keys::stock(inv), "r"});
  return r.is_nil() ? -1 : std::stoll(r.str);
}

std::int64_t db_reserved(const Cartd& c, const std::string& inv) {
  return sqlite_int(c.db_path(),
                    "SELECT reserved FROM inventory WHERE inventory_id = '" + inv + "'");
}

template <typename Redis>
bool cart_exists(Redis& redis, const std::string& sid) {
  return redis.command({"EXISTS", keys::cart(sid)}).integer == 1;
}

// Every row is back to nothing reserved, in Redis (the stored count, not only the
// logical view) and in the main DB; no cart or hold bucket is left.
template <typename Redis>
void expect_all_released(Redis& redis, const Cartd& c, std::chrono::milliseconds within) {
  bool done = eventually(
      [&] {
        for (auto& inv : kRows) {
          if (redis_reserved(redis, inv) != 0 || db_reserved(c, inv) != 0) return false;
        }
        return redis.command({"KEYS", "{c*}:*"}).elements.empty();
      },
      within, 50ms);
  EXPECT_TRUE(done);
  for (auto& inv : kRows) {
    EXPECT_EQ(redis_reserved(redis, inv), 0) << inv;
    EXPECT_EQ(db_reserved(c, inv), 0) << inv;
    for (auto& [field, value] : redis.stock_row(inv)) {
      EXPECT_FALSE(field.starts_with('t')) << inv << ": a hold bucket is left: " << field;
    }
    auto stock = http(c.port(), "GET", "/v1/stock/" + inv).json();
    EXPECT_EQ(stock.at("available"), stock.at("on_hand")) << inv;
  }
  EXPECT_TRUE(redis.command({"KEYS", "{c*}:*"}).elements.empty());
  auto check = c.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// The tests of Expiry run on a standalone Redis and on a Redis Cluster; those of
// StandaloneExpiry set up or restart the one redis-server.
class Expiry : public ::testing::TestWithParam<RedisKind> {};

TEST_P(Expiry, held_units_return_by_themselves_after_the_ttl) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "2"});
  std::string sid = add(cartd, "mug", "mug", 3);
  ASSERT_FALSE(sid.empty());
  auto deadline = redis.command({"PEXPIRETIME", keys::cart(sid)}).integer;
  EXPECT_TRUE(eventually([&] { return db_reserved(cartd, "mug") == 3; }, 2s));

  // No request touches cartd from here until the checks.
  bool gone = eventually([&] { return !cart_exists(redis, sid); }, 4500ms, 20ms);
  ASSERT_TRUE(gone);
  auto now_ms = std::stoll(redis.command({"TIME"}).elements[0].str) * 1000;
  EXPECT_LE(now_ms, deadline + 2000) << "deleted within 2 s of the deadline";
  EXPECT_TRUE(eventually([&] { return redis_reserved(redis, "mug") == 0; }, 1s))
      << "the sweeper drops the bucket";
  EXPECT_TRUE(eventually([&] { return db_reserved(cartd, "mug") == 0; }, 1s));

  auto stock = cartd.get("/v1/stock/mug").json();
  EXPECT_EQ(stock.at("available").as_int64(), 10);
  EXPECT_EQ(cartd.get("/get-cart", {{"cart-session-id", sid}}).status, 404u);
  // Redis deleted the cart with its lines: the event names the cart only.
  std::vector<redis::Reply> events;
  EXPECT_TRUE(eventually([&] { return !(events = redis.cart_events()).empty(); }, 1s));
  ASSERT_EQ(events.size(), 1u);
  auto& fields = events[0].elements[1];
  ASSERT_EQ(fields.elements.size(), 4u);
  EXPECT_EQ(fields.text_at(1), "expired");
  EXPECT_EQ(fields.text_at(3), sid);
  auto missing = cartd.get("/v1/carts/" + sid);
  EXPECT_EQ(missing.status, 404u);
  EXPECT_EQ(missing.json().at("error").at("code"), "cart_expired");
}

TEST_P(Expiry, an_expired_hold_frees_its_units_with_nothing_running) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog,
              {"--cart-ttl", "1", "--no-keyspace-events", "--sweep-interval-ms", "0"});
  std::string sid = add(cartd, "mug", "mug", 10);
  ASSERT_FALSE(sid.empty());
  EXPECT_EQ(add(cartd, "mug", "mug", 1), "") << "sold out while held";
  std::this_thread::sleep_for(1100ms);
  EXPECT_FALSE(add(cartd, "mug", "mug", 10).empty()) << "the units are free at the deadline";
  EXPECT_EQ(redis_reserved(redis, "mug"), 10) << "the units returned logically, at the deadline";
}

TEST_P(Expiry, keyspace_events_record_each_expired_cart) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "1", "--sweep-interval-ms", "0"});
  std::string sid = add(cartd, "mug", "mug", 2);
  EXPECT_TRUE(eventually([&] { return !cart_exists(redis, sid); }, 4s));
  EXPECT_TRUE(eventually([&] { return redis.cart_events().size() == 1; }, 1s));
  EXPECT_EQ(redis.command({"EXISTS", keys::gone(sid)}).integer, 1) << "its tombstone";
}

TEST_P(Expiry, the_sweeper_returns_expired_holds_on_rows_no_request_touches) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog,
              {"--cart-ttl", "1", "--no-keyspace-events", "--sweep-interval-ms", "100"});
  std::string sid = add(cartd, "mug", "mug", 2);
  EXPECT_TRUE(eventually([&] { return db_reserved(cartd, "mug") == 2; }, 2s));
  EXPECT_TRUE(eventually([&] { return redis_reserved(redis, "mug") == 0; }, 3s))
      << "the stored count, not only the logical view";
  EXPECT_TRUE(eventually([&] { return db_reserved(cartd, "mug") == 0; }, 1s));
  EXPECT_TRUE(redis.cart_events().empty()) << "no listener: nothing recorded the expiry";
}

TEST(StandaloneExpiry, keyspace_event_flags_set_by_others_are_kept) {
  RedisServer redis({"--notify-keyspace-events", "Kg"});
  Cartd cartd(redis.url(), kCatalog);
  // The expiry listener sets its flags when it connects, which may be after cartd is ready.
  std::string flags;
  EXPECT_TRUE(eventually(
      [&] {
        flags = redis.command({"CONFIG", "GET", "notify-keyspace-events"}).text_at(1).value_or("");
        return flags.find('x') != std::string::npos;
      },
      5s))
      << flags;
  for (char f : std::string("Kgx")) EXPECT_NE(flags.find(f), std::string::npos) << flags;
}

TEST(StandaloneExpiry, when_config_is_refused_the_sweeper_still_returns_holds) {
  RedisServer redis({"--rename-command", "CONFIG", ""});
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "1", "--sweep-interval-ms", "100"});
  std::string sid = add(cartd, "mug", "mug", 2);
  EXPECT_TRUE(eventually([&] { return !cart_exists(redis, sid); }, 3s));
  EXPECT_TRUE(eventually([&] { return redis_reserved(redis, "mug") == 0; }, 1s));
  EXPECT_NE(cartd.log().find("relying on the sweeper"), std::string::npos) << cartd.log();
}

TEST(StandaloneExpiry, the_listener_subscribes_again_after_redis_restarts) {
  RedisServer redis({"--appendonly", "yes"});
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "1", "--sweep-interval-ms", "0"});
  redis.stop();
  redis.start();
  ASSERT_TRUE(cartd.wait_healthy(10s));
  std::this_thread::sleep_for(300ms);  // the subscriber reconnects on its own schedule
  std::string sid = add(cartd, "mug", "mug", 2);
  ASSERT_FALSE(sid.empty());
  EXPECT_TRUE(eventually([&] { return redis.cart_events().size() == 1; }, 5s))
      << "recorded by the keyspace event, with no sweeper";
  EXPECT_EQ(redis.cart_events()[0].elements[1].text_at(3), sid);
}

TEST_P(Expiry, carts_that_expire_while_cartd_is_down_are_settled_after_restart) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "1"});
  std::vector<std::string> carts;
  for (int i = 0; i < 5; ++i) carts.push_back(add(cartd, "cap", "cap", 1 + i));
  carts.push_back(add(cartd, "shoe", "shoe-eu", 2));
  cartd.stop(SIGKILL);
  std::this_thread::sleep_for(2s);  // every cart expires; no listener hears it
  auto start = std::chrono::steady_clock::now();
  cartd.start();
  expect_all_released(redis, cartd, 3s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  // Nobody listened when Redis deleted them: they are gone without an event.
  EXPECT_TRUE(redis.cart_events().empty());
}

TEST_P(Expiry, two_instances_record_each_expired_cart_exactly_once) {
  TestRedis redis(GetParam());
  Cartd a(redis.url(), kCatalog, {"--cart-ttl", "2", "--sweep-interval-ms", "50"});
  Cartd b(redis.url(), kCatalog, {"--cart-ttl", "2", "--sweep-interval-ms", "50"}, a.db_path());
  std::mt19937 rng(42);
  std::map<std::string, std::int64_t> held;
  for (int i = 0; i < 100; ++i) {
    Cartd& via = i % 2 ? a : b;
    const std::string& inv = kRows[1 + rng() % 3];
    int qty = 1 + static_cast<int>(rng() % 3);
    ASSERT_FALSE(add(via, inv == "cap" ? "cap" : "shoe", inv, qty).empty());
    held[inv] += qty;
  }
  for (auto& [inv, qty] : held) EXPECT_EQ(redis_reserved(redis, inv), qty);
  std::this_thread::sleep_for(2s);
  expect_all_released(redis, a, 4s);
  EXPECT_TRUE(eventually([&] { return redis.cart_events().size() == 100; }, 2s));
  EXPECT_EQ(redis.cart_events().size(), 100u) << "one event per cart";
}

TEST_P(Expiry, a_change_slides_the_ttl_and_the_lifetime_caps_it) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "2", "--cart-max-lifetime", "3"});
  std::string sid = add(cartd, "mug", "mug", 1);
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_until(t0 + 1500ms);
  ASSERT_EQ(add(cartd, "mug", "mug", 2, sid), sid);
  std::this_thread::sleep_until(t0 + 2300ms);
  EXPECT_EQ(cartd.get("/get-cart", {{"cart-session-id", sid}}).status, 200u)
      << "alive past the first 2 s";
  ASSERT_EQ(add(cartd, "mug", "mug", 3, sid), sid);  // would slide to t0 + 4.3 s
  std::this_thread::sleep_until(t0 + 3300ms);
  EXPECT_EQ(cartd.get("/get-cart", {{"cart-session-id", sid}}).status, 404u)
      << "the 3 s lifetime ends it";
  EXPECT_EQ(cartd.get("/v1/stock/mug").json().at("available").as_int64(), 10);
}

TEST_P(Expiry, any_interleaving_of_changes_expiries_and_restarts_leaks_nothing) {
  TestRedis redis(GetParam());
  Cartd cartd(redis.url(), kCatalog, {"--cart-ttl", "1", "--sweep-interval-ms", "100"});
  std::mt19937 rng(2026);
  std::vector<std::string> carts;
  auto deadline = std::chrono::steady_clock::now() + 12s;
  for (int step = 0; step < 120 && std::chrono::steady_clock::now() < deadline; ++step) {
    int op = static_cast<int>(rng() % 10);
    std::string product = rng() % 2 ? "shoe" : "mug";
    std::string inv = product == "mug" ? "mug" : (rng() % 2 ? "shoe-eu" : "shoe-us");
    int qty = 1 + static_cast<int>(rng() % 4);
    if (op < 4 || carts.empty()) {
      std::string sid = add(cartd, product, inv, qty);
      if (!sid.empty()) carts.push_back(sid);
    } else if (op < 7) {
      add(cartd, product, inv, qty, carts[rng() % carts.size()]);  // may find it expired
    } else if (op < 9) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 400));
    } else {
      cartd.stop(rng() % 2 ? SIGKILL : SIGTERM);
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 1200));
      cartd.start();
    }
    for (auto& i : kRows) {
      auto s = http(cartd.port(), "GET", "/v1/stock/" + i).json();
      ASSERT_GE(s.at("available").as_int64(), 0) << "no oversell, step " << step;
    }
  }
  std::this_thread::sleep_for(1100ms);
  expect_all_released(redis, cartd, 4s);
}

INSTANTIATE_TEST_SUITE_P(Redis, Expiry, ::testing::ValuesIn(kRedisKinds), redis_kind_name);

}  // namespace expiry_test
}  // namespace cartd::test
