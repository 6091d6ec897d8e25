#include "logging/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>

namespace cartd::logging {
namespace {

// UTC with milliseconds, as RFC 3339: what log shippers parse without being told a format.
constexpr std::string_view kTime = "%Y-%m-%dT%H:%M:%S.%eZ";
const std::string kTextPattern = std::string(kTime) + " %^%l%$ %v";
// %* is the message, JSON-escaped (EscapedMessage below).
const std::string kJsonPattern =
    R"({"time":")" + std::string(kTime) + R"(","level":"%l","msg":"%*"})";
// An access record's payload is its fields, already JSON (see log_access).
const std::string kJsonAccessPattern =
    R"({"time":")" + std::string(kTime) + R"(","level":"%l",%v})";
constexpr char kEscapedMessageFlag = '*';
constexpr double kNanosPerMilli = 1e6;

// Set once by setup(), before the loops start; read by every loop.
std::shared_ptr<spdlog::logger> access_logger;
spdlog::level::level_enum access_level = spdlog::level::debug;
Format log_format = Format::text;

constexpr std::string_view kReplacementCharacter = "\\ufffd";

// The length of the valid UTF-8 sequence at the start of `in` (which is not empty and
// does not start with ASCII), or 0 if it is not one (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF).
std::size_t utf8_sequence_length(std::string_view in) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
  unsigned char lead = byte(0);
  std::size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  if (in.size() < length) return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return length;
}

template <typename Out>
void escape_into(std::string_view in, Out& out) {
  auto put = [&out](std::string_view s) { out.append(s.data(), s.data() + s.size()); };
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = 0;
  while (i < in.size()) {
    // Runs of bytes that need nothing are copied at once.
    std::size_t plain = i;
    while (plain < in.size()) {
      auto c = static_cast<unsigned char>(in[plain]);
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++plain;
    }
    put(in.substr(i, plain - i));
    i = plain;
    if (i == in.size()) break;
    auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x80) {
      std::size_t n = utf8_sequence_length(in.substr(i));
      if (n == 0) {
        put(kReplacementCharacter);
        ++i;
      } else {
        put(in.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        put("\\\"");
        break;
      case '\\':
        put("\\\\");
        break;
      case '\n':
        put("\\n");
        break;
      case '\r':
        put("\\r");
        break;
      case '\t':
        put("\\t");
        break;
      default: {
        const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        put(std::string_view(escaped, sizeof escaped));
      }
    }
    ++i;
  }
}

// The %* flag of the JSON pattern: the message, escaped for a JSON string.
class EscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    escape_into(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

std::unique_ptr<spdlog::formatter> json_formatter() {
  spdlog::pattern_formatter::custom_flags flags;
  flags[kEscapedMessageFlag] = std::make_unique<EscapedMessage>();
  return std::make_unique<spdlog::pattern_formatter>(kJsonPattern, spdlog::pattern_time_type::utc,
                                                     spdlog::details::os::default_eol,
                                                     std::move(flags));
}

}  // namespace

void setup(const std::string& level, Format format, bool access_log) {
  log_format = format;
  access_level = access_log ? spdlog::level::info : spdlog::level::debug;
  auto lvl = spdlog::level::from_str(level);
  if (format == Format::text) {
    auto logger = spdlog::stderr_color_mt("cartd");
    logger->set_formatter(
        std::make_unique<spdlog::pattern_formatter>(kTextPattern, spdlog::pattern_time_type::utc));
    // Request lines read like the others in text.
    access_logger = std::make_shared<spdlog::logger>("access", logger->sinks().front());
    spdlog::set_default_logger(logger);
  } else {
    // No colour sink: escape codes would break the JSON.
    auto logger = spdlog::stderr_logger_mt("cartd");
    logger->set_formatter(json_formatter());
    // A sink of its own for its own pattern; spdlog's console sinks share one mutex.
    auto access_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    access_sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        kJsonAccessPattern, spdlog::pattern_time_type::utc));
    access_logger = std::make_shared<spdlog::logger>("access", access_sink);
    spdlog::set_default_logger(logger);
  }
  spdlog::set_level(lvl);
  access_logger->set_level(lvl);
}

bool access_logged() {
  return access_logger && access_logger->should_log(access_level);
}

void log_access(const AccessRecord& r) {
  if (!access_logged()) return;
  double ms = static_cast<double>(
                  std::chrono::duration_cast<std::chrono::nanoseconds>(r.duration).count()) /
              kNanosPerMilli;
  std::string line;
  if (log_format == Format::text) {
    line = fmt::format("http: {} {} -> {} {:.3f} ms id={}", r.method, r.target, r.status, ms,
                       r.request_id);
    if (!r.traceparent.empty()) {
      line += " traceparent=";
      line += r.traceparent;
    }
  } else {
    auto field = [&line](std::string_view name, std::string_view value) {
      line += ",\"";
      line += name;
      line += "\":\"";
      escape_into(value, line);
      line += '"';
    };
    line = "\"msg\":\"";
    escape_into(r.method, line);
    line += ' ';
    escape_into(r.target, line);
    line += " -> " + std::to_string(r.status) + '"';
    field("request_id", r.request_id);
    field("method", r.method);
    field("target", r.target);
    line += fmt::format(",\"status\":{},\"duration_ms\":{:.3f}", r.status, ms);
    if (!r.traceparent.empty()) field("traceparent", r.traceparent);
  }
  access_logger->log(access_level, spdlog::string_view_t(line.data(), line.size()));
}

void append_json_escaped(std::string_view in, std::string& out) {
  escape_into(in, out);
}

}  // namespace cartd::logging
