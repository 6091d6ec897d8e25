// reply: an owned copy of a Redis reply, and the errors a command can end with.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct redisReply;

namespace cartd::redis {

struct Reply {
  enum class Type { nil, integer, string, status, error, array };
  Type type = Type::nil;
  std::int64_t integer = 0;
  std::string str;  // string, status and error replies
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::nil; }
  bool is_error() const { return type == Type::error; }
  // The element at i as text (a number is written out), or nullopt.
  std::optional<std::string> text_at(std::size_t i) const;
  // The element at i as an integer (a numeric string is parsed), or nullopt.
  std::optional<std::int64_t> int_at(std::size_t i) const;
};

Reply copy_reply(const redisReply& r);

// Why a command has no reply.
enum class Errc {
  unavailable = 1,  // not connected (or still loading the library): fail at once
  disconnected,     // the connection dropped while the command was in flight
  timeout,          // Redis did not answer within the command timeout
};
const boost::system::error_category& category();
inline boost::system::error_code make_error_code(Errc e) {
  return {static_cast<int>(e), category()};
}

using Result = boost::system::result<Reply>;

}  // namespace cartd::redis

template <>
struct boost::system::is_error_code_enum<cartd::redis::Errc> : std::true_type {};
