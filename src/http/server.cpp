#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/url/parse.hpp>
#include <optional>
#include <unordered_set>

namespace cartd::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// After refusing a request whose body was not read (413, 431, 400), the connection reads
// and drops what the client still sends, for at most this long and this much, before it
// closes. Closing at once would reset the connection, and the client could lose the
// answer while it is still writing (as nginx's lingering_close avoids too).
constexpr std::chrono::seconds kLingerTime{2};
constexpr std::size_t kLingerBytes = 4 << 20;

constexpr std::chrono::milliseconds kDrainPoll{50};
// CORS: what a page from an allowed origin may send and read, and how long a browser
// may cache the preflight answer.
constexpr std::string_view kCorsMethods = "GET, POST, PUT, DELETE, OPTIONS";
constexpr std::string_view kCorsRequestHeaders =
    "Content-Type, cart-session-id, Idempotency-Key, Authorization";
constexpr std::string_view kCorsExposedHeaders = "cart-session-id, Location, Retry-After";
constexpr std::string_view kCorsMaxAgeSeconds = "600";
constexpr std::chrono::milliseconds kAcceptRetry{100};

class Connection;

}  // namespace

struct OpenConnections {
  bool draining = false;
  std::unordered_set<Connection*> all;
};

namespace {

// One keep-alive connection: read a request, hand it to the router, write the answer,
// read the next. The object keeps itself alive through the handlers it has pending.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const Router& router, const ServerLimits& limits,
             std::shared_ptr<OpenConnections> open)
      : stream_(std::move(socket)), router_(router), limits_(limits), open_(std::move(open)) {
    open_->all.insert(this);
  }
  ~Connection() { open_->all.erase(this); }

  void start() { do_read(); }

  // Closes the connection if it waits for a request that has not begun; a connection
  // in the middle of one finishes it (it sees `draining` when it answers).
  void close_if_idle() {
    if (idle_ && buffer_.size() == 0) close();
  }

 private:
  void do_read() {
    idle_ = true;
    parser_.emplace();
    parser_->body_limit(limits_.max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    stream_.expires_after(limits_.idle_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Connection::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    idle_ = false;
    if (ec) {
      if (ec == bhttp::error::body_limit) {
        return refuse(413, "payload_too_large",
                      "the request body is larger than the limit of " +
                          std::to_string(limits_.max_body_bytes) + " bytes");
      }
      if (ec == bhttp::error::header_limit) {
        return refuse(431, "headers_too_large",
                      "the request headers are larger than the limit of " +
                          std::to_string(limits_.max_header_bytes) + " bytes");
      }
      if (ec.category() == beast::error_code(bhttp::error::end_of_stream).category() &&
          ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
        return refuse(400, "bad_request", "the request is not valid HTTP/1.1");
      }
      return close();  // end of stream, idle timeout, reset: nothing to answer
    }
    keep_alive_ = parser_->get().keep_alive() && !open_->draining;
    head_only_ = parser_->get().method() == bhttp::verb::head;
    const Request& req = parser_->get();
    cors_.clear();
    if (auto origin = req.find(bhttp::field::origin); origin != req.end()) {
      cors_ = cors_headers(limits_, origin->value());
    }
    if (auto rejection = check_request_head(req)) {
      if (rejection->close) {
        return refuse(rejection->status, rejection->code, std::move(rejection->message));
      }
      return write(error_response(rejection->status, rejection->code, rejection->message));
    }
    if (req.method() == bhttp::verb::options &&
        req.find(bhttp::field::access_control_request_method) != req.end()) {
      return write(preflight());
    }
    // A handler waiting on Redis has its own timeout; the idle timer restarts on write.
    stream_.expires_never();
    router_.dispatch(req, [self = shared_from_this()](Response r) { self->write(std::move(r)); });
  }

  // The answer to a CORS preflight: 204 with what an allowed origin may do, or 403.
  Response preflight() {
    if (cors_.empty()) {
      return error_response(403, "forbidden", "this origin may not call the API");
    }
    Response r{204, "", "text/plain", {}};
    r.headers.emplace_back("Access-Control-Allow-Methods", std::string(kCorsMethods));
    r.headers.emplace_back("Access-Control-Allow-Headers", std::string(kCorsRequestHeaders));
    r.headers.emplace_back("Access-Control-Max-Age", std::string(kCorsMaxAgeSeconds));
    return r;
  }

  // Answers a request that cannot be read whole and closes the connection after it.
  void refuse(unsigned status, std::string_view code, std::string message) {
    keep_alive_ = false;
    linger_ = true;
    write(error_response(status, code, message));
  }

  void linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (ec || self->drained_ > kLingerBytes) return self->close();
                              self->drain();
                            });
  }

  // Writes the response head and body with one write. The head is built by hand into a
  // buffer the connection reuses: Beast's serializer cost a quarter of the user time
  // of a small JSON answer (see docs/PERFORMANCE.md).
  void write(Response r) {
    if (open_->draining) keep_alive_ = false;
    // The access log, at debug level (checked first: formatting costs on the hot path).
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("http: {} {} -> {}", parser_->get().method_string(), parser_->get().target(),
                    r.status);
    }
    head_.clear();
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(r.status);
    head_ += ' ';
    head_ += bhttp::obsolete_reason(static_cast<bhttp::status>(r.status));
    head_ += "\r\nContent-Type: ";
    head_ += r.content_type;
    if (r.status != 204) {  // a 204 carries no Content-Length (RFC 9110)
      head_ += "\r\nContent-Length: ";
      head_ += std::to_string(r.body.size());
    }
    head_ += keep_alive_ ? "\r\n" : "\r\nConnection: close\r\n";
    if (r.content_type == kJsonContentType) head_ += kJsonAnswerHeaders;
    r.headers.insert(r.headers.end(), cors_.begin(), cors_.end());
    for (auto& [name, value] : r.headers) {
      head_ += name;
      head_ += ": ";
      head_ += value;
      head_ += "\r\n";
    }
    head_ += "\r\n";
    body_ = head_only_ ? std::string() : std::move(r.body);
    stream_.expires_after(limits_.idle_timeout);
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(body_)};
    asio::async_write(stream_, buffers,
                      beast::bind_front_handler(&Connection::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return close();
    if (linger_) return linger();
    if (!keep_alive_) return close();
    do_read();
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string head_;
  std::string body_;
  const Router& router_;
  const ServerLimits& limits_;
  std::shared_ptr<OpenConnections> open_;
  bool idle_ = false;                                      // waiting for the next request
  std::vector<std::pair<std::string, std::string>> cors_;  // for the request being answered
  bool keep_alive_ = true;
  bool head_only_ = false;  // HEAD: the head of the GET answer, without its body
  bool linger_ = false;
  std::size_t drained_ = 0;
  std::array<char, 16 * 1024> discard_;
};

std::vector<std::string> split_pattern(std::string_view pattern) {
  std::vector<std::string> out;
  while (!pattern.empty()) {
    if (pattern.front() == '/') pattern.remove_prefix(1);
    if (pattern.empty()) break;
    auto end = pattern.find('/');
    out.emplace_back(pattern.substr(0, end));
    pattern = end == std::string_view::npos ? std::string_view{} : pattern.substr(end);
  }
  return out;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

}  // namespace

std::vector<std::pair<std::string, std::string>> cors_headers(const ServerLimits& limits,
                                                              std::string_view origin) {
  for (const std::string& allowed : limits.cors_origins) {
    if (allowed == "*" || allowed == origin) {
      return {{"Access-Control-Allow-Origin", std::string(origin)},
              {"Access-Control-Expose-Headers", std::string(kCorsExposedHeaders)},
              {"Vary", "Origin"}};
    }
  }
  return {};
}

std::optional<HeadRejection> check_request_head(const Request& req) {
  auto refuse = [](unsigned status, std::string_view code, std::string message, bool close) {
    return std::optional<HeadRejection>(HeadRejection{status, code, std::move(message), close});
  };
  // Framing first (RFC 9112 section 6.3). Beast reads a body of unknown codings as empty
  // and takes Content-Length beside a coding it ignores; either way the body's bytes
  // would be read as the next request. cartd decodes chunked and nothing else.
  auto codings = req.equal_range(bhttp::field::transfer_encoding);
  if (codings.first != codings.second) {
    if (req.version() < 11) {
      return refuse(400, "bad_request", "Transfer-Encoding is not allowed in HTTP/1.0", true);
    }
    if (req.find(bhttp::field::content_length) != req.end()) {
      return refuse(400, "bad_request",
                    "a request may not have both Transfer-Encoding and Content-Length", true);
    }
    std::vector<std::string_view> list;  // every field line is part of one list
    for (auto field = codings.first; field != codings.second; ++field) {
      std::string_view value = field->value();
      while (!value.empty()) {
        auto comma = value.find(',');
        std::string_view coding = value.substr(0, comma);
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t')) {
          coding.remove_prefix(1);
        }
        while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t')) {
          coding.remove_suffix(1);
        }
        if (!coding.empty()) list.push_back(coding);  // empty list elements are allowed
      }
    }
    auto is_chunked = [](std::string_view coding) { return beast::iequals(coding, "chunked"); };
    if (list.empty() || !is_chunked(list.back()) ||
        std::count_if(list.begin(), list.end(), is_chunked) > 1) {
      return refuse(400, "bad_request", "chunked must be the final transfer coding, applied once",
                    true);
    }
    if (list.size() > 1) {
      return refuse(501, "not_implemented", "the only transfer coding cartd accepts is chunked",
                    true);
    }
  }
  auto hosts = std::distance(req.equal_range(bhttp::field::host).first,
                             req.equal_range(bhttp::field::host).second);
  if (hosts > 1) {
    return refuse(400, "bad_request", "a request may have only one Host header", false);
  }
  if (hosts == 0 && req.version() >= 11) {
    return refuse(400, "bad_request", "an HTTP/1.1 request needs a Host header", false);
  }
  if (req.method() == bhttp::verb::unknown) {
    return refuse(501, "not_implemented",
                  "the method " + std::string(req.method_string()) + " is not implemented", false);
  }
  return std::nullopt;
}

void Router::add(Verb verb, std::string_view pattern, Handler handler) {
  routes_.push_back(Route{verb, split_pattern(pattern), std::move(handler)});
}

void Router::dispatch(const Request& req, Respond respond) const {
  auto target = boost::urls::parse_origin_form(req.target());
  if (!target) {
    return respond(error_response(400, "bad_request", "the request target is not a valid path"));
  }
  std::vector<std::string> segments;
  for (auto segment : target->segments()) segments.push_back(segment);
  if (!segments.empty() && segments.back().empty()) segments.pop_back();  // trailing slash

  bool path_known = false;
  PathParams params;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    params.clear();
    bool match = true;
    for (std::size_t i = 0; i < segments.size() && match; ++i) {
      if (is_param(route.segments[i])) {
        match = !segments[i].empty();
        params.push_back(segments[i]);
      } else {
        match = route.segments[i] == segments[i];
      }
    }
    if (!match) continue;
    path_known = true;
    if (route.verb == req.method() || (route.verb == Verb::get && req.method() == Verb::head)) {
      return route.handler(req, params, std::move(respond));
    }
  }
  if (path_known) {
    return respond(error_response(405, "method_not_allowed",
                                  "this path does not accept " + std::string(req.method_string())));
  }
  respond(error_response(404, "not_found", "no such route"));
}

Listener::Listener(asio::io_context& io, const tcp::endpoint& endpoint, const Router& router,
                   const ServerLimits& limits)
    : io_(io),
      acceptor_(io),
      router_(router),
      limits_(limits),
      open_(std::make_shared<OpenConnections>()) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.set_option(reuse_port(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

void Listener::start() {
  do_accept();
}

void Listener::drain(std::chrono::milliseconds grace, std::function<void()> done) {
  beast::error_code ignored;
  acceptor_.close(ignored);
  open_->draining = true;
  std::vector<Connection*> idle(open_->all.begin(), open_->all.end());
  for (Connection* c : idle) c->close_if_idle();
  wait_drained(std::chrono::steady_clock::now() + grace, std::move(done));
}

void Listener::wait_drained(std::chrono::steady_clock::time_point until,
                            std::function<void()> done) {
  if (open_->all.empty() || std::chrono::steady_clock::now() >= until) {
    if (!open_->all.empty()) {
      spdlog::warn("http: {} connections still open at shutdown", open_->all.size());
    }
    return done();
  }
  auto timer = std::make_shared<asio::steady_timer>(io_, kDrainPoll);
  timer->async_wait([self = shared_from_this(), timer, until, done](beast::error_code) {
    self->wait_drained(until, done);
  });
}

void Listener::do_accept() {
  acceptor_.async_accept(io_, [self = shared_from_this()](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      beast::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Connection>(std::move(s), self->router_, self->limits_, self->open_)
          ->start();
    } else {
      // Out of file descriptors, say: wait a little instead of spinning on the error.
      spdlog::warn("http: accept failed: {}", ec.message());
      auto pause = std::make_shared<asio::steady_timer>(self->io_, kAcceptRetry);
      return pause->async_wait([self, pause](beast::error_code) { self->do_accept(); });
    }
    self->do_accept();
  });
}

}  // namespace cartd::http
