// Stock counts that never drift: the defects an adversarial review found, each proved
// fixed against real processes (redis-server, cartd, SQLite or PostgreSQL). Every test
// ends with exact accounting in the main DB and `cartd check` (which audits the ledger).
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include <atomic>
#include <boost/json.hpp>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "functions/keys.hpp"
#include "harness.hpp"

namespace cartd::test {
namespace hardening_test {

namespace json = boost::json;
using namespace std::chrono_literals;
using Headers = std::map<std::string, std::string>;

constexpr const char* kToken = "t0ken";
const Headers kAdmin{{"Authorization", std::string("Bearer ") + kToken}};

std::string catalog(const std::string& inv, int on_hand) {
  return R"([{"inventory_id": ")" + inv + R"(", "product_id": ")" + inv +
         R"(", "name": "Item", "price_cents": 100, "on_hand": )" + std::to_string(on_hand) + "}]";
}

std::string line(const std::string& inv, int qty) {
  return R"({"product_id":")" + inv + R"(","inventory_id":")" + inv + R"(","quantity":)" +
         std::to_string(qty) + "}";
}

std::string code_of(const HttpResponse& r) {
  try {
    return std::string(r.json().at("error").at("code").as_string());
  } catch (const std::exception&) {
    return "";
  }
}

// The main DB either engine: a query that answers one integer.
using Sql = std::function<std::int64_t(const std::string&)>;

// Exact accounting of one row: every unit the row started with is on hand or in an
// order, after the admin changes the test saw accepted; and cartd check is green.
void expect_exact_accounting(const Sql& sql, const std::string& inv, std::int64_t initial,
                             std::int64_t accepted_admin, Cartd& cartd) {
  std::int64_t on_hand = sql("SELECT on_hand FROM inventory WHERE inventory_id = '" + inv + "'");
  std::int64_t sold =
      sql("SELECT COALESCE(SUM(quantity), 0) FROM order_lines WHERE inventory_id = '" + inv + "'");
  EXPECT_EQ(initial + accepted_admin, on_hand + sold)
      << "on_hand " << on_hand << ", sold " << sold << ", admin " << accepted_admin;
  EXPECT_EQ(sql("SELECT COUNT(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_lines l "
                "WHERE l.order_id = o.order_id)"),
            0)
      << "an order without lines";
  bool green = eventually([&] { return cartd.check().exit_code == 0; }, 5s, 200ms);
  EXPECT_TRUE(green) << cartd.check().output;
}

// Holds SQLite's write lock (BEGIN EXCLUSIVE) from construction for `hold`.
class SqliteLock {
 public:
  SqliteLock(const std::filesystem::path& db, std::chrono::milliseconds hold) {
    std::promise<void> locked;
    auto ready = locked.get_future();
    thread_ = std::thread([db, hold, locked = std::move(locked)]() mutable {
      sqlite3* c = nullptr;
      sqlite3_open(db.c_str(), &c);
      sqlite3_busy_timeout(c, 5000);
      sqlite3_exec(c, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr);
      locked.set_value();
      std::this_thread::sleep_for(hold);
      sqlite3_exec(c, "COMMIT", nullptr, nullptr, nullptr);
      sqlite3_close(c);
    });
    ready.wait();
  }
  ~SqliteLock() { thread_.join(); }

 private:
  std::thread thread_;
};

// Holds a PostgreSQL row lock (SELECT ... FOR UPDATE) on one inventory row for `hold`.
class PgRowLock {
 public:
  PgRowLock(const std::string& url, const std::string& inv, std::chrono::milliseconds hold) {
    std::promise<void> locked;
    auto ready = locked.get_future();
    thread_ = std::thread([url, inv, hold, locked = std::move(locked)]() mutable {
      PGconn* c = PQconnectdb(url.c_str());
      PQclear(PQexec(c, "BEGIN"));
      PQclear(PQexec(
          c,
          ("SELECT on_hand FROM inventory WHERE inventory_id = '" + inv + "' FOR UPDATE").c_str()));
      locked.set_value();
      std::this_thread::sleep_for(hold);
      PQclear(PQexec(c, "COMMIT"));
      PQfinish(c);
    });
    ready.wait();
  }
  ~PgRowLock() { thread_.join(); }

 private:
  std::thread thread_;
};

// Defect 1: cart A holds the last 3 units; its checkout's transaction waits for a lock
// longer than the recovery age. Recovery must not give the checkout up while the order
// can still commit: either A's order stands (and nobody else got the units) or A's
// checkout was fenced off (409) and its cart lives on. Never both.
void a_stuck_checkout_is_never_both_aborted_and_ordered(
    Cartd& cartd, const Sql& sql,
    const std::function<std::unique_ptr<void, void (*)(void*)>()>& lock_the_db) {
  auto a = cartd.post("/add-to-cart", line("last", 3));
  ASSERT_EQ(a.status, 200u) << a.body;
  std::string cart_a(a.json().at("cartSessionId").as_string());
  // The DB writer has stored the hold, so only the checkout and recovery need the lock.
  ASSERT_TRUE(eventually(
      [&] { return sql("SELECT reserved FROM inventory WHERE inventory_id = 'last'") == 3; }, 3s));

  HttpResponse order_a, abandon_a, add_b, change_a;
  {
    auto lock = lock_the_db();
    auto checkout = std::async(std::launch::async, [&] {
      return http(cartd.port(), "POST", "/v1/carts/" + cart_a + "/checkout", "",
                  {{"Idempotency-Key", "k-a"}});
    });
    std::this_thread::sleep_for(2500ms);  // past the recovery age (1 s) and its next round
    // The variant: the shopper changes the quantity; then gives the cart up.
    change_a = http(cartd.port(), "PUT", "/v1/carts/" + cart_a + "/items/last",
                    R"({"inventory_id":"last","quantity":2})");
    abandon_a = http(cartd.port(), "DELETE", "/v1/carts/" + cart_a);
    add_b = cartd.post("/add-to-cart", line("last", 3));
    order_a = checkout.get();
  }
  bool ordered = order_a.status == 201u;
  if (ordered) {
    EXPECT_NE(change_a.status, 200u) << "a cart being checked out cannot change";
    EXPECT_NE(abandon_a.status, 200u) << "a cart being checked out cannot be abandoned";
    EXPECT_EQ(add_b.status, 409u) << "the units were sold to A";
  } else {
    EXPECT_EQ(order_a.status, 409u) << order_a.body;
    EXPECT_EQ(code_of(order_a), "checkout_aborted") << order_a.body;
    EXPECT_EQ(sql("SELECT COUNT(*) FROM orders"), 0);
  }
  EXPECT_TRUE(eventually([&] { return sql("SELECT COUNT(*) FROM checkout_attempts") >= 1; }, 3s));
  std::int64_t in_orders = sql("SELECT COALESCE(SUM(quantity), 0) FROM order_lines");
  EXPECT_EQ(in_orders, ordered ? 3 : 0);
  // Redis never promises more than the DB has.
  auto stock = cartd.get("/v1/stock/last").json();
  EXPECT_GE(stock.at("available").as_int64(), 0) << stock;
  expect_exact_accounting(sql, "last", 3, 0, cartd);
}

std::unique_ptr<void, void (*)(void*)> owned(SqliteLock* l) {
  return {l, [](void* p) { delete static_cast<SqliteLock*>(p); }};
}
std::unique_ptr<void, void (*)(void*)> owned(PgRowLock* l) {
  return {l, [](void* p) { delete static_cast<PgRowLock*>(p); }};
}

const std::vector<std::string> kFastRecovery{
    "--checkout-recovery-ms", "1000", "--checkout-grace", "30",
    "--db-timeout-ms",        "6000", "--admin-hold-ms",  "10000"};

TEST(Fence, sqlite_a_checkout_given_up_by_recovery_never_commits_afterwards) {
  RedisServer redis;
  Cartd cartd(redis, catalog("last", 3), kFastRecovery);
  Sql sql = [&](const std::string& q) { return sqlite_int(cartd.db_path(), q); };
  a_stuck_checkout_is_never_both_aborted_and_ordered(
      cartd, sql, [&] { return owned(new SqliteLock(cartd.db_path(), 4000ms)); });
}

TEST(Fence, postgres_a_checkout_given_up_by_recovery_never_commits_afterwards) {
  PgServer pg;
  std::string url = pg.new_database("shop");
  RedisServer redis;
  auto flags = kFastRecovery;
  flags.insert(flags.end(), {"--db", url});
  Cartd cartd(redis, catalog("last", 3), flags);
  Sql sql = [&](const std::string& q) { return pg.query_int("shop", q); };
  a_stuck_checkout_is_never_both_aborted_and_ordered(
      cartd, sql, [&] { return owned(new PgRowLock(url, "last", 4000ms)); });
}

// Defect 9: the main DB has fewer units than the cart held (changed behind cartd's
// back). Checkout answers 409 stock_unavailable, not 503 forever; the cart stays usable
// and the mirror learns the DB's count.
TEST(Checkout, a_row_short_in_the_db_answers_409_and_the_cart_stays_usable) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 5), {"--admin-token", kToken});
  auto a = cartd.post("/add-to-cart", line("mug", 4));
  std::string cart(a.json().at("cartSessionId").as_string());
  sqlite_exec(cartd.db_path(), "UPDATE inventory SET on_hand = 2 WHERE inventory_id = 'mug'");
  auto r = http(cartd.port(), "POST", "/v1/carts/" + cart + "/checkout", "",
                {{"Idempotency-Key", "k1"}});
  EXPECT_EQ(r.status, 409u) << r.body;
  EXPECT_EQ(code_of(r), "stock_unavailable") << r.body;
  EXPECT_EQ(r.headers.count("retry-after"), 0u);
  EXPECT_EQ(cartd.get("/v1/stock/mug").json().at("on_hand").as_int64(), 2)
      << "the mirror took the DB's count";
  auto change = http(cartd.port(), "PUT", "/v1/carts/" + cart + "/items/mug",
                     R"({"inventory_id":"mug","quantity":2})");
  EXPECT_EQ(change.status, 200u) << "the cart is usable again: " << change.body;
  r = http(cartd.port(), "POST", "/v1/carts/" + cart + "/checkout", "",
           {{"Idempotency-Key", "k2"}});
  EXPECT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT on_hand FROM inventory"), 0);
  // The change behind cartd's back is not in the ledger: check reports it.
  auto check = cartd.check();
  EXPECT_NE(check.exit_code, 0);
  EXPECT_NE(check.output.find("ledger"), std::string::npos) << check.output;
}

// Defects 2 and 4: shoppers and two admins racing (each admin takes all available units
// away, then gives them back). A refused change must leave nothing behind, and no
// accepted change may be lost or counted twice: exact accounting after it all.
TEST(AdminChanges, racing_shoppers_and_admins_create_no_units) {
  RedisServer redis;
  constexpr int kInitial = 200;
  Cartd cartd(redis, catalog("hot", kInitial), {"--admin-token", kToken});
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> admin_total{0};
  std::atomic<int> refused{0}, accepted{0}, broken_promises{0};
  std::vector<std::thread> threads;
  for (int s = 0; s < 6; ++s) {
    threads.emplace_back([&, s] {
      std::mt19937 rng(s);
      while (!stop) {
        auto r = cartd.post("/add-to-cart", line("hot", 1 + static_cast<int>(rng() % 3)));
        if (r.status != 200u) continue;
        std::string cart(r.json().at("cartSessionId").as_string());
        if (rng() % 2) {
          auto o = http(cartd.port(), "POST", "/v1/carts/" + cart + "/checkout", "",
                        {{"Idempotency-Key", cart}});
          if (code_of(o) == "stock_unavailable") ++broken_promises;
        } else {
          http(cartd.port(), "DELETE", "/v1/carts/" + cart);
        }
      }
    });
  }
  for (int a = 0; a < 2; ++a) {
    threads.emplace_back([&] {
      while (!stop) {
        auto s = cartd.get("/v1/stock/hot");
        if (s.status != 200u) continue;
        std::int64_t available = s.json().at("available").as_int64();
        // Take every available unit away, then give them back if that was accepted.
        for (std::int64_t delta : {-available, available}) {
          auto r = http(cartd.port(), "POST", "/v1/stock/hot/adjust",
                        R"({"delta":)" + std::to_string(delta) + "}", kAdmin);
          if (r.status != 200u) {
            EXPECT_EQ(r.status, 409u) << delta << " " << r.body;
            ++refused;
            break;
          }
          admin_total += delta;
          ++accepted;
        }
      }
    });
  }
  std::this_thread::sleep_for(6s);
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_GT(accepted.load(), 0);
  EXPECT_EQ(broken_promises.load(), 0) << "an admin change took units a cart held";
  Sql sql = [&](const std::string& q) { return sqlite_int(cartd.db_path(), q); };
  expect_exact_accounting(sql, "hot", kInitial, admin_total, cartd);
  EXPECT_EQ(sql("SELECT COUNT(*) FROM inventory_movements WHERE reason = 'admin_adjust'"),
            accepted.load())
      << "one ledger row per accepted change, none for a refused one (" << refused << ")";
}

// Defect 3: an admin change is applied once per Idempotency-Key, and a change that
// cannot reach Redis changes nothing.
TEST(AdminChanges, a_retry_with_the_same_key_is_applied_once) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 100), {"--admin-token", kToken});
  Headers h = kAdmin;
  h["Idempotency-Key"] = "restock-42";
  for (int i = 0; i < 3; ++i) {
    auto r = http(cartd.port(), "POST", "/v1/stock/mug/adjust", R"({"delta":-10})", h);
    EXPECT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.json().at("on_hand").as_int64(), 90) << r.body;
  }
  auto below_zero = http(cartd.port(), "POST", "/v1/stock/mug/adjust", R"({"delta":-91})", kAdmin);
  EXPECT_EQ(below_zero.status, 409u);
  EXPECT_EQ(code_of(below_zero), "negative_on_hand") << below_zero.body;
  auto put = http(cartd.port(), "PUT", "/v1/stock/mug", R"({"on_hand":50})", h);
  EXPECT_EQ(put.status, 422u) << "the key was used for another request: " << put.body;
  h["Idempotency-Key"] = "set-1";
  for (int i = 0; i < 2; ++i) {
    auto r = http(cartd.port(), "PUT", "/v1/stock/mug", R"({"on_hand":70})", h);
    EXPECT_EQ(r.status, 200u) << r.body;
  }
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT on_hand FROM inventory"), 70);
  EXPECT_EQ(sqlite_int(cartd.db_path(),
                       "SELECT COUNT(*) FROM inventory_movements WHERE reason "
                       "LIKE 'admin%'"),
            2);
  Sql sql = [&](const std::string& q) { return sqlite_int(cartd.db_path(), q); };
  expect_exact_accounting(sql, "mug", 100, -30, cartd);
}

// Two requests with one Idempotency-Key (a client's retry while the first still runs)
// both read "not applied" and both hold the units; the DB applies the change once and
// answers the second "replayed". While another change is under way on the row (here an
// admin hold made by hand), each request's last step applies its own change to Redis'
// on_hand as a delta: the replayed one, which changed nothing, must not subtract again.
TEST(AdminChanges, two_requests_with_one_key_racing_subtract_once) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 100),
              {"--admin-token", kToken, "--db-timeout-ms", "6000", "--admin-hold-ms", "20000"});
  auto other = redis.command(
      {"FCALL", "cartd_admin_hold", "1", keys::stock("mug"), "mug", "admin-other:1", "1", "60000"});
  ASSERT_EQ(other.text_at(0).value_or(""), "ok");
  Headers h = kAdmin;
  h["Idempotency-Key"] = "retried";
  std::vector<HttpResponse> answers(2);
  {
    SqliteLock lock(cartd.db_path(), 1500ms);  // both wait for it, after their holds
    std::vector<std::thread> requests;
    for (auto& answer : answers) {
      requests.emplace_back([&] {
        answer = http(cartd.port(), "POST", "/v1/stock/mug/adjust", R"({"delta":-10})", h);
      });
    }
    for (auto& t : requests) t.join();
  }
  for (auto& a : answers) {
    EXPECT_EQ(a.status, 200u) << a.body;
    EXPECT_EQ(a.json().at("on_hand").as_int64(), 90) << a.body;
  }
  redis.command({"FCALL", "cartd_apply_on_hand", "1", keys::stock("mug"), "mug", "admin-other:1"});
  auto stock = cartd.get("/v1/stock/mug").json();
  EXPECT_EQ(stock.at("on_hand").as_int64(), 90) << "Redis subtracted the change once";
  EXPECT_EQ(stock.at("reserved").as_int64(), 0) << "no hold left behind";
  Sql sql = [&](const std::string& q) { return sqlite_int(cartd.db_path(), q); };
  expect_exact_accounting(sql, "mug", 100, -10, cartd);
}

TEST(AdminChanges, without_redis_an_admin_change_changes_nothing) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 100), {"--admin-token", kToken});
  redis.stop();
  for (const char* delta : {"-10", "10"}) {
    auto r = http(cartd.port(), "POST", "/v1/stock/mug/adjust",
                  std::string(R"({"delta":)") + delta + "}", kAdmin);
    EXPECT_EQ(r.status, 503u) << r.body;
  }
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT on_hand FROM inventory"), 100);
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT COUNT(*) FROM inventory_movements"), 1);
}

// A reserved count the DB writer took from Redis but never wrote (its reply lost, or the
// write), here undone behind cartd's back: the mirror sync finds the row's live count
// differs from the DB's and has the writer write it again.
TEST(Mirror, a_reserved_count_the_db_lost_is_written_again) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 10), {"--mirror-sync-ms", "300"});
  ASSERT_EQ(cartd.post("/add-to-cart", line("mug", 3)).status, 200u);
  auto reserved = [&] {
    return sqlite_int(cartd.db_path(), "SELECT reserved FROM inventory WHERE inventory_id = 'mug'");
  };
  ASSERT_TRUE(eventually([&] { return reserved() == 3; }, 5s));
  sqlite_exec(cartd.db_path(), "UPDATE inventory SET reserved = 0");
  EXPECT_TRUE(eventually([&] { return reserved() == 3; }, 5s)) << reserved();
  EXPECT_EQ(cartd.check().exit_code, 0) << cartd.check().output;
}

// Defect 4, at the function: a late write of an older version never undoes a newer one.
TEST(Mirror, a_late_on_hand_write_never_undoes_a_newer_one) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 10));
  auto apply = [&](const char* on_hand, const char* version) {
    return redis.command({"FCALL", "cartd_apply_on_hand", "0", "", "", "mug", on_hand, version});
  };
  EXPECT_EQ(apply("7", "5").int_at(0), 7);
  EXPECT_EQ(apply("9", "4").int_at(0), 7) << "version 4 is older than 5";
  EXPECT_EQ(apply("7", "5").int_at(0), 7) << "the same version again changes nothing";
  EXPECT_EQ(apply("6", "6").int_at(0), 6);
  auto sync = [&](const char* on_hand, const char* version) {
    return redis.command({"FCALL", "cartd_sync_on_hand", "0", "mug", on_hand, version}).integer;
  };
  EXPECT_EQ(sync("6", "6"), 0) << "the same count at the same version is nothing new";
  EXPECT_EQ(sync("5", "7"), 1);
  EXPECT_EQ(sync("9", "6"), 0) << "older";
}

// Defect 5: DB work still running when the shutdown grace ends must not touch the
// loops after they are gone (ASan saw a heap-use-after-free); cartd exits cleanly.
TEST(Shutdown, db_work_outliving_the_grace_period_ends_cleanly) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 10), {"--shutdown-grace-ms", "200"});
  auto a = cartd.post("/add-to-cart", line("mug", 1));
  std::string cart(a.json().at("cartSessionId").as_string());
  SqliteLock lock(cartd.db_path(), 1500ms);
  auto checkout = std::async(std::launch::async, [&] {
    return http(cartd.port(), "POST", "/v1/carts/" + cart + "/checkout", "",
                {{"Idempotency-Key", "k"}});
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(cartd.stop(SIGTERM), 0) << cartd.log();
  checkout.wait();
}

// Defect 9, health: a main DB that can read but not write makes /healthz 503.
TEST(Health, a_main_db_that_cannot_write_is_unhealthy) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 10),
              {"--db-timeout-ms", "200", "--db-heartbeat-ms", "200", "--admin-hold-ms", "5000"});
  EXPECT_EQ(cartd.get("/healthz").status, 200u);
  {
    SqliteLock lock(cartd.db_path(), 3000ms);
    EXPECT_TRUE(eventually([&] { return cartd.get("/healthz").status == 503u; }, 2500ms));
  }
  EXPECT_TRUE(eventually([&] { return cartd.get("/healthz").status == 200u; }, 3s));
}

// The ledger: a change of on_hand behind cartd's back, mirrored so that Redis and the
// DB agree on the wrong number, is still found by cartd check.
TEST(Ledger, check_finds_drift_that_redis_and_the_db_agree_on) {
  RedisServer redis;
  Cartd cartd(redis, catalog("mug", 10), {"--admin-token", kToken, "--mirror-sync-ms", "100"});
  EXPECT_EQ(http(cartd.port(), "POST", "/v1/stock/mug/adjust", R"({"delta":5})", kAdmin).status,
            200u);
  auto a = cartd.post("/add-to-cart", line("mug", 2));
  std::string cart(a.json().at("cartSessionId").as_string());
  ASSERT_EQ(
      http(cartd.port(), "POST", "/v1/carts/" + cart + "/checkout", "", {{"Idempotency-Key", "k"}})
          .status,
      201u);
  EXPECT_TRUE(eventually([&] { return cartd.check().exit_code == 0; }, 3s)) << cartd.check().output;
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT SUM(delta) FROM inventory_movements"), 13);
  sqlite_exec(cartd.db_path(), "UPDATE inventory SET on_hand = 20, version = version + 1");
  // The mirror sync copies the DB's count: Redis and the DB agree on 20.
  EXPECT_TRUE(eventually(
      [&] { return cartd.get("/v1/stock/mug").json().at("on_hand").as_int64() == 20; }, 3s));
  auto check = cartd.check();
  EXPECT_NE(check.exit_code, 0);
  EXPECT_NE(check.output.find("mug: on_hand 20 but its ledger sums to 13"), std::string::npos)
      << check.output;
}

}  // namespace hardening_test
}  // namespace cartd::test
