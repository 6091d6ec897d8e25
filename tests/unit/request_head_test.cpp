// What the server refuses in a request head before any route sees it (RFC 9112).
#include <gtest/gtest.h>

#include "http/server.hpp"

namespace cartd::http {
namespace {

using Field = boost::beast::http::field;

Request head(std::vector<std::pair<std::string, std::string>> fields, unsigned version = 11,
             Verb verb = Verb::post) {
  Request r{verb, "/add-to-cart", version};
  for (auto& [name, value] : fields) r.insert(name, value);
  return r;
}

TEST(RequestHead, a_plain_request_passes) {
  EXPECT_FALSE(check_request_head(head({{"Host", "shop"}})));
  EXPECT_FALSE(check_request_head(head({{"Host", "shop"}, {"Content-Length", "3"}})));
  EXPECT_FALSE(check_request_head(head({{"Host", "shop"}, {"Transfer-Encoding", "chunked"}})));
  EXPECT_FALSE(check_request_head(head({{"Host", "shop"}, {"Transfer-Encoding", " Chunked "}})));
  EXPECT_FALSE(check_request_head(head({{"Host", "shop"}, {"Transfer-Encoding", ", chunked"}})));
  EXPECT_FALSE(check_request_head(head({}, 10))) << "HTTP/1.0 needs no Host";
  EXPECT_FALSE(check_request_head(head({{"Host", ""}}))) << "an empty Host is allowed";
}

TEST(RequestHead, chunked_not_last_is_400_and_closes) {
  for (std::string te :
       {"chunked, gzip", "gzip", "identity", "x-unknown", "", "chunked;x=1", "chunked, chunked"}) {
    auto r = check_request_head(head({{"Host", "shop"}, {"Transfer-Encoding", te}}));
    ASSERT_TRUE(r) << te;
    EXPECT_EQ(r->status, 400u) << te;
    EXPECT_TRUE(r->close) << te;
  }
}

TEST(RequestHead, a_coding_before_chunked_is_501_and_closes) {
  for (std::string te : {"gzip, chunked", "deflate,chunked", "x-unknown , chunked"}) {
    auto r = check_request_head(head({{"Host", "shop"}, {"Transfer-Encoding", te}}));
    ASSERT_TRUE(r) << te;
    EXPECT_EQ(r->status, 501u) << te;
    EXPECT_EQ(r->code, "not_implemented") << te;
    EXPECT_TRUE(r->close) << te;
  }
  // Two field lines are one list: gzip, chunked.
  auto two = check_request_head(
      head({{"Host", "shop"}, {"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}}));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status, 501u);
  auto twice = check_request_head(
      head({{"Host", "shop"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}));
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->status, 400u);
}

TEST(RequestHead, transfer_encoding_with_content_length_is_400_and_closes) {
  for (std::string te : {"chunked", "gzip"}) {
    auto r = check_request_head(
        head({{"Host", "shop"}, {"Transfer-Encoding", te}, {"Content-Length", "5"}}));
    ASSERT_TRUE(r) << te;
    EXPECT_EQ(r->status, 400u) << te;
    EXPECT_TRUE(r->close) << te;
  }
}

TEST(RequestHead, transfer_encoding_in_http_1_0_is_400_and_closes) {
  auto r = check_request_head(head({{"Transfer-Encoding", "chunked"}}, 10));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400u);
  EXPECT_TRUE(r->close);
}

TEST(RequestHead, http_1_1_needs_exactly_one_host) {
  auto none = check_request_head(head({}));
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 400u);
  EXPECT_NE(none->message.find("Host"), std::string::npos);
  auto two = check_request_head(head({{"Host", "a"}, {"Host", "b"}}));
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status, 400u);
  auto two_in_1_0 = check_request_head(head({{"Host", "a"}, {"Host", "b"}}, 10));
  ASSERT_TRUE(two_in_1_0);
  EXPECT_EQ(two_in_1_0->status, 400u);
}

TEST(RequestHead, an_unknown_method_is_501) {
  Request r{Verb::unknown, "/", 11};
  r.method_string("FOO");
  r.set(Field::host, "shop");
  auto out = check_request_head(r);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, 501u);
  EXPECT_EQ(out->code, "not_implemented");
  EXPECT_NE(out->message.find("FOO"), std::string::npos);
  EXPECT_FALSE(out->close) << "its framing is sound: the connection may stay";
}

}  // namespace
}  // namespace cartd::http
