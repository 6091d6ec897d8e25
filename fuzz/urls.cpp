// fuzz_urls: the URLs cartd parses: --redis (redis://[user:password@]host:port[/db], or
// several comma-separated) and
// the request target of GET /v1/products?limit=&cursor= (Boost.URL, then the checks).
#include <cstdint>
#include <string_view>

#include "base/ids.hpp"
#include "redis/url.hpp"
#include "require.hpp"
#include "routes/catalog.hpp"

using namespace cartd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto e = redis::parse_url(text)) {
    CARTD_REQUIRE(!e->host.empty());
    CARTD_REQUIRE(e->port >= 1 && e->port <= 65535);
    CARTD_REQUIRE(e->db >= 0);
  } else {
    CARTD_REQUIRE(!e.error().empty());
  }

  // A comma-separated list (a Redis Cluster's seeds): every URL parsed, one per
  // comma-separated part, or an error.
  if (auto seeds = redis::parse_urls(text)) {
    CARTD_REQUIRE(!seeds->empty());
    std::size_t parts = 1;
    for (char c : text) parts += c == ',';
    CARTD_REQUIRE(seeds->size() == parts);
    for (const auto& e : *seeds) CARTD_REQUIRE(e.port >= 1 && e.port <= 65535);
  } else {
    CARTD_REQUIRE(!seeds.error().empty());
  }

  auto q = stock::parse_page_query(text);
  if (q) {
    CARTD_REQUIRE(q->limit >= 1 && q->limit <= stock::kMaxPageSize);
    CARTD_REQUIRE(q->cursor.empty() || is_valid_id(q->cursor));
  } else {
    CARTD_REQUIRE(q.error().status == 400 && !q.error().code.empty());
  }
  return 0;
}
