// server: HTTP/1.1 with keep-alive on Boost.Beast, one acceptor per event loop.
//
// Each loop binds its own acceptor to the same address with SO_REUSEPORT, so the
// kernel spreads connections over loops and a connection never leaves its loop: the
// handlers, the loop's Redis connection and the socket share one thread and no locks.
// Every connection has limits (header and body size, idle time); a request over a
// limit is answered with its status code and the connection is closed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/limits.hpp"
#include "http/reply.hpp"
#include "metrics/metrics.hpp"

namespace cartd::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Verb = boost::beast::http::verb;

// The CORS answer headers for a request from `origin`, or none if it is not allowed.
std::vector<std::pair<std::string, std::string>> cors_headers(const ServerLimits& limits,
                                                              std::string_view origin);

// A request head cartd refuses before routing it: its answer, and whether the connection
// must close after it (when the body's length is in doubt, the bytes after the head must
// never be read as another request).
struct HeadRejection {
  unsigned status = 400;
  std::string_view code;
  std::string message;
  bool close = false;
};

// Checks what Beast's parser lets through but RFC 9112 forbids or cartd does not do: a
// Transfer-Encoding other than exactly `chunked` (400 when chunked is not the final
// coding, 501 for any other coding), Transfer-Encoding with Content-Length or in
// HTTP/1.0 (400), an HTTP/1.1 request without exactly one Host (400), a method Beast
// does not know (501).
[[nodiscard]] std::optional<HeadRejection> check_request_head(const Request& req);

// Every answer carries an X-Request-Id: the request's own when it is one of these (1 to
// kMaxRequestIdLength visible ASCII characters, so that it is safe in a header and a log
// line and cannot bloat either), else one cartd makes. It is logged with the request, so a
// client's or a proxy's id finds cartd's log line.
inline constexpr std::size_t kMaxRequestIdLength = 128;
[[nodiscard]] bool is_acceptable_request_id(std::string_view id);

// A W3C traceparent is logged with its request when it is at most this long and visible
// ASCII (version 00 is 55 characters; later versions may add fields); cartd does not trace.
inline constexpr std::size_t kMaxTraceparentLength = 256;

// The {name} segments of a matched route, in order.
using PathParams = std::vector<std::string>;
using Handler = std::function<void(const Request&, const PathParams&, Respond)>;

// Routes by method and path. A pattern is a path whose segments may be `{name}`,
// which matches one non-empty, percent-decoded segment.
class Router {
 public:
  void add(Verb verb, std::string_view pattern, Handler handler);
  // Answers 404 for an unknown path and 405 for a known path with another method.
  // `matched` is set, before the handler runs, to the index in patterns() of the route
  // whose path matched, or to patterns().size() when none did.
  void dispatch(const Request& req, Respond respond, std::size_t& matched) const;
  void dispatch(const Request& req, Respond respond) const {
    std::size_t matched = 0;
    dispatch(req, std::move(respond), matched);
  }
  // Every distinct pattern, in the order first added: the bounded set of route labels
  // of the metrics (never the raw path).
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  struct Route {
    Verb verb;
    std::vector<std::string> segments;
    std::size_t pattern;  // index in patterns_
    Handler handler;
  };
  std::vector<Route> routes_;
  std::vector<std::string> patterns_;
};

// The connection cap the open-file limit allows when `reserved` descriptors are kept for
// everything that is not a client connection (Redis, the main DB, the loops, logs). The
// reserve is at most half the limit, so a tiny limit still serves some clients.
[[nodiscard]] std::size_t max_connections_for(std::size_t open_file_limit, std::size_t reserved);

// Lets a warning that may repeat many times a second (accept failing with no descriptors
// left, say) through at most once per `interval`, counting the ones it holds back, so a
// flood of the same failure cannot flood the log.
class WarningThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  explicit WarningThrottle(Clock::duration interval) : interval_(interval) {}
  // Whether to log a warning at `now`: if so, how many were held back since the last one.
  [[nodiscard]] std::optional<std::size_t> admit(Clock::time_point now);

 private:
  Clock::duration interval_;
  std::optional<Clock::time_point> last_;
  std::size_t held_back_ = 0;
};

// Loop `index`'s share of `max_connections` over `loops` loops; the shares add up to it.
// Each loop keeps to its own share, so that the cap needs no lock and a loop makes room
// among its own connections (a connection never leaves its loop). The kernel spreads new
// connections evenly over the loops' acceptors (SO_REUSEPORT), so the shares fill evenly.
[[nodiscard]] std::size_t connection_share(std::size_t max_connections, std::size_t loops,
                                           std::size_t index);

// One warning that may repeat many times a second from any loop, logged through one
// WarningThrottle (at most once a second, with the count of the ones held back).
class ThrottledWarning {
 public:
  ThrottledWarning();
  void warn(const std::string& what);

 private:
  std::mutex mutex_;  // loops warn from their own threads
  WarningThrottle throttle_;
};

// The connections of one listener, so that a shutdown can wait for them and a full
// listener can close the ones that have waited longest.
struct OpenConnections;

// Accepts connections on one loop and serves them with `router`, at most
// `max_connections` at once. Lives as long as the loop runs; the router and the limits
// must outlive it. At the cap, a new connection makes room by closing this loop's
// longest-idle connection (one waiting for a request that has not begun); only when
// every one is busy is the new one refused (503). `warnings` is shared by the listeners
// of every loop.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
           const Router& router, const ServerLimits& limits, std::size_t max_connections,
           std::shared_ptr<ThrottledWarning> warnings, metrics::Shard* metrics = nullptr);
  void start();
  // Graceful stop: accepts no more connections, closes the idle ones, lets each busy one
  // finish its answer (sent with Connection: close), and calls done() when none is left
  // or `grace` has passed, whichever comes first.
  void drain(std::chrono::milliseconds grace, std::function<void()> done);

 private:
  void do_accept();
  void on_accept(boost::system::error_code ec, boost::asio::ip::tcp::socket socket);
  // Closes the connection that has waited longest for a request that has not begun.
  // Returns false when no connection of this loop is idle.
  bool shed_idle();
  void wait_drained(std::chrono::steady_clock::time_point until, std::function<void()> done);
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  const Router& router_;
  const ServerLimits& limits_;
  const std::size_t max_connections_;
  std::shared_ptr<ThrottledWarning> warnings_;
  std::shared_ptr<OpenConnections> open_;
  metrics::Shard* metrics_;  // this loop's counts; none in tests that serve without them
};

}  // namespace cartd::http
