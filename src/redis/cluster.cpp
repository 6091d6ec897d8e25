#include "redis/cluster.hpp"

#include <spdlog/spdlog.h>

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

std::vector<Shard> parse_shards(const Reply& reply) {
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
    bool found = false;
    for (const Reply& n : nodes->elements) {
      const Reply* role = field(n, "role");
      const Reply* health = field(n, "health");
      if (role == nullptr || role->str != "master" || health == nullptr ||
          health->str != "online") {
        continue;
      }
      const Reply* ip = field(n, "ip");
      if (ip == nullptr) ip = field(n, "endpoint");
      const Reply* port = field(n, "port");
      const Reply* id = field(n, "id");
      if (ip == nullptr || port == nullptr) continue;
      shard.primary.host = ip->str;
      shard.primary.port = static_cast<int>(port->integer);
      if (id != nullptr) shard.primary_id = id->str;
      found = true;
      break;
    }
    if (found && !shard.slots.empty()) shards.push_back(std::move(shard));
  }
  return shards;
}

// One command on its way: its own copy of the arguments, so it can be sent again.
struct ClusterClient::Call {
  std::vector<std::string> args;
  ReplyHandler handler;
  std::optional<std::uint16_t> slot;
  int redirects = 0;
  bool asking = false;  // the next send goes to ask_target, after ASKING
  Endpoint ask_target;

  std::vector<std::string_view> views() const { return {args.begin(), args.end()}; }
};

ClusterClient::ClusterClient(boost::asio::io_context& io, Options options)
    : io_(io), options_(std::move(options)), refresh_timer_(io), ready_timer_(io) {}

ClusterClient::~ClusterClient() {
  stop();
}

void ClusterClient::start() {
  if (!stopped_) return;
  stopped_ = false;
  for (const Endpoint& seed : options_.seeds) {
    Client::Options o;
    o.endpoint = seed;
    o.endpoint.db = 0;
    o.command_timeout = options_.node.command_timeout;
    o.max_backoff = options_.node.max_backoff;
    o.name = options_.node.name + "-topology";
    auto c = std::make_unique<Client>(io_, std::move(o));
    c->start();
    seeds_.push_back(std::move(c));
  }
  refresh();
  arm_refresh_timer();
}

void ClusterClient::stop() {
  if (stopped_) return;
  stopped_ = true;
  ready_ = false;
  refresh_timer_.cancel();
  ready_timer_.cancel();
  for (auto& s : seeds_) s->stop();
  for (auto& n : nodes_) n->client->stop();
}

void ClusterClient::arm_refresh_timer() {
  // Ready is looked at often (a node's connection may drop or come back at any time);
  // the map is read every refresh_interval.
  ready_timer_.expires_after(100ms);
  ready_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) return;
    update_ready();
    arm_refresh_timer();
  });
  if (refresh_timer_.expiry() <= std::chrono::steady_clock::now()) {
    refresh_timer_.expires_after(options_.refresh_interval);
    refresh_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped_) return;
      refresh();
    });
  }
}

ClusterClient::Node& ClusterClient::node_for(const Endpoint& e) {
  for (auto& n : nodes_) {
    if (same_node(n->endpoint, e)) return *n;
  }
  auto node = std::make_unique<Node>();
  node->endpoint = e;
  Client::Options o = options_.node;
  o.endpoint.host = e.host;
  o.endpoint.port = e.port;
  o.endpoint.db = 0;  // a cluster has database 0 only
  node->client = std::make_unique<Client>(io_, std::move(o));
  if (!stopped_) node->client->start();
  nodes_.push_back(std::move(node));
  return *nodes_.back();
}

ClusterClient::Node* ClusterClient::owner(std::uint16_t slot) {
  return owners_[slot];
}

Client* ClusterClient::any_ready() {
  for (auto& n : nodes_) {
    if (n->client->ready()) return n->client.get();
  }
  for (auto& s : seeds_) {
    if (s->ready()) return s.get();
  }
  return nullptr;
}

void ClusterClient::refresh() {
  if (stopped_) return;
  if (refreshing_) {
    refresh_again_ = true;
    return;
  }
  Client* via = any_ready();
  if (via == nullptr) {
    // Nothing is connected yet: try again shortly.
    refresh_timer_.expires_after(50ms);
    refresh_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped_) return;
      refresh();
    });
    return;
  }
  refreshing_ = true;
  ++refreshes_;
  via->command({"CLUSTER", "SHARDS"}, [this](Result r) {
    refreshing_ = false;
    if (stopped_) return;
    if (r && !r->is_error()) {
      apply(parse_shards(*r));
    } else {
      spdlog::warn("redis cluster: CLUSTER SHARDS failed: {}", r ? r->str : r.error().message());
    }
    bool again = std::exchange(refresh_again_, false);
    refresh_timer_.expires_after(again ? 20ms : options_.refresh_interval);
    refresh_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopped_) return;
      refresh();
    });
  });
}

void ClusterClient::apply(const std::vector<Shard>& shards) {
  for (const Shard& shard : shards) {
    Node& node = node_for(shard.primary);
    for (auto [first, last] : shard.slots) {
      for (std::uint32_t s = first; s <= last && s < kSlots; ++s) owners_[s] = &node;
    }
  }
  update_ready();
}

void ClusterClient::update_ready() {
  bool ok = !stopped_;
  for (std::size_t s = 0; ok && s < kSlots; ++s) {
    ok = owners_[s] != nullptr && owners_[s]->client->ready();
  }
  ready_ = ok;
}

std::vector<Shard> ClusterClient::shards() const {
  std::vector<Shard> out;
  const Node* current = nullptr;
  for (std::size_t s = 0; s < kSlots; ++s) {
    const Node* n = owners_[s];
    if (n == nullptr) {
      current = nullptr;
      continue;
    }
    if (n != current) {
      Shard* shard = nullptr;
      for (auto& existing : out) {
        if (same_node(existing.primary, n->endpoint)) shard = &existing;
      }
      if (shard == nullptr) {
        out.push_back(Shard{{}, n->endpoint, {}});
        shard = &out.back();
      }
      shard->slots.emplace_back(static_cast<std::uint16_t>(s), static_cast<std::uint16_t>(s));
      current = n;
    } else {
      for (auto& existing : out) {
        if (same_node(existing.primary, n->endpoint)) existing.slots.back().second = s;
      }
    }
  }
  return out;
}

void ClusterClient::command(std::span<const std::string_view> args, ReplyHandler handler) {
  auto call = std::make_shared<Call>();
  call->args.assign(args.begin(), args.end());
  call->handler = std::move(handler);
  call->slot = command_slot(args);
  dispatch(std::move(call));
}

void ClusterClient::command_at(std::uint16_t slot, std::span<const std::string_view> args,
                               ReplyHandler handler) {
  auto call = std::make_shared<Call>();
  call->args.assign(args.begin(), args.end());
  call->handler = std::move(handler);
  call->slot = slot;
  dispatch(std::move(call));
}

void ClusterClient::dispatch(std::shared_ptr<Call> call) {
  Client* client = nullptr;
  if (call->asking) {
    client = node_for(call->ask_target).client.get();
  } else if (call->slot) {
    if (Node* n = owner(*call->slot)) client = n->client.get();
  } else {
    client = any_ready();
  }
  if (client == nullptr || !client->ready()) {
    // No owner known, or its connection is down (a primary that died, before the
    // cluster has promoted its replica): fail now, as a standalone Redis that is down.
    refresh();
    call->handler(Errc::unavailable);
    return;
  }
  auto args = call->views();
  if (call->asking) {
    call->asking = false;
    // ASKING holds for the next command on this connection only; both leave in order.
    client->command({"ASKING"}, [](Result) {});
  }
  client->command(std::span<const std::string_view>(args),
                  [this, call](Result r) mutable { on_reply(std::move(call), std::move(r)); });
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
  bool try_again = error.starts_with("TRYAGAIN");
  if (error.starts_with("CLUSTERDOWN")) {
    refresh();
    call->handler(Errc::unavailable);
    return;
  }
  if (!moved && !ask && !try_again) {
    call->handler(std::move(r));
    return;
  }
  if (++call->redirects > options_.max_redirects || stopped_) {
    call->handler(std::move(r));
    return;
  }
  ++redirects_;
  if (try_again) {
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, options_.try_again_pause);
    timer->async_wait([this, call, timer,
                       alive = std::weak_ptr<int>(alive_)](boost::system::error_code ec) mutable {
      if (ec || alive.expired() || stopped_) {
        call->handler(Errc::unavailable);
        return;
      }
      dispatch(std::move(call));
    });
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
  if (!target) {
    call->handler(std::move(r));
    return;
  }
  if (moved) {
    owners_[slot] = &node_for(*target);
    refresh();
  } else {
    call->ask_target = *target;
    call->asking = true;
  }
  send_when_ready(std::move(call), node_for(*target).client.get(),
                  std::chrono::steady_clock::now() + options_.node.command_timeout);
}

void ClusterClient::send_when_ready(std::shared_ptr<Call> call, Client* client,
                                    std::chrono::steady_clock::time_point deadline) {
  // A node this client has just learned of connects first (a few ms on a LAN).
  if (stopped_ || client->ready() || std::chrono::steady_clock::now() >= deadline) {
    dispatch(std::move(call));
    return;
  }
  auto timer = std::make_shared<boost::asio::steady_timer>(io_, 5ms);
  timer->async_wait([this, call, client, deadline, timer,
                     alive = std::weak_ptr<int>(alive_)](boost::system::error_code) mutable {
    if (alive.expired()) {
      call->handler(Errc::unavailable);
      return;
    }
    send_when_ready(std::move(call), client, deadline);
  });
}

}  // namespace cartd::redis
