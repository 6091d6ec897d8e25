#include "redis/cluster.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <charconv>

namespace cartd::redis {
namespace {

using namespace std::chrono_literals;

// A flat RESP2 map ["key", value, ...]: the value of `key`, or nullptr.
const Reply* field(const Reply& map, std::string_view key) {
  for (std::size_t i = 0; i + 1 < map.elements.size(); i += 2) {
    if (map.elements[i].str == key) return &map.elements[i + 1];
  }
  return nullptr;
}

std::optional<Endpoint> parse_host_port(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  Endpoint e;
  e.host = std::string(text.substr(0, colon));
  auto port = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), e.port);
  if (ec != std::errc{} || end != port.data() + port.size()) return std::nullopt;
  return e;
}

bool same_node(const Endpoint& a, const Endpoint& b) {
  return a.host == b.host && a.port == b.port;
}

}  // namespace

void encode_for_cluster(std::span<const std::string_view> args, std::string& out) {
  // FCALL only: a read-only call (FCALL_RO) writes nothing it could leave half done.
  std::size_t numkeys = args.empty() || args[0].size() != 5 ? 0 : function_keys(args).value_or(0);
  std::string_view tag = numkeys > 0 && numkeys <= args.size() - 3 ? hash_tag(args[3]) : "";
  if (tag.empty()) return encode_command(args, out);
  std::string count = std::to_string(numkeys + 1);
  std::string absent = std::string(tag) + "#absent";
  std::vector<std::string_view> fenced(args.begin(), args.end());
  fenced[2] = count;
  fenced.insert(fenced.begin() + static_cast<std::ptrdiff_t>(3 + numkeys), absent);
  encode_command(fenced, out);
}

std::vector<Shard> parse_shards(const Reply& reply, const std::string& answered_host) {
  std::vector<Shard> shards;
  for (const Reply& s : reply.elements) {
    const Reply* slots = field(s, "slots");
    const Reply* nodes = field(s, "nodes");
    if (slots == nullptr || nodes == nullptr) continue;
    Shard shard;
    for (std::size_t i = 0; i + 1 < slots->elements.size(); i += 2) {
      shard.slots.emplace_back(static_cast<std::uint16_t>(slots->elements[i].integer),
                               static_cast<std::uint16_t>(slots->elements[i + 1].integer));
    }
    for (const Reply& n : nodes->elements) {
      const Reply* role = field(n, "role");
      const Reply* health = field(n, "health");
      const Reply* port = field(n, "port");
      if (role == nullptr || role->str != "master" || health == nullptr ||
          health->str != "online" || port == nullptr) {
        continue;
      }
      std::string host;
      for (const char* name : {"endpoint", "ip"}) {
        const Reply* f = field(n, name);
        if (f != nullptr && !f->str.empty() && f->str != "?") {
          host = f->str;
          break;
        }
      }
      shard.primary.host = host.empty() ? answered_host : host;
      shard.primary.port = static_cast<int>(port->integer);
      if (const Reply* id = field(n, "id")) shard.primary_id = id->str;
      if (!shard.slots.empty()) shards.push_back(std::move(shard));
      break;
    }
  }
  return shards;
}

// One command on its way, in the protocol's form, kept so that it can be sent again.
struct ClusterClient::Call {
  std::string command;  // sent again as it is after MOVED, ASK or TRYAGAIN
  ReplyHandler handler;
  std::optional<std::uint16_t> slot;
  int redirects = 0;
  std::chrono::steady_clock::time_point give_up{};  // TRYAGAIN pauses end here
  // Set by MOVED and ASK: the next send goes to this node (after ASKING for ASK).
  std::optional<Endpoint> target;
  bool asking = false;
};

ClusterClient::ClusterClient(boost::asio::io_context& io, Options options)
    : io_(io),
      options_(std::move(options)),
      ready_timer_(io),
      periodic_timer_(io),
      soon_timer_(io) {}

ClusterClient::~ClusterClient() {
  stop();
}

template <typename F>
void ClusterClient::after(std::chrono::milliseconds delay, F f) {
  auto timer = std::make_shared<boost::asio::steady_timer>(io_, delay);
  timer->async_wait([timer, alive = std::weak_ptr<int>(alive_),
                     f = std::move(f)](boost::system::error_code) mutable { f(!alive.expired()); });
}

void ClusterClient::start() {
  if (!stopped_ || !seeds_.empty()) return;
  stopped_ = false;
  for (const Endpoint& seed : options_.seeds) {
    auto c = std::make_unique<Client>(io_, plain_options(seed, "-topology"));
    c->start();
    seeds_.push_back(std::move(c));
  }
  refresh();
  schedule_refresh();
  watch_ready();
}

void ClusterClient::stop() {
  if (stopped_) return;
  stopped_ = true;
  ready_ = false;
  ready_timer_.cancel();
  periodic_timer_.cancel();
  soon_timer_.cancel();
  for (auto& s : seeds_) s->stop();
  for (auto& n : nodes_) n->client->stop();
  for (auto& s : subscribers_) s->stop();
}

Endpoint ClusterClient::with_credentials(const Endpoint& e) const {
  Endpoint out = options_.seeds.empty() ? Endpoint{} : options_.seeds.front();
  out.host = e.host;
  out.port = e.port;
  out.db = 0;  // a cluster has database 0 only
  return out;
}

void ClusterClient::subscribe_all(std::string channel,
                                  std::function<void(std::string_view)> on_message,
                                  SetupStep before) {
  subscription_ = Subscription{std::move(channel), std::move(on_message), std::move(before)};
  ensure_subscribers();
}

Client::Options ClusterClient::plain_options(const Endpoint& e, const char* suffix) const {
  Client::Options o;
  o.endpoint = with_credentials(e);
  o.command_timeout = options_.node.command_timeout;
  o.max_backoff = options_.node.max_backoff;
  o.name = options_.node.name + suffix;
  return o;
}

std::vector<ClusterClient::Node*> ClusterClient::owning_nodes() const {
  std::vector<Node*> out;
  for (Node* n : owners_) {
    if (n != nullptr && (out.empty() || out.back() != n) &&
        std::find(out.begin(), out.end(), n) == out.end()) {
      out.push_back(n);
    }
  }
  return out;
}

void ClusterClient::ensure_subscribers() {
  if (!subscription_ || stopped_) return;
  for (const Node* n : owning_nodes()) {
    bool have = false;
    for (auto& s : subscribers_) have = have || same_node(s->endpoint(), n->endpoint);
    if (have) continue;
    Client::Options o = plain_options(n->endpoint, "-events");
    o.on_setup = [this](Client& c, std::function<void(bool)> done) {
      auto subscribe = [this, &c, done](bool ok) {
        c.subscribe(subscription_->channel, subscription_->on_message);
        done(ok);
      };
      if (subscription_->before) {
        subscription_->before(c, subscribe);
      } else {
        subscribe(true);
      }
    };
    auto c = std::make_unique<Client>(io_, std::move(o));
    c->start();
    subscribers_.push_back(std::move(c));
  }
}

std::size_t ClusterClient::subscribed() const {
  std::size_t n = 0;
  for (auto& s : subscribers_) n += s->ready() ? 1 : 0;
  return n;
}

void ClusterClient::watch_ready() {
  // A node's connection may drop or come back at any time: ready is looked at often.
  ready_timer_.expires_after(100ms);
  ready_timer_.async_wait([this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
    if (ec || alive.expired() || stopped_) return;
    update_ready();
    watch_ready();
  });
}

std::shared_ptr<ClusterClient::Node> ClusterClient::node_for(const Endpoint& e) {
  for (auto& n : nodes_) {
    if (same_node(n->endpoint, e)) return n;
  }
  auto node = std::make_shared<Node>();
  node->endpoint = e;
  Client::Options o = options_.node;
  o.endpoint = with_credentials(e);
  o.on_setup = [this, weak = std::weak_ptr<Node>(node), alive = std::weak_ptr<int>(alive_)](
                   Client& c, std::function<void(bool)> done) {
    auto n = weak.lock();
    if (alive.expired() || !n) return done(false);
    on_node_connect(n, c, std::move(done));
  };
  node->client = std::make_unique<Client>(io_, std::move(o));
  if (!stopped_) node->client->start();
  nodes_.push_back(node);
  return node;
}

void ClusterClient::on_node_connect(const std::shared_ptr<Node>& node, Client& c,
                                    std::function<void(bool)> done) {
  c.setup_command({"INFO", "server"},
                  [this, weak = std::weak_ptr<Node>(node), &c, alive = std::weak_ptr<int>(alive_),
                   done = std::move(done)](Result r) mutable {
                    auto n = weak.lock();
                    if (alive.expired() || !n) return done(false);
                    std::string run_id;
                    if (r && !r->is_error()) {
                      auto at = r->str.find("run_id:");
                      if (at != std::string::npos) {
                        run_id = r->str.substr(at + 7, r->str.find_first_of("\r\n", at) - at - 7);
                      }
                    }
                    // The same address, another server: it restarted (its slots may be empty). A
                    // read that failed keeps the run_id known before.
                    std::string before = run_id.empty() ? run_id : std::exchange(n->run_id, run_id);
                    if (!before.empty() && before != run_id && on_owner_change_) {
                      std::vector<std::uint16_t> slots;
                      for (std::uint16_t s = 0; s < kSlots; ++s) {
                        if (read_owners_[s] == n.get()) slots.push_back(s);
                      }
                      spdlog::warn("redis cluster: {}:{} restarted ({} slots)", n->endpoint.host,
                                   n->endpoint.port, slots.size());
                      if (!slots.empty()) on_owner_change_(slots);
                    }
                    if (options_.node.on_setup) return options_.node.on_setup(c, std::move(done));
                    done(true);
                  });
}

void ClusterClient::forget_unowned() {
  auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Node>> gone;
  std::vector<std::unique_ptr<Client>> gone_subscribers;
  const std::vector<Node*> owning = owning_nodes();
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    Node& n = **it;
    bool owns = std::find(owning.begin(), owning.end(), &n) != owning.end();
    if (owns) {
      n.unowned_since = {};
    } else if (n.unowned_since == std::chrono::steady_clock::time_point{}) {
      n.unowned_since = now;
    } else if (now - n.unowned_since >= options_.forget_after) {
      spdlog::info("redis cluster: {}:{} owns no slots; its connections are closed",
                   n.endpoint.host, n.endpoint.port);
      for (auto s = subscribers_.begin(); s != subscribers_.end();) {
        if (same_node((*s)->endpoint(), n.endpoint)) {
          gone_subscribers.push_back(std::move(*s));
          s = subscribers_.erase(s);
        } else {
          ++s;
        }
      }
      gone.push_back(std::move(*it));
      it = nodes_.erase(it);
      continue;
    }
    ++it;
  }
  if (gone.empty()) return;
  // Stopped on the next turn: stopping fails the commands in flight, whose handlers may
  // send more, and must not run while the map is being read. Destroyed a turn later
  // still: a timer of theirs that had already fired when they stopped has its handler
  // queued, and it must find them alive (an ASan run caught one that did not).
  boost::asio::post(io_, [&io = io_, gone = std::move(gone),
                          subscribers = std::move(gone_subscribers)]() mutable {
    for (auto& n : gone) n->client->stop();
    for (auto& s : subscribers) s->stop();
    boost::asio::post(io, [gone = std::move(gone), subscribers = std::move(subscribers)] {});
  });
}

Client* ClusterClient::any_owner_ready() {
  for (Node* n : owning_nodes()) {
    if (n->client->ready()) return n->client.get();
  }
  return nullptr;
}

void ClusterClient::refresh() {
  if (stopped_) return;
  if (refreshing_ || refresh_scheduled_) {
    refresh_again_ = true;
    return;
  }
  auto now = std::chrono::steady_clock::now();
  auto wait = last_refresh_ + options_.min_refresh_gap - now;
  // Asked in turn, so one node with a stale view is not asked again and again. The
  // owners of the map are asked first: a primary that was replaced and restarts comes
  // back claiming its old slots (with its old data, or none) until its peers correct it,
  // and a map read from it would send commands there. Other nodes and the seeds are asked
  // only when no owner answers (at start, or when the owners are all down).
  std::vector<Client*> known;
  for (Node* n : owning_nodes()) {
    if (n->client->ready()) known.push_back(n->client.get());
  }
  if (known.empty()) {
    for (auto& n : nodes_) {
      if (n->client->ready()) known.push_back(n->client.get());
    }
    for (auto& c : seeds_) {
      if (c->ready()) known.push_back(c.get());
    }
  }
  if (wait > std::chrono::steady_clock::duration::zero() || known.empty()) {
    // Too soon after the last read, or nothing connected yet: read shortly.
    refresh_scheduled_ = true;
    auto delay =
        known.empty() ? 50ms : std::chrono::duration_cast<std::chrono::milliseconds>(wait) + 1ms;
    soon_timer_.expires_after(delay);
    soon_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
          if (ec || alive.expired()) return;
          refresh_scheduled_ = false;
          refresh_again_ = false;
          refresh();
        });
    return;
  }
  Client* via = known[refresh_turn_++ % known.size()];
  refreshing_ = true;
  last_refresh_ = now;
  via->command({"CLUSTER", "SHARDS"}, [this, host = via->endpoint().host,
                                       alive = std::weak_ptr<int>(alive_)](Result r) {
    if (alive.expired()) return;
    refreshing_ = false;
    if (stopped_) return;
    if (r && !r->is_error()) {
      apply(parse_shards(*r, host));
    } else {
      spdlog::warn("redis cluster: CLUSTER SHARDS failed: {}", r ? r->str : r.error().message());
    }
    if (std::exchange(refresh_again_, false)) refresh();
  });
}

void ClusterClient::schedule_refresh() {
  // The map is read every refresh_interval even when nothing says it changed.
  periodic_timer_.expires_after(options_.refresh_interval);
  periodic_timer_.async_wait(
      [this, alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) {
        if (ec || alive.expired() || stopped_) return;
        refresh();
        schedule_refresh();
      });
}

void ClusterClient::apply(const std::vector<Shard>& shards) {
  // Rebuilt whole: a slot no shard claims has no owner (its commands fail, and ask for
  // another read) rather than a stale one.
  owners_.fill(nullptr);
  for (const Shard& shard : shards) {
    Node* node = node_for(shard.primary).get();
    for (auto [first, last] : shard.slots) {
      for (std::uint32_t s = first; s <= last && s < kSlots; ++s) owners_[s] = node;
    }
  }
  std::vector<std::uint16_t> changed;
  for (std::uint16_t s = 0; s < kSlots; ++s) {
    if (owners_[s] != nullptr && owners_[s] != read_owners_[s]) changed.push_back(s);
  }
  read_owners_ = owners_;
  forget_unowned();
  ensure_subscribers();
  update_ready();
  if (std::exchange(read_once_, true) && !changed.empty() && on_owner_change_) {
    on_owner_change_(changed);
  }
}

void ClusterClient::update_ready() {
  bool ok = !stopped_;
  for (std::size_t s = 0; ok && s < kSlots; ++s) {
    ok = owners_[s] != nullptr && owners_[s]->client->ready();
  }
  ready_ = ok;
}

void ClusterClient::command(std::span<const std::string_view> args, ReplyHandler handler) {
  send_to_slot(command_slot(args), args, std::move(handler));
}

void ClusterClient::command_near(std::string_view key, std::span<const std::string_view> args,
                                 ReplyHandler handler) {
  send_to_slot(key_slot(key), args, std::move(handler));
}

std::vector<std::vector<std::size_t>> ClusterClient::by_node(
    std::span<const std::string> keys) const {
  std::vector<std::vector<std::size_t>> parts;
  std::vector<const Node*> part_node;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const Node* owner = owners_[key_slot(keys[i])];
    auto known = std::find(part_node.begin(), part_node.end(), owner);
    if (known == part_node.end()) {
      part_node.push_back(owner);
      parts.push_back({i});
    } else {
      parts[static_cast<std::size_t>(known - part_node.begin())].push_back(i);
    }
  }
  return parts;
}

void ClusterClient::send_to_slot(std::optional<std::uint16_t> slot,
                                 std::span<const std::string_view> args, ReplyHandler handler) {
  auto call = std::make_shared<Call>();
  encode_for_cluster(args, call->command);
  call->handler = std::move(handler);
  call->slot = slot;
  dispatch(std::move(call));
}

void ClusterClient::dispatch(std::shared_ptr<Call> call) {
  Client* client = nullptr;
  if (auto target = std::exchange(call->target, std::nullopt)) {
    client = node_for(*target)->client.get();
  } else if (call->slot) {
    if (Node* n = owners_[*call->slot]) client = n->client.get();
  } else {
    client = any_owner_ready();
  }
  if (client == nullptr || !client->ready()) {
    // No owner known, or its connection is down (a primary that died, before the
    // cluster has promoted its replica): fail now, as a standalone Redis that is down.
    refresh();
    call->handler(Errc::unavailable);
    return;
  }
  if (std::exchange(call->asking, false)) {
    // ASKING holds for the next command on this connection only; both leave in order.
    client->command({"ASKING"}, [](Result) {});
  }
  std::string_view command = call->command;
  client->command_encoded(command,
                          [this, call, alive = std::weak_ptr<int>(alive_)](Result r) mutable {
                            // A connection closed after this client is gone fails its
                            // commands.
                            if (alive.expired()) return call->handler(std::move(r));
                            on_reply(std::move(call), std::move(r));
                          });
}

void ClusterClient::on_reply(std::shared_ptr<Call> call, Result r) {
  if (!r || !r->is_error()) {
    if (!r && r.error() == Errc::disconnected) refresh();
    call->handler(std::move(r));
    return;
  }
  std::string_view error = r->str;
  bool moved = error.starts_with("MOVED ");
  bool ask = error.starts_with("ASK ");
  if (error.starts_with("CLUSTERDOWN") || error.starts_with("LOADING")) {
    refresh();
    call->handler(Errc::unavailable);
    return;
  }
  if (error.starts_with("TRYAGAIN")) {
    auto now = std::chrono::steady_clock::now();
    if (call->give_up == std::chrono::steady_clock::time_point{}) {
      call->give_up = now + options_.node.command_timeout;
    }
    if (now >= call->give_up || stopped_) {
      call->handler(Errc::unavailable);
      return;
    }
    tried_again_.add();
    // A slot in migration answers ASK, then its target TRYAGAIN, until the slot has moved:
    // the pauses are bounded by the timeout, so the ASKs between them are not counted.
    call->redirects = 0;
    after(options_.try_again_pause, [this, call](bool alive) mutable {
      if (!alive || stopped_) {
        call->handler(Errc::unavailable);
        return;
      }
      dispatch(std::move(call));
    });
    return;
  }
  if (!moved && !ask) {
    call->handler(std::move(r));
    return;
  }
  // "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381"
  auto rest = error.substr(error.find(' ') + 1);
  auto space = rest.find(' ');
  std::optional<Endpoint> target;
  std::uint16_t slot = 0;
  if (space != std::string_view::npos) {
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + space, slot);
    if (ec == std::errc{} && slot < kSlots) target = parse_host_port(rest.substr(space + 1));
  }
  if (!target || ++call->redirects > options_.max_redirects || stopped_) {
    call->handler(Errc::unavailable);
    return;
  }
  (moved ? moved_ : asked_).add();
  if (target->host.empty() || target->host == "?") {
    // The node does not know its address: it is where the one that answered found it.
    if (call->slot && owners_[*call->slot]) target->host = owners_[*call->slot]->endpoint.host;
  }
  auto to = node_for(*target);
  if (moved) {
    // Learnt at once for the commands that follow; the whole map is read again too.
    owners_[slot] = to.get();
    call->slot = slot;
    refresh();
  }
  call->target = to->endpoint;
  call->asking = ask;
  send_when_ready(std::move(call), std::move(to),
                  std::chrono::steady_clock::now() + options_.node.command_timeout);
}

void ClusterClient::send_when_ready(std::shared_ptr<Call> call, std::shared_ptr<Node> node,
                                    std::chrono::steady_clock::time_point deadline) {
  // A node this client has just learned of connects first (a few ms on a LAN).
  if (stopped_ || node->client->ready() || std::chrono::steady_clock::now() >= deadline) {
    dispatch(std::move(call));
    return;
  }
  after(5ms, [this, call, node, deadline](bool alive) mutable {
    if (!alive) {
      call->handler(Errc::unavailable);
      return;
    }
    send_when_ready(std::move(call), std::move(node), deadline);
  });
}

}  // namespace cartd::redis
