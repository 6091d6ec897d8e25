// url: where cartd finds Redis, parsed from redis://[user:password@]host:port[/db].
#pragma once

#include <boost/system/result.hpp>
#include <string>
#include <string_view>

namespace cartd::redis {

struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;      // empty: no AUTH, or AUTH with the password alone
  std::string password;  // empty: no AUTH
  int db = 0;
};

// Parses a redis:// URL; the error message says what is wrong with it.
[[nodiscard]] boost::system::result<Endpoint, std::string> parse_url(std::string_view url);

}  // namespace cartd::redis
