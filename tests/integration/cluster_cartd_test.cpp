// cartd itself on a real Redis Cluster (three primaries): the classic routes, the /v1
// cart and checkout, abandon, admin changes, expiry heard from every primary, and
// `cartd check` reading every node, ending with exact accounting in the main DB.
#include <gtest/gtest.h>

#include <csignal>

#include <boost/json.hpp>
#include <thread>

#include "functions/keys.hpp"
#include "harness.hpp"
#include "redis/slot.hpp"

namespace cartd::test {
namespace cluster_cartd_test {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "cluster-token";

// Rows whose groups land on different primaries.
std::string catalog() {
  json::array rows;
  for (int i = 0; i < 12; ++i) {
    std::string id = "row" + std::to_string(i);
    rows.push_back(json::object{{"inventory_id", id},
                                {"product_id", id},
                                {"name", "Item " + std::to_string(i)},
                                {"price_cents", 100 + i},
                                {"on_hand", 5}});
  }
  return json::serialize(rows);
}

std::string line(int row, int qty) {
  std::string id = "row" + std::to_string(row);
  return json::serialize(json::object{{"product_id", id}, {"inventory_id", id}, {"quantity", qty}});
}

// The DB writer's reads of the dirty sets: cartd_take_dirty's SPOP (the probe tests a set
// with EXISTS; the sorted indexes' reads, ZRANGE, the probe makes too, so they cannot be
// told apart).
std::int64_t dirty_reads(RedisCluster& cluster) {
  return cluster.calls("spop");
}

// True once the DB writer has read no dirty set for half a second (within 20 s): the
// mirror at start marked every row, and it takes them over a few rounds.
bool dirty_reads_stop(RedisCluster& cluster) {
  return eventually(
      [&] {
        std::int64_t before = dirty_reads(cluster);
        std::this_thread::sleep_for(500ms);
        return dirty_reads(cluster) == before;
      },
      20s, 0ms);
}

// Waits until cartd's housekeeper has a connection to every primary: what it notices
// about the nodes (an owner that changed, a node that restarted) it notices from then on.
// A cartd is ready before that (its loops' connections are).
bool housekeeper_connected(Cartd& cartd, RedisCluster& cluster) {
  return eventually(
      [&] {
        for (int port : cluster.primaries()) {
          std::string line = "cartd2-housekeeper connected to 127.0.0.1:" + std::to_string(port);
          if (cartd.log().find(line) == std::string::npos) return false;
        }
        return true;
      },
      15s, 50ms);
}

std::int64_t available(Cartd& cartd, int row) {
  auto r = cartd.get("/v1/stock/row" + std::to_string(row));
  EXPECT_EQ(r.status, 200u) << r.body;
  return r.json().at("available").as_int64();
}

TEST(ClusterCartd, carts_checkout_and_expiry_work_on_a_cluster) {
  RedisCluster cluster(3, 0);
  Cartd cartd(cluster.url(), catalog(),
              {"--admin-token", kToken, "--cart-ttl", "2", "--sweep-interval-ms", "200",
               "--mirror-sync-ms", "500"});
  ASSERT_NE(cartd.log().find("a Redis Cluster"), std::string::npos) << cartd.log();

  // The classic routes: a cart on one node, its rows on others.
  auto added = cartd.post("/add-to-cart", line(0, 2));
  ASSERT_EQ(added.status, 200u) << added.body;
  std::string sid(added.json().at("cartSessionId").as_string());
  for (int row = 1; row < 6; ++row) {
    auto more = cartd.post("/add-to-cart", line(row, 1), {{"cart-session-id", sid}});
    ASSERT_EQ(more.status, 200u) << more.body;
  }
  auto got = cartd.get("/get-cart", {{"cart-session-id", sid}});
  ASSERT_EQ(got.status, 200u);
  EXPECT_EQ(got.json().at("data").as_array().size(), 6u);
  EXPECT_EQ(available(cartd, 0), 3);
  EXPECT_EQ(available(cartd, 5), 4);
  auto short_of =
      cartd.post("/add-to-cart", line(0, 6), {{"cart-session-id", sid}});  // sets the line
  EXPECT_EQ(short_of.status, 409u) << short_of.body;

  // /v1: the cart with names and prices, then its checkout.
  auto view = cartd.get("/v1/carts/" + sid);
  ASSERT_EQ(view.status, 200u) << view.body;
  EXPECT_EQ(view.json().at("lines").as_array().size(), 6u);
  auto order = cartd.post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "k-1"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  auto again = cartd.post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "k-1"}});
  EXPECT_EQ(again.status, 200u) << again.body;
  EXPECT_EQ(again.json().at("order_id"), order.json().at("order_id"));
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT on_hand FROM inventory WHERE inventory_id='row0'"),
            3);
  EXPECT_EQ(available(cartd, 0), 3);

  // Abandon gives the units back at once.
  auto created = cartd.post("/v1/carts", "");
  ASSERT_EQ(created.status, 201u) << created.body;
  std::string other(created.json().at("id").as_string());
  ASSERT_EQ(cartd.post("/v1/carts/" + other + "/items", line(7, 5)).status, 200u);
  EXPECT_EQ(available(cartd, 7), 0);
  auto abandoned = http(cartd.port(), "DELETE", "/v1/carts/" + other);
  EXPECT_EQ(abandoned.status, 200u) << abandoned.body;
  EXPECT_EQ(available(cartd, 7), 5);

  // An admin restock, mirrored to the row's node.
  auto restock = cartd.post(
      "/v1/stock/row8/adjust", R"({"delta": 3})",
      {{"Authorization", std::string("Bearer ") + kToken}, {"Idempotency-Key", "restock-1"}});
  EXPECT_EQ(restock.status, 200u) << restock.body;
  EXPECT_EQ(available(cartd, 8), 8);

  // Expiry: units come back at the deadline, and the expiry is heard from the cart's
  // node (the cart answers 410-style "expired", not "unknown").
  auto brief = cartd.post("/add-to-cart", line(9, 5));
  ASSERT_EQ(brief.status, 200u);
  std::string brief_sid(brief.json().at("cartSessionId").as_string());
  EXPECT_EQ(available(cartd, 9), 0);
  EXPECT_TRUE(eventually([&] { return available(cartd, 9) == 5; }, 15s, 200ms));
  EXPECT_TRUE(eventually(
      [&] {
        auto r = cartd.get("/v1/carts/" + brief_sid);
        return r.status == 404u && r.body.find("cart_expired") != std::string::npos;
      },
      10s, 200ms));
  EXPECT_TRUE(eventually(
      [&] { return sqlite_int(cartd.db_path(), "SELECT SUM(reserved) FROM inventory") == 0; }, 10s,
      200ms))
      << "the DB writer took every group's counts";

  // Every unit: 5 per row + 3 restocked = on hand + sold.
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT SUM(on_hand) FROM inventory") +
                sqlite_int(cartd.db_path(), "SELECT SUM(quantity) FROM order_lines"),
            12 * 5 + 3);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("12 stock rows"), std::string::npos) << check.output;
}

// --checkout-wait-replicas: the checkout's writes wait for a replica on every node they
// went to (the cart's and its rows') before the order is written.
// Replication is asynchronous: a replica that takes over may lack its primary's last
// writes of a row's on_hand. The rows of slots whose owner changed are mirrored again
// from the main DB at once, not at the next mirror sync (an hour away here).
TEST(ClusterCartd, the_rows_of_a_slot_that_changed_owner_are_mirrored_again) {
  RedisCluster cluster(3, 1);
  Cartd cartd(cluster.url(), catalog(), {"--mirror-sync-ms", "3600000"});
  ASSERT_TRUE(housekeeper_connected(cartd, cluster)) << cartd.log();
  std::string key = keys::stock("row0");
  int primary = cluster.owner_of(redis::key_slot(key));
  int replica = cluster.replica_of(primary);
  ASSERT_NE(replica, 0);
  // The copy the replica will serve differs from the main DB (5 units).
  ASSERT_EQ(cluster.command(primary, {"HSET", key, "oh", "99"}).integer, 0);
  ASSERT_EQ(cluster.command(primary, {"WAIT", "1", "2000"}).integer, 1);
  ASSERT_TRUE(cluster.failover(replica));
  EXPECT_TRUE(eventually(
      [&] {
        return cluster.command(replica, {"HGET", key, "oh"}).str == "5";
      },
      15s, 100ms))
      << cartd.log();
  EXPECT_NE(cartd.log().find("whose slots changed owner"), std::string::npos) << cartd.log();
  EXPECT_EQ(available(cartd, 0), 5);
}

// A primary without a replica that restarts empty (no AOF) at its address takes its slots
// back without their keys: no owner changed, but the server did (its run_id). Its rows
// are mirrored again at once, not at the next mirror sync.
TEST(ClusterCartd, the_rows_of_a_primary_that_restarted_empty_are_mirrored_again) {
  RedisCluster cluster(3, 0);
  Cartd cartd(cluster.url(), catalog(), {"--mirror-sync-ms", "3600000"});
  ASSERT_TRUE(housekeeper_connected(cartd, cluster)) << cartd.log();
  std::string key = keys::stock("row0");
  int primary = cluster.owner_of(redis::key_slot(key));
  ASSERT_EQ(cluster.command(primary, {"HGET", key, "oh"}).str, "5");
  cluster.signal(primary, SIGKILL);
  cluster.restart(primary);
  ASSERT_TRUE(cluster.wait_ok());
  EXPECT_TRUE(eventually(
      [&] {
        return cluster.command(primary, {"HGET", key, "oh"}).str == "5";
      },
      15s, 100ms))
      << cartd.log();
  EXPECT_NE(cartd.log().find("restarted"), std::string::npos) << cartd.log();
  EXPECT_EQ(available(cartd, 0), 5);
}

// A checkout's finish on a cluster releases its rows, then closes the cart. Cut short in
// between (cartd killed), a retry with the same key resumes the checkout: its rows hold
// nothing for it any more and the units are gone (sold), so the row refuses the hold.
// The order is in the main DB: the retry must answer it and close the cart, not give the
// checkout up (409, the cart live again with lines no row holds) as a lost hold would be.
// On a PostgreSQL database of `pg`, or (null) cartd's own SQLite file.
void resume_after_the_rows_were_released(PgServer* pg) {
  RedisCluster cluster(3, 0);
  std::vector<std::string> db;
  if (pg) db = {"--db", pg->new_database("resume")};
  auto flags = [&](std::vector<std::string> f) {
    f.insert(f.end(), db.begin(), db.end());
    return f;
  };
  Cartd cartd(cluster.url(), catalog(),
              flags({"--fault-after-checkout-step", "2", "--checkout-recovery-ms", "60000"}));
  auto db_int = [&](const std::string& sql) {
    return pg ? pg->query_int("resume", sql) : sqlite_int(cartd.db_path(), sql);
  };
  auto created = cartd.post("/v1/carts", "");
  ASSERT_EQ(created.status, 201u) << created.body;
  std::string sid(created.json().at("id").as_string());
  ASSERT_EQ(cartd.post("/v1/carts/" + sid + "/items", line(0, 5)).status, 200u);
  ASSERT_EQ(cartd.post("/v1/carts/" + sid + "/items", line(1, 2)).status, 200u);
  EXPECT_THROW(cartd.post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "k"}}),
               std::exception)
      << "cartd died after the order was written";
  cartd.stop(SIGKILL);
  ASSERT_EQ(db_int("SELECT COUNT(*) FROM orders"), 1);
  // The finish's first half, on both rows, as cartd_checkout_release runs it: the holds
  // end, the mirror takes the main DB's on_hand (row0 sold out).
  for (int row : {0, 1}) {
    std::string inv = "row" + std::to_string(row);
    std::string where = " FROM inventory WHERE inventory_id='" + inv + "'";
    auto released =
        cluster.command(cluster.owner_of(redis::key_slot(keys::stock(inv))),
                        {"FCALL", "cartd_checkout_release", "1", keys::stock(inv), inv, sid,
                         row == 0 ? "5" : "2", std::to_string(db_int("SELECT on_hand" + where)),
                         std::to_string(db_int("SELECT version" + where))});
    ASSERT_EQ(released.type, redis::Reply::Type::integer) << released.str;
  }
  cartd.set_flags(flags({"--checkout-recovery-ms", "60000"}));
  cartd.start();
  auto retry = cartd.post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "k"}});
  EXPECT_EQ(retry.status, 200u) << retry.body;
  EXPECT_EQ(cartd.get("/v1/carts/" + sid).status, 410u) << "the cart is an order";
  EXPECT_EQ(db_int("SELECT COUNT(*) FROM orders"), 1);
  EXPECT_NE(cartd.get("/metrics").body.find("\ncartd_broken_hold_promises_total 0\n"),
            std::string::npos)
      << "no broken promise";
  // Every unit: row0 sold out (5 in the order), row1 3 on hand and 2 sold; nothing held.
  EXPECT_EQ(available(cartd, 0), 0);
  EXPECT_EQ(available(cartd, 1), 3);
  EXPECT_EQ(db_int("SELECT SUM(quantity) FROM order_lines"), 7);
  EXPECT_EQ(db_int("SELECT SUM(on_hand) FROM inventory") +
                db_int("SELECT SUM(quantity) FROM order_lines"),
            12 * 5);
  EXPECT_TRUE(
      eventually([&] { return db_int("SELECT SUM(reserved) FROM inventory") == 0; }, 10s, 100ms));
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(ClusterCartd, a_checkout_resumed_after_its_rows_were_released_answers_its_order) {
  resume_after_the_rows_were_released(nullptr);
}
TEST(ClusterCartd, a_checkout_resumed_after_its_rows_were_released_answers_its_order_postgres) {
  PgServer pg;
  resume_after_the_rows_were_released(&pg);
}

TEST(ClusterCartd, a_checkout_waits_for_the_replicas_of_the_nodes_it_wrote_to) {
  RedisCluster cluster(3, 1);
  Cartd cartd(cluster.url(), catalog(), {"--checkout-wait-replicas", "1"});
  auto added = cartd.post("/add-to-cart", line(0, 1));
  ASSERT_EQ(added.status, 200u) << added.body;
  std::string sid(added.json().at("cartSessionId").as_string());
  for (int row = 1; row < 6; ++row) {
    ASSERT_EQ(cartd.post("/add-to-cart", line(row, 1), {{"cart-session-id", sid}}).status, 200u);
  }
  std::int64_t before = cluster.calls("wait");  // the test cluster's own (for its replicas)
  auto order = cartd.post("/v1/carts/" + sid + "/checkout", "", {{"Idempotency-Key", "k"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  EXPECT_EQ(cluster.calls("wait") - before, 7) << "the cart's node and each of its six rows'";
}

// The housekeeping (the sweeper, the DB writer's read, checkout recovery) asks each node
// which of its groups have work, one call per node a round, and reads only those groups'
// indexes: an idle instance reads none (it read all 1024 groups' each round before).
TEST(ClusterCartd, an_idle_instance_reads_no_groups_index_and_finds_the_work) {
  RedisCluster cluster(3, 0);
  Cartd cartd(cluster.url(), catalog(),
              {"--cart-ttl", "2", "--sweep-interval-ms", "200", "--no-keyspace-events",
               "--mirror-sync-ms", "3600000"});
  auto index_reads = [&] { return dirty_reads(cluster); };
  ASSERT_TRUE(dirty_reads_stop(cluster));
  std::int64_t probes = cluster.calls("fcall");
  std::int64_t reads = index_reads();
  std::this_thread::sleep_for(1500ms);
  EXPECT_GT(cluster.calls("fcall"), probes) << "the housekeeping runs";
  EXPECT_EQ(index_reads(), reads);

  // Work is found: the DB writer writes a hold's count, the sweeper (no expiry events
  // here, and no mirror sync to drop expired buckets) returns it at the deadline, and the
  // writer writes that too.
  for (int row : {0, 4, 8}) {
    ASSERT_EQ(cartd.post("/add-to-cart", line(row, 2)).status, 200u);
  }
  EXPECT_TRUE(eventually(
      [&] { return sqlite_int(cartd.db_path(), "SELECT SUM(reserved) FROM inventory") == 6; }, 10s,
      100ms));
  EXPECT_GT(index_reads(), reads);
  EXPECT_TRUE(eventually(
      [&] { return sqlite_int(cartd.db_path(), "SELECT SUM(reserved) FROM inventory") == 0; }, 15s,
      100ms));
  for (int row : {0, 4, 8}) EXPECT_EQ(available(cartd, row), 5);
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT SUM(on_hand) FROM inventory"), 12 * 5);
  auto check = cartd.check();
  EXPECT_EQ(check.exit_code, 0) << check.output;
  // A group function takes its group's index only, not the key the cluster client adds to
  // every call (a lease on "{tag}#absent" would be a key of it).
  for (int port : cluster.primaries()) {
    EXPECT_TRUE(cluster.command(port, {"KEYS", "*#absent*"}).elements.empty()) << port;
  }
}

// The mirror sync sends every row to its node every --mirror-sync-ms; a row is marked for
// the DB writer only when its live count differs from the main DB's (a row its node lost,
// a DB write that was lost), not every row every time (which had the DB writer read and
// write back every row each round).
TEST(ClusterCartd, the_mirror_sync_marks_for_the_db_only_the_rows_that_differ) {
  RedisCluster cluster(3, 0);
  Cartd cartd(cluster.url(), catalog(), {"--mirror-sync-ms", "300"});
  auto reserved = [&] {
    return sqlite_int(cartd.db_path(), "SELECT reserved FROM inventory WHERE inventory_id='row0'");
  };
  ASSERT_EQ(cartd.post("/add-to-cart", line(0, 2)).status, 200u);
  EXPECT_TRUE(eventually([&] { return reserved() == 2; }, 10s, 100ms)) << cartd.log();
  EXPECT_TRUE(dirty_reads_stop(cluster)) << "the sync marks rows that do not differ\n"
                                         << cartd.log();

  // A count the main DB lost (a write lost with its instance) is written again.
  sqlite_exec(cartd.db_path(), "UPDATE inventory SET reserved = 4 WHERE inventory_id='row0'");
  EXPECT_TRUE(eventually([&] { return reserved() == 2; }, 10s, 100ms)) << cartd.log();

  // A row its node lost (held units on it included) comes back, and its count with it.
  std::string key = keys::stock("row0");
  int node = cluster.owner_of(redis::key_slot(key));
  ASSERT_EQ(cluster.command(node, {"DEL", key}).integer, 1);
  EXPECT_TRUE(eventually(
      [&] {
        return cluster.command(node, {"HGET", key, "oh"}).str == "5";
      },
      10s, 100ms))
      << cartd.log();
  EXPECT_TRUE(eventually([&] { return reserved() == 0; }, 10s, 100ms))
      << "the lost holds' count reaches the main DB\n"
      << cartd.log();
  EXPECT_EQ(available(cartd, 0), 5);
  EXPECT_EQ(sqlite_int(cartd.db_path(), "SELECT SUM(on_hand) FROM inventory"), 12 * 5);
}

// A slot that is moving shows on /metrics: the requests that wait for it count the
// cluster's TRYAGAIN answers, and go through once the move ends (here: abandoned, the slot
// left where it was).
TEST(ClusterCartd, requests_that_wait_for_a_moving_slot_are_counted) {
  RedisCluster cluster(3, 0);
  Cartd cartd(cluster.url(), catalog(), {});
  auto added = cartd.post("/add-to-cart", line(0, 1));
  ASSERT_EQ(added.status, 200u) << added.body;
  std::string sid(added.json().at("cartSessionId").as_string());
  auto redirects = [&](const std::string& kind) -> std::int64_t {
    std::string body = cartd.get("/metrics").body;
    std::string series = "cartd_redis_cluster_redirects_total{kind=\"" + kind + "\"} ";
    auto at = body.find(series);
    if (at == std::string::npos) return -1;
    return std::stoll(body.substr(at + series.size()));
  };
  EXPECT_EQ(redirects("try_again"), 0);
  EXPECT_EQ(redirects("moved"), 0);
  EXPECT_EQ(redirects("ask"), 0);

  std::string slot = std::to_string(redis::key_slot(keys::stock("row0")));
  int from = cluster.owner_of(redis::key_slot(keys::stock("row0")));
  int to = cluster.primaries().at(cluster.primaries().front() == from ? 1 : 0);
  ASSERT_EQ(
      cluster.command(to, {"CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(from)}).str,
      "OK");
  ASSERT_EQ(
      cluster.command(from, {"CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(to)}).str,
      "OK");
  HttpResponse grown;
  std::thread request([&] {
    grown = cartd.post("/add-to-cart", line(0, 2), {{"cart-session-id", sid}});
  });
  EXPECT_TRUE(eventually([&] { return redirects("try_again") > 0; }, 1500ms, 50ms)) << cartd.log();
  for (int port : {from, to}) {
    EXPECT_EQ(cluster.command(port, {"CLUSTER", "SETSLOT", slot, "STABLE"}).str, "OK");
  }
  request.join();
  EXPECT_EQ(grown.status, 200u) << grown.body;
  EXPECT_EQ(available(cartd, 0), 3);
}

}  // namespace cluster_cartd_test
}  // namespace cartd::test
