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
#include <deque>
#include <list>
#include <optional>
#include <random>
#include <unordered_set>
#include <utility>

#include "logging/logging.hpp"

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
// An event stream whose client has not taken this much is closed: a page that stopped
// reading would otherwise hold its loop's memory without bound.
constexpr std::size_t kStreamBufferBytes = 256 * 1024;
// CORS: what a page from an allowed origin may send and read, and how long a browser
// may cache the preflight answer.
constexpr std::string_view kCorsMethods = "GET, POST, PUT, DELETE, OPTIONS";
constexpr std::string_view kCorsRequestHeaders =
    "Content-Type, cart-session-id, Idempotency-Key, Authorization, X-Request-Id, traceparent";
constexpr std::string_view kCorsExposedHeaders =
    "cart-session-id, Location, Retry-After, X-Request-Id";
constexpr std::string_view kCorsMaxAgeSeconds = "600";
constexpr std::chrono::milliseconds kAcceptRetry{100};
// A repeated warning (accept failing, connections refused) is logged at most this often.
constexpr std::chrono::seconds kWarningInterval{1};
constexpr std::string_view kRequestIdHeader = "X-Request-Id";
constexpr std::string_view kTraceparentHeader = "traceparent";
// A request id cartd makes: 128 random bits in hex, unique without coordination between
// loops or instances.
constexpr std::size_t kMadeRequestIdBytes = 16;

bool is_visible_ascii(std::string_view s, std::size_t max_length) {
  if (s.empty() || s.size() > max_length) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

// Replaces `out` with a new request id. Each loop draws from a generator of its own,
// seeded from the OS, so making an id takes no lock.
void make_request_id(std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 random = [] {
    std::random_device os;
    std::seed_seq seed{os(), os(), os(), os(), os(), os(), os(), os()};
    return std::mt19937_64(seed);
  }();
  out.resize(kMadeRequestIdBytes * 2);
  for (std::size_t i = 0; i < kMadeRequestIdBytes; i += sizeof(std::uint64_t)) {
    std::uint64_t bits = random();
    for (std::size_t b = 0; b < sizeof bits; ++b, bits >>= 8) {
      out[2 * (i + b)] = kHex[(bits >> 4) & 0xF];
      out[2 * (i + b) + 1] = kHex[bits & 0xF];
    }
  }
}

class Connection;

}  // namespace

struct OpenConnections {
  bool draining = false;
  std::unordered_set<Connection*> all;
  // Connections waiting for a request, the longest-waiting first: the ones a full
  // listener closes. A connection leaves when its read ends or when it is found to have
  // begun a request.
  std::list<Connection*> idle;
};

namespace {

// One keep-alive connection: read a request, hand it to the router, write the answer,
// read the next. The object keeps itself alive through the handlers it has pending.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, const Router& router, const ServerLimits& limits,
             std::shared_ptr<OpenConnections> open, metrics::Shard* metrics)
      : stream_(std::move(socket)),
        router_(router),
        limits_(limits),
        open_(std::move(open)),
        metrics_(metrics) {
    open_->all.insert(this);
    idle_at_ = idle_node_.insert(idle_node_.end(), this);
    if (metrics_) metrics_->connection_opened();
  }
  ~Connection() {
    leave_idle_list();
    open_->all.erase(this);
    if (metrics_) metrics_->connection_closed();
  }

  void start() { do_read(); }

  // Closes the connection if it waits for a request that has not begun, or carries an
  // event stream (which never ends by itself); a connection in the middle of a request
  // finishes it (it sees `draining` when it answers). Returns whether it closed. A
  // connection found busy leaves the idle list, so that the next search for an idle one
  // does not look at it again.
  bool close_if_idle() {
    if (streaming_) {
      end_stream();
      return true;
    }
    if (waiting_for_request()) {
      leave_idle_list();
      close();
      return true;
    }
    leave_idle_list();
    return false;
  }

 private:
  // Waiting for a request of which no byte has arrived: not in the parser, not in the
  // buffer, not in the socket (a client may have sent it just now).
  bool waiting_for_request() {
    if (!idle_ || buffer_.size() != 0 || parser_->got_some()) return false;
    beast::error_code ec;
    return stream_.socket().available(ec) == 0 && !ec;
  }

  void do_read() {
    idle_ = true;
    enter_idle_list();
    parser_.emplace();
    parser_->body_limit(limits_.max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    stream_.expires_after(served_any_ ? std::chrono::milliseconds(limits_.idle_timeout)
                                      : limits_.first_request_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Connection::on_read, shared_from_this()));
  }

  // The connection's list node moves between idle_node_ and the listener's list by
  // splice: joining and leaving on every request allocates nothing.
  void enter_idle_list() {
    open_->idle.splice(open_->idle.end(), idle_node_, idle_at_);
    in_idle_list_ = true;
  }
  void leave_idle_list() {
    if (in_idle_list_) idle_node_.splice(idle_node_.end(), open_->idle, idle_at_);
    in_idle_list_ = false;
  }

  void on_read(beast::error_code ec, std::size_t) {
    idle_ = false;
    served_any_ = true;
    leave_idle_list();
    // Until the router matches a pattern, an answer counts as unmatched.
    route_ = router_.patterns().size();
    read_at_ = std::chrono::steady_clock::now();
    take_request_id();
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
    router_.dispatch(
        req, [self = shared_from_this()](Response r) { self->write(std::move(r)); }, route_);
  }

  // The request's X-Request-Id if it has an acceptable one, else a new one. The parser
  // holds the fields even when it stopped at the body (413); a head over the limit (431)
  // has none, and gets a new one.
  void take_request_id() {
    const Request& req = parser_->get();
    if (auto given = req.find(kRequestIdHeader); given != req.end()) {
      if (is_acceptable_request_id(given->value())) {
        request_id_.assign(given->value());
        return;
      }
    }
    make_request_id(request_id_);
  }

  // The answer to a CORS preflight: 204 with what an allowed origin may do, or 403.
  Response preflight() {
    if (cors_.empty()) {
      return error_response(403, "forbidden", "this origin may not call the API");
    }
    Response r{204, "", "text/plain", {}, {}};
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
    // An event stream's body ends when the connection does: it has no Content-Length,
    // and nothing else is read from the connection.
    bool stream = r.stream && r.status == 200 && !head_only_ && !open_->draining;
    if (r.stream) keep_alive_ = false;
    auto elapsed = std::chrono::steady_clock::now() - read_at_;
    if (metrics_) metrics_->count_request(route_, r.status, elapsed);
    // Checked first: formatting costs on the hot path.
    if (logging::access_logged()) log_request(r.status, elapsed);
    head_.clear();
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(r.status);
    head_ += ' ';
    head_ += bhttp::obsolete_reason(static_cast<bhttp::status>(r.status));
    head_ += "\r\nContent-Type: ";
    head_ += r.content_type;
    if (r.status != 204 && !r.stream) {  // a 204 carries no Content-Length (RFC 9110)
      head_ += "\r\nContent-Length: ";
      head_ += std::to_string(r.body.size());
    }
    head_ += keep_alive_ ? "\r\n" : "\r\nConnection: close\r\n";
    head_ += kRequestIdHeader;
    head_ += ": ";
    head_ += request_id_;
    head_ += "\r\n";
    if (r.content_type == kJsonContentType) head_ += kJsonAnswerHeaders;
    // No cache may keep a live stream, and no proxy may hold its events back.
    if (r.stream) head_ += "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n";
    if (stream) open_stream_ = std::move(r.stream);
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

  void log_request(unsigned status, std::chrono::steady_clock::duration elapsed) {
    const Request& req = parser_->get();
    std::string_view traceparent;
    if (auto given = req.find(kTraceparentHeader); given != req.end()) {
      if (is_visible_ascii(given->value(), kMaxTraceparentLength)) traceparent = given->value();
    }
    logging::log_access(
        {request_id_, req.method_string(), req.target(), status, elapsed, traceparent});
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return close();
    if (open_stream_) return start_streaming();
    if (linger_) return linger();
    if (!keep_alive_) return close();
    do_read();
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  // The event stream's side of the connection: what the route writes goes out in order,
  // one write at a time; a read stays pending only to see the client leave.
  class Stream : public EventStream {
   public:
    explicit Stream(std::weak_ptr<Connection> c) : c_(std::move(c)) {}
    using EventStream::send;
    bool send(std::shared_ptr<const std::string> bytes) override {
      auto c = c_.lock();
      return c && c->stream_send(std::move(bytes));
    }
    bool closed() const override {
      auto c = c_.lock();
      return !c || c->stream_closed_;
    }
    void on_close(std::function<void()> done) override {
      auto c = c_.lock();
      if (!c || c->stream_closed_) return done();
      c->on_stream_close_ = std::move(done);
    }

   private:
    std::weak_ptr<Connection> c_;
  };

  void start_streaming() {
    streaming_ = true;
    stream_.expires_never();
    watch_for_close();
    auto open = std::move(open_stream_);
    open_stream_ = nullptr;
    open(std::make_shared<Stream>(weak_from_this()));
  }

  // Whatever the client sends on a stream is dropped; its end (or an error) ends it.
  void watch_for_close() {
    stream_.async_read_some(asio::buffer(discard_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return self->end_stream();
                              self->watch_for_close();
                            });
  }

  bool stream_send(std::shared_ptr<const std::string> bytes) {
    if (stream_closed_) return false;
    if (outbox_bytes_ + bytes->size() > kStreamBufferBytes) {
      end_stream();
      return false;
    }
    outbox_bytes_ += bytes->size();
    outbox_.push_back(std::move(bytes));
    if (!writing_) write_next();
    return true;
  }

  void write_next() {
    writing_ = true;
    // A client that takes nothing for the idle time is gone; between writes, the stream
    // waits without a timer (heartbeats keep it moving).
    stream_.expires_after(limits_.idle_timeout);
    asio::async_write(stream_, asio::buffer(*outbox_.front()),
                      [self = shared_from_this()](beast::error_code ec, std::size_t) {
                        if (ec) return self->end_stream();
                        self->outbox_bytes_ -= self->outbox_.front()->size();
                        self->outbox_.pop_front();
                        if (self->outbox_.empty()) {
                          self->writing_ = false;
                          if (!self->stream_closed_) self->stream_.expires_never();
                          return;
                        }
                        self->write_next();
                      });
  }

  // Closes the stream once. Whoever listens hears of it from the loop, never from inside
  // its own send (it may be walking its streams).
  void end_stream() {
    if (stream_closed_) return;
    stream_closed_ = true;
    close();
    if (auto done = std::move(on_stream_close_)) asio::post(stream_.get_executor(), done);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string head_;
  std::string body_;
  const Router& router_;
  const ServerLimits& limits_;
  std::shared_ptr<OpenConnections> open_;
  metrics::Shard* metrics_;
  std::size_t route_ = 0;                          // the matched pattern of the request
  std::chrono::steady_clock::time_point read_at_;  // when the request was read whole
  std::string request_id_;                         // of the request being answered
  bool idle_ = false;                              // waiting for the next request
  std::list<Connection*> idle_node_;               // holds idle_at_ while not in open_->idle
  std::list<Connection*>::iterator idle_at_;       // this, in idle_node_ or open_->idle
  bool in_idle_list_ = false;                      // idle_at_ is in open_->idle
  bool served_any_ = false;  // a request has arrived: the keep-alive time applies, not the first
  std::vector<std::pair<std::string, std::string>> cors_;  // for the request being answered
  bool keep_alive_ = true;
  bool head_only_ = false;  // HEAD: the head of the GET answer, without its body
  bool linger_ = false;
  std::size_t drained_ = 0;
  std::array<char, 16 * 1024> discard_;
  // An event stream: the route's opener until the head is written, then its state.
  std::function<void(std::shared_ptr<EventStream>)> open_stream_;
  bool streaming_ = false;
  bool stream_closed_ = false;
  bool writing_ = false;
  std::deque<std::shared_ptr<const std::string>> outbox_;
  std::size_t outbox_bytes_ = 0;
  std::function<void()> on_stream_close_;
};

// The answer to a connection over the cap when no idle connection could make room: a 503
// written at once, without a Connection (the socket is new, its send buffer empty; a
// client that cannot take it loses only this answer), then the socket closes.
void refuse_connection(tcp::socket socket) {
  static const std::string answer = [] {
    Response r = error_response(503, "unavailable",
                                "cartd has as many connections open as it may; retry shortly");
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: " + std::string(kJsonContentType) +
           "\r\nContent-Length: " + std::to_string(r.body.size()) +
           "\r\nConnection: close\r\nRetry-After: 1\r\n" + std::string(kJsonAnswerHeaders) +
           "\r\n" + r.body;
  }();
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.send(asio::buffer(answer), 0, ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

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

bool is_acceptable_request_id(std::string_view id) {
  return is_visible_ascii(id, kMaxRequestIdLength);
}

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
  auto known = std::find(patterns_.begin(), patterns_.end(), pattern);
  std::size_t index = static_cast<std::size_t>(known - patterns_.begin());
  if (known == patterns_.end()) patterns_.emplace_back(pattern);
  routes_.push_back(Route{verb, split_pattern(pattern), index, std::move(handler)});
}

void Router::dispatch(const Request& req, Respond respond, std::size_t& matched) const {
  matched = patterns_.size();
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
    matched = route.pattern;
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

std::size_t max_connections_for(std::size_t open_file_limit, std::size_t reserved) {
  std::size_t reserve = std::min(reserved, open_file_limit / 2);
  return std::max<std::size_t>(open_file_limit - reserve, 1);
}

std::optional<std::size_t> WarningThrottle::admit(Clock::time_point now) {
  if (last_ && now - *last_ < interval_) {
    ++held_back_;
    return std::nullopt;
  }
  last_ = now;
  return std::exchange(held_back_, 0);
}

std::size_t connection_share(std::size_t max_connections, std::size_t loops, std::size_t index) {
  std::size_t share = max_connections / loops + (index < max_connections % loops ? 1 : 0);
  return std::max<std::size_t>(share, 1);
}

ThrottledWarning::ThrottledWarning() : throttle_(kWarningInterval) {}

void ThrottledWarning::warn(const std::string& what) {
  std::optional<std::size_t> held_back;
  {
    std::lock_guard lock(mutex_);
    held_back = throttle_.admit(WarningThrottle::Clock::now());
  }
  if (!held_back) return;
  if (*held_back == 0) return spdlog::warn("{}", what);
  spdlog::warn("{} ({} more warnings held back in the last {} s)", what, *held_back,
               kWarningInterval.count());
}

Listener::Listener(asio::io_context& io, const tcp::endpoint& endpoint, const Router& router,
                   const ServerLimits& limits, std::size_t max_connections,
                   std::shared_ptr<ThrottledWarning> warnings, metrics::Shard* metrics)
    : io_(io),
      acceptor_(io),
      router_(router),
      limits_(limits),
      max_connections_(max_connections),
      warnings_(std::move(warnings)),
      open_(std::make_shared<OpenConnections>()),
      metrics_(metrics) {
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
  std::vector<Connection*> all(open_->all.begin(), open_->all.end());
  for (Connection* c : all) c->close_if_idle();
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
  acceptor_.async_accept(io_, beast::bind_front_handler(&Listener::on_accept, shared_from_this()));
}

bool Listener::shed_idle() {
  while (!open_->idle.empty()) {
    // Closing or finding it busy takes it off the list, so this ends.
    if (open_->idle.front()->close_if_idle()) return true;
  }
  return false;
}

void Listener::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors despite the cap (something else used them): an idle connection
    // makes room, or wait a little instead of spinning on the error.
    bool no_descriptors = ec == boost::system::errc::too_many_files_open ||
                          ec == boost::system::errc::too_many_files_open_in_system;
    if (no_descriptors && shed_idle()) return do_accept();
    warnings_->warn("http: accept failed: " + ec.message());
    auto pause = std::make_shared<asio::steady_timer>(io_, kAcceptRetry);
    return pause->async_wait(
        [self = shared_from_this(), pause](beast::error_code) { self->do_accept(); });
  }
  // A connection closed to make room still counts until its handlers have run, though its
  // descriptor is free at once; each new connection still closes exactly one.
  if (open_->all.size() >= max_connections_ && !shed_idle()) {
    warnings_->warn("http: a loop has its share of --max-connections (" +
                    std::to_string(max_connections_) +
                    ") open and all busy: refusing a new connection");
    refuse_connection(std::move(socket));
    return do_accept();
  }
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  std::make_shared<Connection>(std::move(socket), router_, limits_, open_, metrics_)->start();
  do_accept();
}

}  // namespace cartd::http
