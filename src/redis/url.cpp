#include "redis/url.hpp"

#include <boost/url/parse.hpp>
#include <charconv>

namespace cartd::redis {
namespace {

using UrlResult = boost::system::result<Endpoint, std::string>;

UrlResult fail(std::string why) {
  return UrlResult(boost::system::in_place_error, std::move(why));
}

bool parse_int(std::string_view text, int& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size();
}

}  // namespace

UrlResult parse_url(std::string_view text) {
  auto url = boost::urls::parse_uri(text);
  if (!url) return fail("not a URL: " + redact_password(text));
  if (url->scheme() != "redis") return fail(std::string("the scheme must be redis://"));
  Endpoint e;
  if (url->encoded_host().empty()) return fail(std::string("the URL names no host"));
  e.host = url->host_address();
  if (url->has_port()) {
    if (!parse_int(url->port(), e.port) || e.port <= 0 || e.port > 65535)
      return fail(std::string("bad port: ") + std::string(url->port()));
  }
  if (url->has_userinfo()) {
    e.user = url->user();
    e.password = url->password();
    if (!url->has_password()) std::swap(e.user, e.password);  // redis://secret@host
  }
  std::string_view path = url->encoded_path();
  if (!path.empty() && path != "/") {
    if (!parse_int(path.substr(1), e.db) || e.db < 0)
      return fail(std::string("the path must be a database number: ") + std::string(path));
  }
  return e;
}

boost::system::result<std::vector<Endpoint>, std::string> parse_urls(std::string_view urls) {
  std::vector<Endpoint> out;
  while (true) {
    auto comma = urls.find(',');
    auto one = parse_url(urls.substr(0, comma));
    if (!one) return {boost::system::in_place_error, one.error()};
    out.push_back(*one);
    if (comma == std::string_view::npos) return out;
    urls.remove_prefix(comma + 1);
  }
}

std::string redact_password(std::string_view url) {
  if (auto comma = url.find(','); comma != std::string_view::npos) {
    return redact_password(url.substr(0, comma)) + "," + redact_password(url.substr(comma + 1));
  }
  constexpr std::string_view kMask = "***";
  auto at = url.rfind('@');
  if (at == std::string_view::npos) return std::string(url);
  auto scheme_end = url.find("://");
  std::size_t start = scheme_end != std::string_view::npos && scheme_end < at ? scheme_end + 3 : 0;
  std::string_view userinfo = url.substr(start, at - start);
  std::string out(url.substr(0, start));
  // user:password keeps the user; a lone token is the password (redis://secret@host).
  if (auto colon = userinfo.find(':'); colon != std::string_view::npos) {
    out += userinfo.substr(0, colon + 1);
  }
  out += kMask;
  out += url.substr(at);
  return out;
}

}  // namespace cartd::redis
