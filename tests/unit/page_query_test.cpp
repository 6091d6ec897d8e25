// The query of GET /v1/products: ?limit=&cursor=.
#include <gtest/gtest.h>

#include "routes/catalog.hpp"

namespace cartd::stock {
namespace {

TEST(PageQuery, defaults_without_a_query) {
  auto q = parse_page_query("/v1/products");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->limit, kDefaultPageSize);
  EXPECT_EQ(q->cursor, "");
}

TEST(PageQuery, reads_limit_and_cursor) {
  auto q = parse_page_query("/v1/products?limit=3&cursor=shoe-42&other=x");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->limit, 3u);
  EXPECT_EQ(q->cursor, "shoe-42");
}

TEST(PageQuery, a_limit_outside_the_range_is_refused) {
  for (const char* bad : {"/v1/products?limit=0", "/v1/products?limit=101", "/v1/products?limit=",
                          "/v1/products?limit", "/v1/products?limit=2x", "/v1/products?limit=-1"}) {
    auto q = parse_page_query(bad);
    ASSERT_FALSE(q) << bad;
    EXPECT_EQ(q.error().status, 400u);
    EXPECT_EQ(q.error().code, "invalid_limit") << bad;
  }
}

TEST(PageQuery, a_cursor_that_is_not_an_id_is_refused) {
  auto q = parse_page_query("/v1/products?cursor=a%20b");
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, "invalid_cursor");
  EXPECT_FALSE(parse_page_query("/v1/products?cursor="));
}

TEST(PageQuery, a_target_that_is_not_a_path_is_refused) {
  auto q = parse_page_query("http://example.com/v1/products");
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, "bad_request");
}

}  // namespace
}  // namespace cartd::stock
