// logging: how cartd writes its log to stderr, as text or as one JSON object per line.
//
// Everything logs through spdlog's default logger; this module only chooses its format
// at start. Request lines (the access log) go through a logger of their own, because in
// JSON they carry fields of their own (request_id, method, status...) beside the message.
// Both loggers write stderr under spdlog's one console mutex, so their lines never mix.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace cartd::logging {

enum class Format { text, json };

// Sets up the default logger and the access log. `level` is one of spdlog's level names;
// `access_log`: request lines at info (else at debug, where they cost nothing unless
// --log-level debug asks for them). Call once, before any thread logs.
void setup(const std::string& level, Format format, bool access_log);

// What the access log says about one answered request. The views need only live for the
// call.
struct AccessRecord {
  std::string_view request_id;
  std::string_view method;
  std::string_view target;
  unsigned status = 0;
  std::chrono::steady_clock::duration duration{};
  std::string_view traceparent;  // empty: the request had none
};

// Whether log_access() would write anything: check it first, so a request costs no
// formatting while the access log is off. False before setup() (tests that serve without it).
[[nodiscard]] bool access_logged();
void log_access(const AccessRecord& record);

// Appends `in` to `out` as the contents of a JSON string (without the quotes): quotes,
// backslashes and control characters escaped, and every byte that is not part of valid
// UTF-8 replaced by U+FFFD, so that a log line is valid JSON whatever a client sent.
void append_json_escaped(std::string_view in, std::string& out);

}  // namespace cartd::logging
