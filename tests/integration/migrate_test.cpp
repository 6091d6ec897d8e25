// Upgrade without losing a cart: a Redis filled by the layout-1 functions of an older
// cartd (tests/data/layout1_library.lua, called directly) is migrated to layout 2 by the
// new cartd at start, or by `cartd migrate`, and every cart, hold and deadline is still
// there. Every unit of every row is accounted for.
#include <gtest/gtest.h>

#include <hiredis/hiredis.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "functions/keys.hpp"
#include "harness.hpp"
#include "http/reply.hpp"

namespace cartd::test {
namespace migrate_test {

using namespace std::chrono_literals;
namespace json = boost::json;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1500, "on_hand": 10},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 2500, "on_hand": 20},
  {"inventory_id": "tee", "product_id": "tee", "name": "Tee", "price_cents": 2000, "on_hand": 15},
  {"inventory_id": "pen", "product_id": "pen", "name": "Pen", "price_cents": 300, "on_hand": 30},
  {"inventory_id": "hat", "product_id": "hat", "name": "Hat", "price_cents": 1800, "on_hand": 5}
])json";

struct CatalogRow {
  const char* inv;
  const char* name;
  int price;
  std::int64_t on_hand;
};
constexpr CatalogRow kRows[] = {{"mug", "Mug", 1500, 10},
                                {"cap", "Cap", 2500, 20},
                                {"tee", "Tee", 2000, 15},
                                {"pen", "Pen", 300, 30},
                                {"hat", "Hat", 1800, 5}};

constexpr std::int64_t kLong = 600000;  // ms: a TTL no test outlives

std::string sid(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

std::int64_t server_ms(RedisServer& redis) {
  auto t = redis.command({"TIME"});
  return std::stoll(t.elements[0].str) * 1000 + std::stoll(t.elements[1].str) / 1000;
}

// A live cart as the old cartd left it: product -> quantity (product = inventory id here).
struct OldCart {
  std::map<std::string, std::int64_t> lines;
  std::int64_t deadline = 0;
};

// What the old cartd left in Redis, and what each unit is held by.
struct OldShop {
  std::map<std::string, OldCart> live;  // by session id (the cart in checkout among them)
  std::string checking_out, checkout_key = "key-E", checked_out, abandoned, expired;
  // Every live hold: row -> deadline -> units (live carts' lines and admin holds).
  std::map<std::string, std::map<std::int64_t, std::int64_t>> holds;
  std::vector<std::int64_t> short_deadlines;

  // What a row holds at server time `now` (a hold whose deadline is now still holds).
  std::int64_t reserved(const std::string& inv, std::int64_t now) const {
    std::int64_t sum = 0;
    auto it = holds.find(inv);
    if (it == holds.end()) return 0;
    for (auto& [deadline, units] : it->second) {
      if (deadline >= now) sum += units;
    }
    return sum;
  }
};

// Drives the layout-1 library (numkeys 0, keys computed from ids).
class OldCartd {
 public:
  explicit OldCartd(RedisServer& redis) : redis_(redis) {
    auto r = redis_.command(
        {"FUNCTION", "LOAD",
         read_file(std::string(CARTD_SOURCE_DIR) + "/tests/data/layout1_library.lua")});
    EXPECT_EQ(r.str, "cartd") << "the layout-1 library did not load";
  }
  redis::Reply call(const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> command{"FCALL", name, "0"};
    command.insert(command.end(), args.begin(), args.end());
    auto r = redis_.command(command);
    EXPECT_FALSE(r.is_error()) << name << ": " << r.str;
    return r;
  }
  void mirror() {
    std::vector<std::string> args;
    for (auto& row : kRows) {
      // on_hand and version as the new cartd's main DB has them (catalog rows: version 0).
      args.insert(args.end(), {row.inv, row.inv, std::to_string(row.on_hand), "0", row.name,
                               std::to_string(row.price)});
    }
    EXPECT_EQ(call("cartd_mirror", args).integer, 5);
  }
  // Sets a line (creating the cart) and returns the cart's deadline.
  std::int64_t set_line(const std::string& id, const std::string& inv, std::int64_t qty,
                        std::int64_t ttl_ms) {
    auto r = call("cartd_set_line", {id, id, inv, inv, std::to_string(qty), "set",
                                     std::to_string(ttl_ms), "7200000", "50", "100", ""});
    EXPECT_EQ(r.text_at(0), "ok") << r.text_at(0).value_or(r.str);
    return r.int_at(3).value_or(-1);
  }

 private:
  RedisServer& redis_;
};

// Fills `redis` as an older cartd would have left it. Carts with a TTL of `short_ms` end
// during the test; the others outlive it.
OldShop fill_old(RedisServer& redis, std::int64_t short_ms) {
  OldCartd old(redis);
  old.mirror();
  OldShop shop;
  auto live_cart = [&](int n, std::vector<std::pair<std::string, std::int64_t>> lines,
                       std::int64_t ttl) {
    std::string id = sid(n);
    std::int64_t deadline = 0;
    for (auto& [inv, qty] : lines) deadline = old.set_line(id, inv, qty, ttl);
    // The deadline the cart has (PEXPIRETIME of its session), which every line follows.
    EXPECT_EQ(redis.command({"PEXPIRETIME", "s:{" + id + "}"}).integer, deadline);
    OldCart& cart = shop.live[id];
    cart.deadline = deadline;
    for (auto& [inv, qty] : lines) {
      cart.lines[inv] = qty;
      shop.holds[inv][deadline] += qty;
    }
    return id;
  };

  // Expired, never released (no old cartd ran its sweeper): its session is gone, its cart
  // hash and its hold (in a row nothing touches again) are still there.
  shop.expired = sid(8);
  old.set_line(shop.expired, "hat", 2, 150);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(redis.command({"EXISTS", "c:{" + shop.expired + "}"}).integer, 1);
  EXPECT_EQ(redis.command({"EXISTS", "s:{" + shop.expired + "}"}).integer, 0);

  live_cart(3, {{"mug", 1}, {"cap", 4}, {"pen", 5}}, kLong);
  live_cart(4, {{"tee", 2}, {"pen", 1}}, kLong / 2);

  // In checkout: begun, its order not written yet.
  shop.checking_out = live_cart(5, {{"cap", 2}, {"mug", 1}}, kLong);
  auto begun = old.call("cartd_checkout_begin",
                        {shop.checking_out, shop.checkout_key, "60000", "attempt-E"});
  EXPECT_EQ(begun.text_at(0), "begun");

  // Checked out: its checkout finished (ck:{sid}); its unit left the row's holds.
  shop.checked_out = sid(6);
  old.set_line(shop.checked_out, "mug", 1, kLong);
  EXPECT_EQ(old.call("cartd_checkout_begin", {shop.checked_out, "key-F", "60000", "attempt-F"})
                .text_at(0),
            "begun");
  EXPECT_EQ(old.call("cartd_checkout_finish", {shop.checked_out, "key-F", "order-F",
                                               R"([{"inventory_id":"mug","quantity":1}])"})
                .text_at(0),
            "finished");

  // Abandoned: its units came back at once.
  shop.abandoned = sid(7);
  old.set_line(shop.abandoned, "pen", 2, kLong);
  EXPECT_EQ(old.call("cartd_abandon", {shop.abandoned}).text_at(0), "abandoned");

  // An admin change under way holds 4 tees.
  auto t0 = server_ms(redis);
  EXPECT_EQ(
      old.call("cartd_admin_hold", {"tee", "admin-req1:4", "4", std::to_string(kLong)}).text_at(0),
      "ok");
  auto admin_deadline = redis.command({"ZSCORE", "h:{tee}", "admin-req1:4"}).str;
  EXPECT_FALSE(admin_deadline.empty());
  std::int64_t admin = admin_deadline.empty() ? 0 : std::stoll(admin_deadline);
  EXPECT_GE(admin, t0 + kLong);
  shop.holds["tee"][admin] += 4;

  // The short ones last.
  auto t1 = server_ms(redis);
  EXPECT_EQ(old.call("cartd_admin_hold", {"pen", "admin-req2:3", "3", std::to_string(short_ms)})
                .text_at(0),
            "ok");
  std::int64_t admin_short =
      std::stoll("0" + redis.command({"ZSCORE", "h:{pen}", "admin-req2:3"}).str);
  EXPECT_GE(admin_short, t1 + short_ms);
  shop.holds["pen"][admin_short] += 3;
  shop.short_deadlines.push_back(admin_short);
  auto a = live_cart(1, {{"mug", 2}, {"cap", 1}}, short_ms);
  auto b = live_cart(2, {{"tee", 3}}, short_ms + 100);
  shop.short_deadlines.push_back(shop.live[a].deadline);
  shop.short_deadlines.push_back(shop.live[b].deadline);

  // The old functions agree with the accounting, unit by unit.
  auto now = server_ms(redis);
  for (auto& row : kRows) {
    auto st = old.call("cartd_stock", {row.inv});
    EXPECT_EQ(st.int_at(1), row.on_hand) << row.inv;
    EXPECT_EQ(st.int_at(2), shop.reserved(row.inv, now)) << row.inv;
  }
  return shop;
}

// Every key of layout 1 is gone, and Redis is marked layout 2.
void expect_layout2_only(RedisServer& redis) {
  for (const char* pattern :
       {"s:{*}", "c:{*}", "h:{*}", "st:{*}", "co:{*}", "ck:{*}", "g:{*}", "pd:{*}"}) {
    EXPECT_EQ(redis.command({"KEYS", pattern}).elements.size(), 0u) << pattern;
  }
  EXPECT_EQ(redis.command({"EXISTS", "dl", "dirty", "checkouts", "cartd:migrating"}).integer, 0);
  EXPECT_EQ(redis.command({"GET", "cartd:layout"}).str, "2");
  auto libs = redis.command({"FUNCTION", "LIST"});
  ASSERT_EQ(libs.elements.size(), 1u);
  EXPECT_EQ(libs.elements[0].elements[1].str, "cartd_v2");
}

std::int64_t count_keys(RedisServer& redis, const std::string& pattern) {
  return static_cast<std::int64_t>(redis.command({"KEYS", pattern}).elements.size());
}

// The live carts read through the new cartd exactly as they were.
void expect_carts(Cartd& cartd, const OldShop& shop) {
  for (auto& [id, cart] : shop.live) {
    auto r = cartd.get("/v1/carts/" + id);
    ASSERT_EQ(r.status, 200u) << id << " " << r.body;
    auto body = r.json().as_object();
    EXPECT_EQ(body.at("expires_at").as_string(), http::rfc3339(cart.deadline)) << id;
    std::map<std::string, std::int64_t> lines;
    for (auto& l : body.at("lines").as_array()) {
      EXPECT_EQ(l.at("product_id"), l.at("inventory_id"));
      lines[std::string(l.at("inventory_id").as_string())] = l.at("quantity").as_int64();
    }
    EXPECT_EQ(lines, cart.lines) << id;
  }
}

void expect_gone(Cartd& cartd, const OldShop& shop) {
  auto done = cartd.get("/v1/carts/" + shop.checked_out);
  EXPECT_EQ(done.status, 410u) << done.body;
  EXPECT_NE(done.body.find("cart_checked_out"), std::string::npos) << done.body;
  for (const std::string& id : {shop.abandoned, shop.expired}) {
    auto r = cartd.get("/v1/carts/" + id);
    EXPECT_EQ(r.status, 404u) << id << " " << r.body;
    EXPECT_NE(r.body.find("cart_expired"), std::string::npos) << id << " " << r.body;
  }
}

// The new carts (layout 2) and holds are exactly the old ones: one Redis cart per live
// cart, the row's buckets at the carts' deadlines.
void expect_migrated_data(RedisServer& redis, const OldShop& shop) {
  EXPECT_EQ(count_keys(redis, "{c*}:*"), static_cast<std::int64_t>(shop.live.size()));
  for (auto& [id, cart] : shop.live) {
    EXPECT_EQ(redis.command({"PEXPIRETIME", keys::cart(id)}).integer, cart.deadline) << id;
  }
  auto now = server_ms(redis);
  for (auto& row : kRows) {
    auto st = redis.stock_row(row.inv);
    std::int64_t buckets = 0;
    for (auto& [field, value] : st) {
      if (field.starts_with('t')) {
        std::int64_t deadline = std::stoll(field.substr(1));
        if (deadline < now) continue;  // ended by itself (logical expiry)
        std::int64_t held = 0;
        if (auto h = shop.holds.find(row.inv); h != shop.holds.end()) {
          if (auto it = h->second.find(deadline); it != h->second.end()) held = it->second;
        }
        EXPECT_EQ(std::stoll(value), held) << row.inv << ": the bucket at " << deadline;
        buckets += std::stoll(value);
      }
    }
    EXPECT_EQ(buckets, shop.reserved(row.inv, now)) << row.inv;
    EXPECT_EQ(st["oh"], std::to_string(row.on_hand)) << row.inv;
  }
}

TEST(Migrate, upgrade_without_losing_a_cart) {
  RedisServer redis;
  constexpr std::int64_t kShort = 2000;
  OldShop shop = fill_old(redis, kShort);
  ASSERT_FALSE(::testing::Test::HasFailure());

  // The new cartd, with the same catalog in its main DB, migrates at start.
  Cartd cartd(redis, kCatalog);
  auto now = server_ms(redis);
  for (auto d : shop.short_deadlines) {
    ASSERT_LT(now + 200, d) << "cartd took too long to start for the short carts to be live";
  }
  expect_carts(cartd, shop);
  expect_gone(cartd, shop);
  expect_migrated_data(redis, shop);
  EXPECT_NE(cartd.log().find("migrate: 8 carts and 5 stock rows in layout 1"), std::string::npos)
      << cartd.log();

  // Reserved per row, through the API, at any moment: exactly the holds whose deadline has
  // not passed. Each short hold's units come back at its deadline, not before, not later.
  std::int64_t last = *std::max_element(shop.short_deadlines.begin(), shop.short_deadlines.end());
  int before = 0, after = 0;
  while (true) {
    auto t0 = server_ms(redis);
    std::map<std::string, std::int64_t> reserved, available;
    for (auto& row : kRows) {
      auto s = cartd.get(std::string("/v1/stock/") + row.inv).json().as_object();
      reserved[row.inv] = s.at("reserved").as_int64();
      available[row.inv] = s.at("available").as_int64();
      EXPECT_EQ(s.at("on_hand").as_int64(), row.on_hand) << row.inv;
    }
    auto t1 = server_ms(redis);
    for (auto& row : kRows) {
      auto at0 = shop.reserved(row.inv, t0), at1 = shop.reserved(row.inv, t1);
      if (at0 == at1) {
        EXPECT_EQ(reserved[row.inv], at0) << row.inv << " between " << t0 << " and " << t1;
        EXPECT_EQ(available[row.inv], row.on_hand - at0) << row.inv;
      } else {
        EXPECT_TRUE(reserved[row.inv] == at0 || reserved[row.inv] == at1) << row.inv;
      }
    }
    if (t1 < shop.short_deadlines.front()) ++before;
    if (t0 > last) ++after;
    if (t0 > last + 300 || ::testing::Test::HasFailure()) break;
    std::this_thread::sleep_for(15ms);
  }
  EXPECT_GT(before, 0);
  EXPECT_GT(after, 0);
  // The long ones still hold: mug 1+1, cap 4+2, tee 2+4, pen 5+1, hat nothing.
  std::map<std::string, std::int64_t> still{
      {"mug", 2}, {"cap", 6}, {"tee", 6}, {"pen", 6}, {"hat", 0}};
  for (auto& [inv, units] : still) {
    EXPECT_EQ(cartd.get("/v1/stock/" + inv).json().at("reserved").as_int64(), units) << inv;
  }
  // The short carts expired: they answer so.
  std::size_t live = 0;
  for (auto& [id, cart] : shop.live) {
    auto r = cartd.get("/v1/carts/" + id);
    if (cart.deadline < last + 300) {
      EXPECT_EQ(r.status, 404u) << id;
    } else {
      EXPECT_EQ(r.status, 200u) << id;
      ++live;
    }
  }
  EXPECT_EQ(live, 3u);

  expect_layout2_only(redis);

  // The cart in checkout: a retry with its key resumes the same checkout and makes the
  // order; its units are sold (on_hand falls, reserved with it).
  auto co = cartd.post("/v1/carts/" + shop.checking_out + "/checkout", "",
                       {{"Idempotency-Key", shop.checkout_key}});
  ASSERT_EQ(co.status, 201u) << co.body;
  EXPECT_EQ(co.json().at("total_cents").as_int64(), 2 * 2500 + 1500);
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT COUNT(*) FROM orders"), 1);
  EXPECT_EQ(sqlite_int(cartd.db_path(),
                       "SELECT COUNT(*) FROM checkout_attempts WHERE attempt_id = 'attempt-E'"),
            1);
  auto mug = cartd.get("/v1/stock/mug").json();
  EXPECT_EQ(mug.at("on_hand").as_int64(), 9);
  EXPECT_EQ(mug.at("reserved").as_int64(), 1);
  auto cap = cartd.get("/v1/stock/cap").json();
  EXPECT_EQ(cap.at("on_hand").as_int64(), 18);
  EXPECT_EQ(cap.at("reserved").as_int64(), 4);
  EXPECT_EQ(cartd.get("/v1/carts/" + shop.checking_out).status, 410u);
  EXPECT_EQ(redis.checkouts_in_progress(), 0);

  // The migrated carts change like any other: their holds move from the old deadline.
  std::string d = sid(4);
  auto put = cartd.post("/v1/carts/" + d + "/items",
                        R"({"product_id":"tee","inventory_id":"tee","quantity":1})");
  ASSERT_EQ(put.status, 200u) << put.body;
  EXPECT_EQ(cartd.get("/v1/stock/tee").json().at("reserved").as_int64(), 7);
  EXPECT_EQ(cartd.get("/v1/stock/pen").json().at("reserved").as_int64(), 6);

  ASSERT_TRUE(eventually(
      [&] {
        return sqlite_int(cartd.db_path(), "SELECT SUM(reserved) FROM inventory") == 1 + 4 + 7 + 6;
      },
      5s));
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("ok: 5 stock rows, 2 carts, 0 violations"), std::string::npos)
      << check.output;
}

int run_migrate(RedisServer& redis, std::string& output) {
  TempDir dir;
  auto log = dir.path() / "migrate.log";
  Process p({CARTD_BINARY, "migrate", "--redis", redis.url()}, log);
  int code = p.wait();
  output = read_file(log.string());
  return code;
}

TEST(Migrate, the_subcommand_migrates_once_then_has_nothing_to_do) {
  RedisServer redis;
  OldShop shop = fill_old(redis, kLong);
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::string out;
  ASSERT_EQ(run_migrate(redis, out), 0) << out;
  EXPECT_NE(out.find("migrate: 8 carts and 5 stock rows in layout 1"), std::string::npos) << out;
  EXPECT_NE(out.find("migrate: done"), std::string::npos) << out;
  expect_layout2_only(redis);
  expect_migrated_data(redis, shop);
  auto after = redis.snapshot();

  ASSERT_EQ(run_migrate(redis, out), 0) << out;
  EXPECT_NE(out.find("migrate: nothing to do"), std::string::npos) << out;
  EXPECT_EQ(out.find("in layout 1"), std::string::npos) << out;
  EXPECT_EQ(redis.snapshot(), after);

  Cartd cartd(redis, kCatalog);
  expect_carts(cartd, shop);
  expect_gone(cartd, shop);
  EXPECT_EQ(cartd.log().find("in layout 1"), std::string::npos);
  auto now = server_ms(redis);
  for (auto& row : kRows) {
    EXPECT_EQ(cartd.get(std::string("/v1/stock/") + row.inv).json().at("reserved").as_int64(),
              shop.reserved(row.inv, now))
        << row.inv;
  }
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(Migrate, two_instances_started_together_migrate_once) {
  RedisServer redis;
  OldShop shop = fill_old(redis, kLong);
  ASSERT_FALSE(::testing::Test::HasFailure());
  TempDir dir;
  auto db = dir.path() / "shared.db";
  std::ofstream(dir.path() / "catalog.json") << kCatalog;
  // The second instance starts (fork, exec) just before the first, which then waits until
  // it is healthy; the second is waited for below.
  int port = free_port();
  Process second({CARTD_BINARY, "--listen", "127.0.0.1:" + std::to_string(port), "--redis",
                  redis.url(), "--db", "sqlite:" + db.string(), "--catalog",
                  (dir.path() / "catalog.json").string(), "--threads", "2"},
                 dir.path() / "second.log");
  Cartd first(redis, kCatalog, {}, db);
  ASSERT_TRUE(eventually(
      [&] {
        try {
          return second.running() && http(port, "GET", "/healthz").status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      15s, 50ms))
      << read_file((dir.path() / "second.log").string());
  std::string logs[] = {first.log(), read_file((dir.path() / "second.log").string())};
  int migrated = 0;
  for (auto& log : logs) {
    if (log.find("migrate: 8 carts and 5 stock rows in layout 1") != std::string::npos) ++migrated;
  }
  EXPECT_EQ(migrated, 1) << logs[0] << "\n----\n" << logs[1];
  expect_layout2_only(redis);
  expect_migrated_data(redis, shop);
  expect_carts(first, shop);
  expect_gone(first, shop);
  auto now = server_ms(redis);
  for (int p : {first.port(), port}) {
    for (auto& row : kRows) {
      EXPECT_EQ(
          http(p, "GET", std::string("/v1/stock/") + row.inv).json().at("reserved").as_int64(),
          shop.reserved(row.inv, now))
          << row.inv;
    }
    for (auto& [id, cart] : shop.live) {
      EXPECT_EQ(http(p, "GET", "/v1/carts/" + id).status, 200u) << id;
    }
  }
  auto check = first.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(), 0);
}

TEST(Migrate, refuses_while_an_older_cartd_is_connected) {
  RedisServer redis;
  fill_old(redis, kLong);
  ASSERT_FALSE(::testing::Test::HasFailure());
  redisContext* old = redisConnect("127.0.0.1", redis.port());
  ASSERT_TRUE(old && !old->err);
  auto* r = static_cast<redisReply*>(redisCommand(old, "CLIENT SETNAME cartd-loop-0"));
  ASSERT_TRUE(r && r->type == REDIS_REPLY_STATUS);
  freeReplyObject(r);

  auto before = redis.snapshot();
  auto dirty = redis.command({"SMEMBERS", "dirty"}).elements.size();
  std::string out;
  EXPECT_EQ(run_migrate(redis, out), 1) << out;
  EXPECT_NE(out.find("an older cartd is connected"), std::string::npos) << out;
  EXPECT_EQ(redis.snapshot(), before);
  EXPECT_EQ(redis.command({"SMEMBERS", "dirty"}).elements.size(), dirty);
  auto libs = redis.command({"FUNCTION", "LIST"});
  ASSERT_EQ(libs.elements.size(), 1u);
  EXPECT_EQ(libs.elements[0].elements[1].str, "cartd");
  EXPECT_EQ(redis.command({"EXISTS", "cartd:layout", "cartd:migrating"}).integer, 0);

  // Once the older cartd is gone, it migrates.
  redisFree(old);
  ASSERT_EQ(run_migrate(redis, out), 0) << out;
  expect_layout2_only(redis);
}

// An older cartd wrote a checkout's order to the main DB and died before settling Redis;
// the cart's deadline passed meanwhile. Its checkout marker must survive the migration,
// so that recovery finishes it as the older cartd's recovery would have: the cart then
// answers "checked out", and a retry with its key gets its order.
TEST(Migrate, a_checkout_whose_cart_expired_is_still_recovered) {
  TempDir dir;
  auto db = dir.path() / "shop.db";
  std::string id, order_id;
  const std::string key = "key-X";
  {
    // The order, as the older cartd wrote it (a scratch Redis: only the DB is kept).
    RedisServer scratch;
    Cartd writer(scratch, kCatalog, {}, db);
    auto cart = writer.post("/v1/carts", "");
    ASSERT_EQ(cart.status, 201u) << cart.body;
    id = std::string(cart.json().at("id").as_string());
    ASSERT_EQ(writer
                  .post("/v1/carts/" + id + "/items",
                        R"({"product_id":"mug","inventory_id":"mug","quantity":2})")
                  .status,
              200u);
    auto placed = writer.post("/v1/carts/" + id + "/checkout", "", {{"Idempotency-Key", key}});
    ASSERT_EQ(placed.status, 201u) << placed.body;
    order_id = std::string(placed.json().at("order_id").as_string());
  }
  ASSERT_EQ(sqlite_int(db, "SELECT on_hand FROM inventory WHERE inventory_id = 'mug'"), 8);

  RedisServer redis;
  {
    OldCartd old(redis);
    old.mirror();  // as before the order: the older cartd never ran the checkout's last step
    old.set_line(id, "mug", 2, 800);
    ASSERT_EQ(old.call("cartd_checkout_begin", {id, key, "300", "attempt-X"}).text_at(0), "begun");
    ASSERT_EQ(redis.command({"ZCARD", "checkouts"}).integer, 1);
  }
  std::this_thread::sleep_for(1200ms);  // the cart's deadline passes
  ASSERT_EQ(redis.command({"EXISTS", "s:{" + id + "}"}).integer, 0);

  Cartd cartd(redis, kCatalog, {"--checkout-recovery-ms", "1000", "--db-timeout-ms", "500"}, db);
  EXPECT_TRUE(eventually([&] { return cartd.get("/v1/carts/" + id).status == 410u; }, 5s))
      << cartd.get("/v1/carts/" + id).body;
  auto retry = cartd.post("/v1/carts/" + id + "/checkout", "", {{"Idempotency-Key", key}});
  EXPECT_EQ(retry.status, 200u) << retry.body;
  EXPECT_NE(retry.body.find(order_id), std::string::npos) << retry.body;
  EXPECT_EQ(redis.checkouts_in_progress(), 0);
  EXPECT_EQ(sqlite_int(db, "SELECT COUNT(*) FROM orders"), 1);
  auto mug = cartd.get("/v1/stock/mug").json();
  EXPECT_EQ(mug.at("on_hand").as_int64(), 8);
  EXPECT_EQ(mug.at("reserved").as_int64(), 0);
  expect_layout2_only(redis);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

}  // namespace migrate_test
}  // namespace cartd::test
