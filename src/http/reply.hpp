// reply: what a route handler answers, and the JSON shapes cartd answers with.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cartd::http {

inline constexpr std::string_view kJsonContentType = "application/json";

// Written by the server into the head of every JSON answer. JSON answers carry carts and
// orders: no browser may sniff them into something executable, and no cache (a shared
// proxy, the browser's back button) may keep a copy. As one constant, the head writer
// appends them without building header pairs per answer.
inline constexpr std::string_view kJsonAnswerHeaders =
    "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n";

inline constexpr std::string_view kEventStreamContentType = "text/event-stream";

// An open text/event-stream answer (Server-Sent Events) on one connection. Its users run
// on the connection's loop: they send whole events, and hear once when it closes.
class EventStream {
 public:
  virtual ~EventStream() = default;
  // Queues bytes for the client. A client that falls behind by more than the stream's
  // buffer is closed rather than buffered without bound. False once closed. One event
  // for many streams is shared, not copied per stream.
  virtual bool send(std::shared_ptr<const std::string> bytes) = 0;
  bool send(std::string bytes) {
    return send(std::make_shared<const std::string>(std::move(bytes)));
  }
  virtual bool closed() const = 0;
  // Runs once when the stream closes (client gone, too slow, shutdown), or at once if it
  // has closed already.
  virtual void on_close(std::function<void()> done) = 0;
};

struct Response {
  unsigned status = 200;
  std::string body;
  std::string_view content_type = kJsonContentType;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
  // Set by a route that answers with an event stream: the server writes the head and
  // `body` (the first events), keeps the connection open, and hands it over here.
  std::function<void(std::shared_ptr<EventStream>)> stream;
};

// Handlers answer through a Respond, exactly once, on the connection's own loop.
using Respond = std::function<void(Response)>;

Response json_response(unsigned status, const boost::json::object& body);

// {"message": ...}: the error shape of the classic routes (/add-to-cart, /get-cart).
Response message_response(unsigned status, std::string_view message);

// {"error": {"code", "message", ...details}}: the error shape of everything else.
Response error_response(unsigned status, std::string_view code, std::string_view message,
                        boost::json::object details = {});

// Milliseconds since the epoch as RFC 3339 UTC with milliseconds: 2026-11-28T23:55:40.123Z.
std::string rfc3339(std::int64_t epoch_ms);

}  // namespace cartd::http
