// cluster: commands routed over a Redis Cluster, on one event loop.
//
// No C++ cluster client is packaged in Debian 12 (hiredis 0.14 only), so this one is
// built over `Client`: one connection per primary, each a `Client` of its own (it
// reconnects, loads the functions library and runs the setup step like a standalone
// connection does). A command goes to the primary that owns the slot of its first key
// (slot.hpp), by a map read from CLUSTER SHARDS. The answers the cluster specification
// defines are handled here, so callers see what a standalone Redis would answer:
//
//   MOVED <slot> <host:port>  the slot has a new owner: the map learns it at once, a
//                             refresh of the whole map is asked for, the command is
//                             sent again to the new owner;
//   ASK <slot> <host:port>    the slot is being moved and this key is already on the
//                             target: ASKING, then the command, to the target (which
//                             may answer TRYAGAIN);
//   TRYAGAIN                  a multi-key command during a slot move: sent again after
//                             a short pause, for at most the command timeout (the ASKs
//                             between the pauses do not count as redirects);
//   CLUSTERDOWN               the cluster cannot serve the slot (a failover under way):
//                             the command fails at once with Errc::unavailable, as when
//                             a standalone Redis is down, and the map is refreshed.
//
// A command whose node is unreachable (or loading its data) fails with Errc::unavailable
// too, and asks for a refresh, so a failover is followed as soon as the cluster has
// elected the replica. At most `max_redirects` MOVED or ASK in a row (between TRYAGAIN
// pauses), then it fails with Errc::unavailable. The map is read at most every
// `min_refresh_gap`, from the known nodes in turn, and rebuilt whole from each answer.
// Node connections take the user and password of the first seed. A ClusterClient starts
// once (start after stop is not supported).
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "metrics/metrics.hpp"
#include "redis/client.hpp"
#include "redis/reply.hpp"
#include "redis/slot.hpp"
#include "redis/url.hpp"

namespace cartd::redis {

// One shard of the cluster as CLUSTER SHARDS describes it: its slot ranges and its primary.
struct Shard {
  std::vector<std::pair<std::uint16_t, std::uint16_t>> slots;  // inclusive ranges
  Endpoint primary;                                            // host and port only
  std::string primary_id;
};

// Reads a CLUSTER SHARDS reply; shards without a healthy primary or without slots are
// left out. A node's address is its `endpoint` (as MOVED and ASK give it), else its
// `ip`; a node that does not know its own address ("" or "?": a cluster of one node)
// is at `answered_host`, the host of the node that answered.
std::vector<Shard> parse_shards(const Reply& reply, const std::string& answered_host);

// Encodes a command (encode_command) as a ClusterClient sends it: a function call (FCALL
// with keys) names one key more, after its own: "{tag}#absent", of its first key's hash
// tag, a key that never exists. Redis runs a call on a slot in migration when every key
// the call names is on the node (the source, or the target asked with ASKING), and then
// checks each command of the function against the keys as they are at that command: a
// function that empties a key (its last member) and touches it again would be refused
// halfway, its earlier writes made. With a key that is never there, such a call is
// answered TRYAGAIN (by the source while it has some of the keys, else by the target
// after ASK) until the slot has moved: no function runs on a slot that migrates.
// Any other command (and a call whose first key has no hash tag) is encoded as it is.
void encode_for_cluster(std::span<const std::string_view> args, std::string& out);

class ClusterClient final : public Commands {
 public:
  struct Options {
    // Nodes to learn the cluster from (any node, primary or replica; at least one).
    std::vector<Endpoint> seeds;
    // What each primary's connection is, as for a standalone Client; its endpoint is
    // replaced by the node's (user, password and db are kept).
    Client::Options node;
    int max_redirects = 5;
    std::chrono::milliseconds try_again_pause{20};
    std::chrono::milliseconds min_refresh_gap{100};
    // The map is read again this often even when no answer says it changed.
    std::chrono::milliseconds refresh_interval{5000};
    // A node out of the map this long (a primary that died, or became a replica) loses
    // its connections.
    std::chrono::milliseconds forget_after{30000};
  };

  ClusterClient(boost::asio::io_context& io, Options options);
  ~ClusterClient();
  ClusterClient(const ClusterClient&) = delete;
  ClusterClient& operator=(const ClusterClient&) = delete;

  void start() override;
  void stop() override;
  // True when every slot has an owner and every owner's connection is ready. Safe from
  // any thread.
  boost::asio::io_context& context() override { return io_; }
  bool ready() const override { return ready_; }

  // Sends one command to the owner of its first key's slot (a command without keys goes
  // to any ready primary). The handler runs on this loop, exactly once.
  void command(std::span<const std::string_view> args, ReplyHandler handler) override;
  using Commands::command;
  void command_near(std::string_view key, std::span<const std::string_view> args,
                    ReplyHandler handler) override;
  std::vector<std::vector<std::size_t>> by_node(std::span<const std::string> keys) const override;

  // Subscribes to `channel` on every primary, each on a connection of its own, and on
  // every node that becomes a primary later (keyspace events are per node). `before`,
  // if given, runs on each of those connections before it subscribes (after every
  // reconnect too): CONFIG SET notify-keyspace-events, for instance. on_message runs
  // on this loop. Call once, after start().
  void subscribe_all(std::string channel, std::function<void(std::string_view)> on_message,
                     SetupStep before = {});
  // How many primaries have a subscriber connection that is ready.
  std::size_t subscribed() const;

  // Runs `f` on this loop with the slots whose owner changed (a failover, a slot that
  // moved), each time a read of the map finds some, not for the first read; and with a
  // primary's slots when its connection finds it restarted (another run_id): a primary
  // that restarts empty at its address takes its slots back without their keys.
  void on_owner_change(std::function<void(const std::vector<std::uint16_t>&)> f) {
    on_owner_change_ = std::move(f);
  }

  // Reads the map again now (it is also read on MOVED, CLUSTERDOWN, an unreachable node,
  // and every refresh_interval).
  void refresh();

  // How many nodes this client keeps a command connection to.
  std::size_t connections() const { return nodes_.size(); }
  // Counts, for the metrics (redirects_seen, from any thread) and the tests (their sum).
  Redirects redirects_seen() const override {
    return {moved_.value(), asked_.value(), tried_again_.value()};
  }
  std::uint64_t redirects() const {
    Redirects r = redirects_seen();
    return r.moved + r.ask + r.try_again;
  }

 private:
  struct Node {
    Endpoint endpoint;
    std::unique_ptr<Client> client;
    std::string run_id;  // the server's, as its last connect found it
    // When the map stopped naming it (zero while it owns slots).
    std::chrono::steady_clock::time_point unowned_since{};
  };
  struct Call;

  std::shared_ptr<Node> node_for(const Endpoint& e);
  // A node connection's setup: the owner's step, after reading the server's run_id.
  void on_node_connect(const std::shared_ptr<Node>& node, Client& c,
                       std::function<void(bool)> done);
  void forget_unowned();
  Client* any_owner_ready();
  // The nodes that own slots in the map, each once.
  std::vector<Node*> owning_nodes() const;
  // A connection without the library (the seeds', the subscribers').
  Client::Options plain_options(const Endpoint& e, const char* suffix) const;
  template <typename F>
  void after(std::chrono::milliseconds delay, F f);
  // A new command to the owner of `slot` (none: any ready primary).
  void send_to_slot(std::optional<std::uint16_t> slot, std::span<const std::string_view> args,
                    ReplyHandler handler);
  void dispatch(std::shared_ptr<Call> call);
  void on_reply(std::shared_ptr<Call> call, Result r);
  void send_when_ready(std::shared_ptr<Call> call, std::shared_ptr<Node> node,
                       std::chrono::steady_clock::time_point deadline);
  void apply(const std::vector<Shard>& shards);
  void update_ready();
  void schedule_refresh();
  void ensure_subscribers();
  Endpoint with_credentials(const Endpoint& e) const;
  void watch_ready();

  boost::asio::io_context& io_;
  Options options_;
  std::vector<std::shared_ptr<Node>> nodes_;    // the nodes routed to or asked lately
  std::vector<std::unique_ptr<Client>> seeds_;  // plain connections, for CLUSTER SHARDS
  std::array<Node*, kSlots> owners_{};
  // The owners as the last read of the map gave them (owners_ also learns from MOVED).
  std::array<Node*, kSlots> read_owners_{};
  bool read_once_ = false;
  std::function<void(const std::vector<std::uint16_t>&)> on_owner_change_;
  struct Subscription {
    std::string channel;
    std::function<void(std::string_view)> on_message;
    SetupStep before;
  };
  std::optional<Subscription> subscription_;
  std::vector<std::unique_ptr<Client>> subscribers_;  // one per node that is a primary
  bool refreshing_ = false;
  bool refresh_again_ = false;
  bool refresh_scheduled_ = false;
  std::chrono::steady_clock::time_point last_refresh_{};
  std::size_t refresh_turn_ = 0;  // which known node is asked for the map next
  bool stopped_ = true;
  std::atomic<bool> ready_ = false;
  // Written by this loop only, read by any thread.
  metrics::Cell moved_, asked_, tried_again_;
  boost::asio::steady_timer ready_timer_;
  boost::asio::steady_timer periodic_timer_;  // the map read every refresh_interval
  boost::asio::steady_timer soon_timer_;      // a read put off by min_refresh_gap
  // Every timer's handler holds a weak pointer to this: one that runs after the client
  // is gone (a wait already queued when it was destroyed) touches nothing; a command
  // paused then fails instead.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

}  // namespace cartd::redis
