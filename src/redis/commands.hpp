// commands: what the services need of Redis, whatever it is: one standalone connection
// (Client) or a Redis Cluster routed by slot (ClusterClient).
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "redis/reply.hpp"

namespace cartd::redis {

using ReplyHandler = std::function<void(Result)>;

// What a Redis Cluster answered instead of a reply (ClusterClient), for the metrics: MOVED
// (a slot had a new owner), ASK and TRYAGAIN (a slot was moving). A standalone Redis
// answers none.
struct Redirects {
  std::uint64_t moved = 0;
  std::uint64_t ask = 0;
  std::uint64_t try_again = 0;
  Redirects& operator+=(const Redirects& o) {
    moved += o.moved;
    ask += o.ask;
    try_again += o.try_again;
    return *this;
  }
};

class Commands {
 public:
  virtual ~Commands() = default;
  // Connects (and keeps reconnecting) / disconnects, on the connection's loop.
  virtual void start() = 0;
  virtual void stop() = 0;
  // Sends one command. The handler runs on the connection's loop, exactly once; while
  // Redis is not ready it runs at once with Errc::unavailable.
  virtual void command(std::span<const std::string_view> args, ReplyHandler handler) = 0;
  void command(std::initializer_list<std::string_view> args, ReplyHandler handler) {
    command(std::span(args.begin(), args.size()), std::move(handler));
  }
  // Sends a command that names no key (WAIT) on the connection to the node that holds
  // `key`: on a standalone Redis, the one connection.
  virtual void command_near(std::string_view key, std::span<const std::string_view> args,
                            ReplyHandler handler) {
    (void)key;
    command(args, std::move(handler));
  }
  // Splits `keys` by the node that holds them, as this client knows the cluster now: one
  // part per node (a standalone Redis: one part), each the positions in `keys` of that
  // node's keys, in order. Keys whose slot has no known owner share a part (a command
  // sent near them fails at once, as to a node that is down).
  virtual std::vector<std::vector<std::size_t>> by_node(std::span<const std::string> keys) const {
    std::vector<std::size_t> all(keys.size());
    std::iota(all.begin(), all.end(), std::size_t{0});
    return {std::move(all)};
  }
  // Safe to call from any thread.
  virtual bool ready() const = 0;
  // Safe to call from any thread.
  virtual Redirects redirects_seen() const { return {}; }
  // The loop the handlers run on (for the callers' own timers).
  virtual boost::asio::io_context& context() = 0;
};

// Sends a command whose arguments the caller owns (built as strings).
inline void send(Commands& redis, const std::vector<std::string>& owned, ReplyHandler handler) {
  std::vector<std::string_view> args(owned.begin(), owned.end());
  redis.command(std::span<const std::string_view>(args), std::move(handler));
}

}  // namespace cartd::redis
