// What a JSON log line may contain, and which request ids cartd takes from a client.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <string>
#include <vector>

#include "http/server.hpp"
#include "logging/logging.hpp"

namespace cartd {
namespace {

// `in` escaped into a JSON string literal, parsed back.
std::string round_trip(std::string_view in) {
  std::string literal = "\"";
  logging::append_json_escaped(in, literal);
  literal += '"';
  boost::system::error_code ec;
  auto v = boost::json::parse(literal, ec);
  EXPECT_FALSE(ec) << literal;
  return ec ? std::string() : std::string(v.as_string());
}

TEST(JsonEscape, text_comes_back_as_it_was) {
  for (const std::string& s : std::vector<std::string>{
           "", "plain", "a \"quoted\" word", "back\\slash", "line\nbreak\r\t",
           std::string("nul\0byte", 8), "\x01\x1f\x7f", "grüße 日本 🛒"}) {
    EXPECT_EQ(round_trip(s), s);
  }
}

TEST(JsonEscape, control_characters_are_escaped_not_written_raw) {
  std::string out;
  logging::append_json_escaped(
      "a\x01"
      "b\n",
      out);
  EXPECT_EQ(out, "a\\u0001b\\n");
}

TEST(JsonEscape, bytes_that_are_not_utf8_become_the_replacement_character) {
  // A lone continuation byte, a truncated sequence, an overlong '/', a surrogate, a
  // code point above U+10FFFF, and 0xFF.
  for (std::string bad :
       {"\x80", "\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"}) {
    std::string got = round_trip("<" + bad + ">");
    EXPECT_TRUE(got.starts_with("<\xef\xbf\xbd")) << got;
    EXPECT_TRUE(got.ends_with(">")) << got;
  }
}

TEST(RequestId, a_bounded_visible_ascii_id_is_taken_as_given) {
  EXPECT_TRUE(http::is_acceptable_request_id("f3b1c9e0-1d2a-4c55-9a43-6f0c2a7d8e11"));
  EXPECT_TRUE(http::is_acceptable_request_id("a"));
  EXPECT_TRUE(http::is_acceptable_request_id(std::string(http::kMaxRequestIdLength, 'x')));
}

TEST(RequestId, an_empty_long_or_unprintable_id_is_replaced) {
  EXPECT_FALSE(http::is_acceptable_request_id(""));
  EXPECT_FALSE(http::is_acceptable_request_id(std::string(http::kMaxRequestIdLength + 1, 'x')));
  EXPECT_FALSE(http::is_acceptable_request_id("two words"));
  EXPECT_FALSE(http::is_acceptable_request_id("tab\there"));
  EXPECT_FALSE(http::is_acceptable_request_id("del\x7f"));
  EXPECT_FALSE(http::is_acceptable_request_id("caf\xc3\xa9"));
}

}  // namespace
}  // namespace cartd
