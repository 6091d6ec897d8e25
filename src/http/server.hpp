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
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/reply.hpp"

namespace cartd::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Verb = boost::beast::http::verb;

struct ServerLimits {
  std::size_t max_body_bytes = 16 * 1024;
  std::size_t max_header_bytes = 8 * 1024;
  std::chrono::seconds idle_timeout{30};
  // Origins whose pages may call the API from a browser (CORS); "*" allows any. Empty:
  // only pages served by cartd itself (same origin).
  std::vector<std::string> cors_origins;
};

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

// The {name} segments of a matched route, in order.
using PathParams = std::vector<std::string>;
using Handler = std::function<void(const Request&, const PathParams&, Respond)>;

// Routes by method and path. A pattern is a path whose segments may be `{name}`,
// which matches one non-empty, percent-decoded segment.
class Router {
 public:
  void add(Verb verb, std::string_view pattern, Handler handler);
  // Answers 404 for an unknown path and 405 for a known path with another method.
  void dispatch(const Request& req, Respond respond) const;

 private:
  struct Route {
    Verb verb;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

// The connections of one listener, so that a shutdown can wait for them.
struct OpenConnections;

// Accepts connections on one loop and serves them with `router`. Lives as long as the
// loop runs; the router must outlive it.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
           const Router& router, const ServerLimits& limits);
  void start();
  // Graceful stop: accepts no more connections, closes the idle ones, lets each busy one
  // finish its answer (sent with Connection: close), and calls done() when none is left
  // or `grace` has passed, whichever comes first.
  void drain(std::chrono::milliseconds grace, std::function<void()> done);

 private:
  void do_accept();
  void wait_drained(std::chrono::steady_clock::time_point until, std::function<void()> done);
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  const Router& router_;
  const ServerLimits& limits_;
  std::shared_ptr<OpenConnections> open_;
};

}  // namespace cartd::http
