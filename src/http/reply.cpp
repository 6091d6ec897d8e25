#include "http/reply.hpp"

#include <boost/json/serialize.hpp>

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

}  // namespace cartd::http
