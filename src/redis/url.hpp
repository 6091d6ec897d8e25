// url: where cartd finds Redis, parsed from redis://[user:password@]host:port[/db].
#pragma once

#include <boost/system/result.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace cartd::redis {

struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string user;      // empty: no AUTH, or AUTH with the password alone
  std::string password;  // empty: no AUTH
  int db = 0;
};

// Parses a redis:// URL; the error message says what is wrong with it, and never shows
// the password.
[[nodiscard]] boost::system::result<Endpoint, std::string> parse_url(std::string_view url);

// Several comma-separated redis:// URLs: the nodes of a Redis Cluster to start from (any
// one that answers will do). One URL gives one endpoint.
[[nodiscard]] boost::system::result<std::vector<Endpoint>, std::string> parse_urls(
    std::string_view urls);

// The URL as it may be printed (logs, errors, `cartd check`): the password replaced with
// ***, redis://user:***@host:port/db. Works on malformed URLs too, since those are the
// ones an error message shows: everything up to the last '@' is taken as user info. A
// comma-separated list is redacted URL by URL.
[[nodiscard]] std::string redact_password(std::string_view url);

}  // namespace cartd::redis
