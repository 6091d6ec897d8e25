#include "http/reply.hpp"

#include <boost/json/serialize.hpp>
#include <cstdio>
#include <ctime>

namespace cartd::http {

Response json_response(unsigned status, const boost::json::object& body) {
  Response r;
  r.status = status;
  r.body = boost::json::serialize(body);
  return r;
}

Response message_response(unsigned status, std::string_view message) {
  return json_response(status, {{"message", message}});
}

Response error_response(unsigned status, std::string_view code, std::string_view message,
                        boost::json::object details) {
  details["code"] = code;
  details["message"] = message;
  return json_response(status, {{"error", std::move(details)}});
}

std::string rfc3339(std::int64_t epoch_ms) {
  std::time_t seconds = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char out[32];
  std::size_t n = std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(out + n, sizeof out - n, ".%03dZ", static_cast<int>(epoch_ms % 1000));
  return out;
}

}  // namespace cartd::http
