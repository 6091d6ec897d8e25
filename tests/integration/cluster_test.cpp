// The cluster client (src/redis/cluster.hpp) against a real Redis Cluster of six
// redis-servers (three primaries, three replicas) that each test makes itself: slots as
// the cluster computes them, routing, MOVED after a reshard, ASK and TRYAGAIN during a
// slot move, a failover, and a cluster that is down.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "functions/keys.hpp"
#include "harness.hpp"
#include "lua/library.hpp"
#include "redis/cluster.hpp"
#include "redis/slot.hpp"
#include "redis/sync.hpp"

namespace cartd::test {
namespace cluster_test {

using namespace std::chrono_literals;

// A ClusterClient on a loop of its own; commands are sent from the test's thread and
// waited for.
class Routed {
 public:
  using Tweak = std::function<void(redis::ClusterClient::Options&)>;
  explicit Routed(RedisCluster& cluster, const Tweak& tweak = {}) {
    redis::ClusterClient::Options o;
    o.seeds.push_back(*redis::parse_url(cluster.url()));
    o.node.name = "cartd-test";
    o.node.command_timeout = 2000ms;
    o.node.max_backoff = 200ms;
    if (tweak) tweak(o);
    client_ = std::make_unique<redis::ClusterClient>(io_, std::move(o));
    boost::asio::post(io_, [this] { client_->start(); });
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Routed() {
    boost::asio::post(io_, [this] { client_->stop(); });
    work_.reset();
    thread_.join();
  }
  bool wait_ready() {
    return eventually([&] { return client_->ready(); }, 20s);
  }
  redis::Result run(std::vector<std::string> args) {
    auto future = send(std::move(args));
    // A handler that is never called fails the test rather than hang it.
    if (future.wait_for(30s) != std::future_status::ready) {
      ADD_FAILURE() << "no answer in 30 s";
      return redis::Errc::timeout;
    }
    return future.get();
  }
  // Sends args without waiting; the future has the answer.
  std::future<redis::Result> send(std::vector<std::string> args) {
    auto done = std::make_shared<std::promise<redis::Result>>();
    auto future = done->get_future();
    boost::asio::post(io_, [this, args = std::move(args), done] {
      std::vector<std::string_view> views(args.begin(), args.end());
      client_->command(std::span<const std::string_view>(views),
                       [done](redis::Result r) { done->set_value(std::move(r)); });
    });
    return future;
  }
  // Runs f on the client's loop and waits for it.
  template <typename F>
  auto on_loop(F f) {
    std::promise<decltype(f(*client_))> v;
    boost::asio::post(io_, [&] { v.set_value(f(*client_)); });
    return v.get_future().get();
  }
  std::uint64_t redirects() {
    std::promise<std::uint64_t> v;
    boost::asio::post(io_, [&] { v.set_value(client_->redirects()); });
    return v.get_future().get();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::unique_ptr<redis::ClusterClient> client_;
  std::thread thread_;
};

std::string text(const redis::Result& r) {
  if (!r) return "<" + r.error().message() + ">";
  return r->str;
}

// The key of cart group g (a key of layout 2).
std::string cart_key(std::uint32_t g) {
  return keys::cart_tag(g) + ":cart";
}

TEST(Cluster, key_slot_matches_the_cluster_for_every_cartd_group) {
  RedisCluster cluster(3, 0);
  int port = cluster.ports()[0];
  std::vector<std::string> keys{
      "foo",      "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "{}", "}{",
      "a{b}c{d}", "\xff\xfe{\x01}"};
  for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
    keys.push_back(keys::cart_tag(g) + ":x");
    keys.push_back(keys::stock_tag(g) + "#due");
  }
  std::vector<std::vector<std::string>> commands;
  for (const std::string& k : keys) commands.push_back({"CLUSTER", "KEYSLOT", k});
  redis::Endpoint e;
  e.port = port;
  auto c = redis::sync_connect(e, 10s);
  auto slots = redis::sync_pipeline(c.get(), commands);
  ASSERT_EQ(slots.size(), keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(redis::key_slot(keys[i]), slots[i].integer) << keys[i];
  }
}

TEST(Cluster, commands_reach_the_owner_of_their_slot) {
  RedisCluster cluster;
  Routed client(cluster);
  ASSERT_TRUE(client.wait_ready());
  for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
    auto r = client.run({"SET", cart_key(g), std::to_string(g)});
    ASSERT_EQ(text(r), "OK") << g;
  }
  EXPECT_EQ(client.redirects(), 0u);
  // Each key is on the primary that owns its slot, and nowhere else.
  for (std::uint32_t g = 0; g < keys::kGroups; g += 97) {
    int owner = cluster.owner_of(redis::key_slot(cart_key(g)));
    EXPECT_EQ(cluster.command(owner, {"GET", cart_key(g)}).str, std::to_string(g));
    EXPECT_EQ(text(client.run({"GET", cart_key(g)})), std::to_string(g));
  }
  // A command without keys goes to any node.
  auto time = client.run({"TIME"});
  ASSERT_TRUE(time);
  EXPECT_EQ(time->elements.size(), 2u);
}

TEST(Cluster, a_reshard_is_followed_through_moved) {
  RedisCluster cluster;
  // The map is read at start only (and again on each MOVED).
  Routed client(cluster, [](auto& o) { o.refresh_interval = 600000ms; });
  ASSERT_TRUE(client.wait_ready());
  for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
    ASSERT_EQ(text(client.run({"SET", cart_key(g), std::to_string(g)})), "OK");
  }
  int from = cluster.ports()[0];
  int to = cluster.ports()[1];
  cluster.reshard(to, from, 500);
  ASSERT_TRUE(cluster.wait_ok());
  for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
    ASSERT_EQ(text(client.run({"INCR", cart_key(g)})), "") << g;
  }
  // Some groups lived in the 500 slots that moved: MOVED sent those to the new owner.
  auto moved = client.redirects();
  EXPECT_GT(moved, 0u);
  // Once learnt, the map sends every command straight to its owner.
  for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
    ASSERT_EQ(text(client.run({"GET", cart_key(g)})), std::to_string(g + 1)) << g;
  }
  EXPECT_EQ(client.redirects(), moved);
}

// redis-cli moves 500 slots key by key while commands keep coming: each one is applied
// exactly once (MOVED, ASK and TRYAGAIN are answered without losing or repeating one).
TEST(Cluster, every_command_lands_once_while_500_slots_move) {
  RedisCluster cluster(3, 0);
  Routed client(cluster, [](auto& o) { o.node.command_timeout = 10000ms; });
  ASSERT_TRUE(client.wait_ready());
  constexpr std::uint32_t kKeys = 2048;  // two per group, 4 fields each: keys to migrate
  auto key = [](std::uint32_t i) {
    return keys::cart_tag(i % keys::kGroups) + ":" + std::to_string(i);
  };
  for (std::uint32_t i = 0; i < kKeys; ++i) {
    ASSERT_EQ(text(client.run({"HSET", key(i), "a", "1", "b", "2", "c", "3", "n", "0"})), "") << i;
  }
  std::atomic<bool> moving = true;
  std::atomic<std::uint64_t> acknowledged = 0, failed = 0;
  std::vector<std::uint64_t> per_key(kKeys, 0);
  std::mutex mutex;
  std::thread load([&] {
    // 32 in flight, until the move ends (bounded: at most 200 000 commands).
    for (std::uint64_t n = 0; moving && n < 200000; n += 32) {
      std::vector<std::pair<std::uint32_t, std::future<redis::Result>>> batch;
      for (std::uint32_t j = 0; j < 32; ++j) {
        auto i = static_cast<std::uint32_t>((n + j) * 7919 % kKeys);
        batch.emplace_back(i, client.send({"HINCRBY", key(i), "n", "1"}));
      }
      for (auto& [i, f] : batch) {
        auto r = f.get();
        if (r && !r->is_error()) {
          ++acknowledged;
          std::lock_guard lock(mutex);
          ++per_key[i];
        } else {
          ++failed;
          ADD_FAILURE() << key(i) << ": " << (r ? r->str : r.error().message());
        }
      }
    }
  });
  cluster.reshard(cluster.ports()[1], cluster.ports()[0], 500);
  moving = false;
  load.join();
  ASSERT_TRUE(cluster.wait_ok());
  EXPECT_EQ(failed, 0u);
  EXPECT_GT(client.redirects(), 0u);
  std::uint64_t total = 0;
  for (std::uint32_t i = 0; i < kKeys; ++i) {
    auto r = client.run({"HGET", key(i), "n"});
    ASSERT_TRUE(r && !r->is_error()) << key(i);
    EXPECT_EQ(r->str, std::to_string(per_key[i])) << key(i);
    total += std::stoull(r->str);
  }
  EXPECT_EQ(total, acknowledged.load());
}

// Moves one slot by hand, one key at a time, to see ASK and TRYAGAIN.
TEST(Cluster, ask_and_try_again_during_a_slot_move) {
  RedisCluster cluster(3, 0);
  // TRYAGAIN is retried every 50 ms for up to 20 s: time for this thread to end the move.
  Routed client(cluster, [](auto& o) {
    o.refresh_interval = 600000ms;
    o.try_again_pause = 50ms;
    o.node.command_timeout = 20000ms;
  });
  ASSERT_TRUE(client.wait_ready());
  std::string a = "{c5}:a", b = "{c5}:b";
  auto slot = std::to_string(redis::key_slot(a));
  ASSERT_EQ(text(client.run({"SET", a, "1"})), "OK");
  ASSERT_EQ(text(client.run({"SET", b, "2"})), "OK");
  int from = cluster.owner_of(redis::key_slot(a));
  int to = from == cluster.ports()[0] ? cluster.ports()[1] : cluster.ports()[0];
  auto from_id = cluster.node_id(from), to_id = cluster.node_id(to);
  ASSERT_EQ(cluster.command(to, {"CLUSTER", "SETSLOT", slot, "IMPORTING", from_id}).str, "OK");
  ASSERT_EQ(cluster.command(from, {"CLUSTER", "SETSLOT", slot, "MIGRATING", to_id}).str, "OK");
  ASSERT_EQ(cluster.command(from, {"MIGRATE", "127.0.0.1", std::to_string(to), a, "0", "5000"}).str,
            "OK");
  // a is on the target now: the source answers ASK, the client asks the target.
  EXPECT_EQ(text(client.run({"GET", a})), "1");
  EXPECT_EQ(client.redirects(), 1u);
  // b is still on the source: served there.
  EXPECT_EQ(text(client.run({"GET", b})), "2");
  // Both at once are split between the nodes: TRYAGAIN until the move ends.
  auto both = client.send({"MGET", a, b});
  ASSERT_TRUE(eventually([&] { return client.redirects() >= 2; }, 5s, 5ms));
  ASSERT_EQ(cluster.command(from, {"MIGRATE", "127.0.0.1", std::to_string(to), b, "0", "5000"}).str,
            "OK");
  for (int port : {to, from}) {
    ASSERT_EQ(cluster.command(port, {"CLUSTER", "SETSLOT", slot, "NODE", to_id}).str, "OK");
  }
  auto r = both.get();
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->elements.size(), 2u) << r->str;
  EXPECT_EQ(r->elements[0].str, "1");
  EXPECT_EQ(r->elements[1].str, "2");
}

TEST(Cluster, a_failover_is_followed) {
  RedisCluster cluster;
  Routed client(cluster, [](auto& o) { o.forget_after = 1000ms; });
  ASSERT_TRUE(client.wait_ready());
  std::string key = cart_key(1);
  ASSERT_EQ(text(client.run({"SET", key, "before"})), "OK");
  // The replica has the key before its primary dies (it may still be syncing at first).
  int owner = cluster.owner_of(redis::key_slot(key));
  ASSERT_TRUE(eventually(
      [&] {
        return cluster.command(owner, {"WAIT", "1", "500"}).integer == 1;
      },
      20s, 10ms));
  int old_owner = cluster.owner_of(redis::key_slot(key));
  cluster.signal(old_owner, SIGKILL);
  // Until the replica takes over, commands on the slot fail at once (never hang), and
  // commands on other primaries' slots are served.
  std::string other;  // a key of another primary
  for (std::uint32_t g = 0; other.empty(); ++g) {
    int o = cluster.owner_of(redis::key_slot(cart_key(g)));
    if (o != 0 && o != old_owner) other = cart_key(g);
  }
  auto started = std::chrono::steady_clock::now();
  auto r = client.run({"GET", key});
  EXPECT_FALSE(r) << r->str;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2500ms);
  EXPECT_EQ(text(client.run({"SET", other, "served"})), "OK");
  bool promoted = eventually(
      [&] {
        auto again = client.run({"GET", key});
        return again && again->str == "before";
      },
      30s, 100ms);
  ASSERT_TRUE(promoted);
  EXPECT_EQ(text(client.run({"SET", key, "after"})), "OK");
  EXPECT_TRUE(client.wait_ready());
  // The old primary comes back as a replica: once out of the map for forget_after, its
  // connection is closed (the three primaries' remain), and it is not connected again.
  cluster.restart(old_owner);
  ASSERT_TRUE(cluster.wait_ok());
  EXPECT_TRUE(eventually(
      [&] {
        return client.on_loop([](auto& c) { return c.connections(); }) == 3 &&
               cluster.command(old_owner, {"CLIENT", "LIST"}).str.find("name=cartd-test ") ==
                   std::string::npos;
      },
      20s, 100ms));
  EXPECT_EQ(text(client.run({"GET", key})), "after");
}

// Keyspace events are per node: every primary's are heard, and a promoted replica's too.
TEST(Cluster, expiry_events_are_heard_from_every_primary_and_after_a_failover) {
  RedisCluster cluster;
  Routed client(cluster);
  ASSERT_TRUE(client.wait_ready());
  std::mutex mutex;
  std::set<std::string> heard;
  client.on_loop([&](redis::ClusterClient& c) {
    c.subscribe_all(
        "__keyevent@0__:expired",
        [&](std::string_view key) {
          std::lock_guard lock(mutex);
          heard.insert(std::string(key));
        },
        [](redis::Client& node, std::function<void(bool)> done) {
          node.setup_command({"CONFIG", "SET", "notify-keyspace-events", "Ex"},
                             [done](redis::Result r) { done(r && !r->is_error()); });
        });
    return 0;
  });
  ASSERT_TRUE(
      eventually([&] { return client.on_loop([](auto& c) { return c.subscribed(); }) == 3; }, 20s));
  auto expire_all = [&](const std::string& suffix) {
    for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
      ASSERT_EQ(text(client.run({"SET", cart_key(g) + suffix, "1", "PX", "50"})), "OK") << g;
    }
    // Redis expires keys on access or in its background cycle (10 times a second).
    ASSERT_TRUE(eventually(
        [&] {
          std::lock_guard lock(mutex);
          std::size_t n = 0;
          for (std::uint32_t g = 0; g < keys::kGroups; ++g) n += heard.count(cart_key(g) + suffix);
          return n == keys::kGroups;
        },
        20s, 50ms));
  };
  expire_all(":1");
  // A primary dies; its replica takes over, and its events are heard as well.
  int dead = cluster.owner_of(redis::key_slot(cart_key(0)));
  cluster.signal(dead, SIGKILL);
  ASSERT_TRUE(eventually(
      [&] {
        auto r = client.run({"SET", cart_key(0) + ":probe", "1"});
        return r && !r->is_error();
      },
      30s, 100ms));
  ASSERT_TRUE(
      eventually([&] { return client.on_loop([](auto& c) { return c.subscribed(); }) == 3; }, 20s));
  expire_all(":2");
}

// cartd_groups_with_work (release.lua), the housekeeping's probe: one call to a node
// names the indexes of many of its slots and answers which have work, reading keys of
// several slots (allow-cross-slot-keys); a key of another node's slot is "cannot tell".
TEST(Cluster, the_housekeeping_probe_names_the_groups_with_work_on_its_node) {
  RedisCluster cluster(3, 0);
  int here = cluster.ports()[0];
  for (int port : cluster.primaries()) {
    ASSERT_EQ(
        cluster.command(port, {"FUNCTION", "LOAD", "REPLACE", std::string(scripts::library)}).type,
        redis::Reply::Type::string);
  }
  std::vector<std::uint32_t> mine;
  std::uint32_t elsewhere = keys::kGroups;
  for (std::uint32_t g = 0; mine.size() < 5 || elsewhere == keys::kGroups; ++g) {
    ASSERT_LT(g, keys::kGroups);
    if (cluster.owner_of(redis::key_slot(keys::dirty(g))) == here) {
      if (mine.size() < 5) mine.push_back(g);
    } else if (elsewhere == keys::kGroups) {
      elsewhere = g;
    }
  }
  // Work, with no lease; work, another's lease; work, my lease; nothing; another node's.
  auto dirty = [&](std::size_t i) { return keys::dirty(mine[i]); };
  cluster.command(here, {"SADD", dirty(0), "row-a"});
  cluster.command(here, {"SADD", dirty(1), "row-b"});
  cluster.command(here, {"SET", keys::lease(dirty(1)), "other", "PX", "60000"});
  cluster.command(here, {"SADD", dirty(2), "row-c"});
  cluster.command(here, {"SET", keys::lease(dirty(2)), "me", "PX", "60000"});
  auto probe = [&](std::string upto, std::vector<std::string> indexes) {
    std::vector<std::string> args{"FCALL", "cartd_groups_with_work", "0", "me", std::move(upto)};
    args.insert(args.end(), indexes.begin(), indexes.end());
    std::vector<std::int64_t> positions;
    redis::Reply r = cluster.command(here, args);
    EXPECT_EQ(r.type, redis::Reply::Type::array) << r.str;
    for (const auto& e : r.elements) positions.push_back(e.integer);
    return positions;
  };
  EXPECT_EQ(probe("", {dirty(0), dirty(1), dirty(2), dirty(3), keys::dirty(elsewhere)}),
            (std::vector<std::int64_t>{1, 3, 5}));

  // A sorted index: work is a member scored up to the bound.
  std::string due = keys::due(mine[4]);
  cluster.command(here, {"ZADD", due, "100", "row-d"});
  EXPECT_EQ(probe("(100", {due}), std::vector<std::int64_t>{});
  EXPECT_EQ(probe("100", {due}), std::vector<std::int64_t>{1});
  EXPECT_EQ(probe("+inf", {keys::due(mine[3]), due}), std::vector<std::int64_t>{2});
}

TEST(Cluster, a_cluster_that_is_down_fails_commands_at_once) {
  RedisCluster cluster(3, 0);
  Routed client(cluster);
  ASSERT_TRUE(client.wait_ready());
  int dead = cluster.ports()[2];
  cluster.signal(dead, SIGKILL);
  // The others mark it failed after cluster-node-timeout and refuse every slot
  // (cluster-require-full-coverage): CLUSTERDOWN, which the client answers as a Redis
  // that is down.
  int alive = cluster.ports()[0];
  ASSERT_TRUE(eventually(
      [&] {
        return cluster.command(alive, {"CLUSTER", "INFO"}).str.find("cluster_state:fail") !=
               std::string::npos;
      },
      20s, 100ms));
  std::string key;
  for (std::uint32_t g = 0; key.empty(); ++g) {
    if (cluster.owner_of(redis::key_slot(cart_key(g))) == alive) key = cart_key(g);
  }
  auto started = std::chrono::steady_clock::now();
  auto r = client.run({"GET", key});
  ASSERT_FALSE(r) << r->str;
  EXPECT_EQ(r.error(), redis::Errc::unavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1000ms);
}

}  // namespace cluster_test
}  // namespace cartd::test
