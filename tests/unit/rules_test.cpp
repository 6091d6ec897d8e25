#include "cart/rules.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace cartd::cart {
namespace {

TEST(IsValidId, accepts_letters_digits_dot_underscore_dash) {
  EXPECT_TRUE(is_valid_id("a"));
  EXPECT_TRUE(is_valid_id("Tee-Black_M.2"));
  EXPECT_TRUE(is_valid_id(std::string(64, 'x')));
}

TEST(IsValidId, rejects_what_could_break_a_key_or_a_path) {
  EXPECT_FALSE(is_valid_id(""));
  EXPECT_FALSE(is_valid_id(std::string(65, 'x')));
  for (std::string bad : {"a b", "a{b", "a}b", "a:b", "a/b", "a\nb", "é", "a*"}) {
    EXPECT_FALSE(is_valid_id(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_id(std::string("a\0b", 3)));
}

Limits limits() {
  return Limits{100, 100};
}

TEST(ParseLineRequest, reads_a_valid_line) {
  auto r =
      parse_line_request(R"({"product_id":"p-1","inventory_id":"inv.1","quantity":3})", limits());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->product_id, "p-1");
  EXPECT_EQ(r->inventory_id, "inv.1");
  EXPECT_EQ(r->quantity, 3);
}

TEST(ParseLineRequest, accepts_an_integer_written_as_a_decimal) {
  auto r = parse_line_request(R"({"product_id":"p","inventory_id":"i","quantity":3.0})", limits());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->quantity, 3);
}

// Found by fuzz_json_bodies: Boost.JSON 1.81 reads -0e606 as NaN, which compared false
// with both bounds and reached an undefined cast to an integer.
TEST(ParseLineRequest, a_quantity_that_is_not_a_finite_number_is_refused) {
  for (std::string q : {"-0e606", "0e606", "1e400", "-1e400"}) {
    auto r = parse_line_request(R"({"product_id":"p","inventory_id":"i","quantity":)" + q + "}",
                                limits());
    ASSERT_FALSE(r) << q;
    EXPECT_EQ(r.error().code, "invalid_quantity") << q;
  }
  boost::json::object body{{"delta", std::numeric_limits<double>::quiet_NaN()}};
  EXPECT_FALSE(integer_field(body, "delta", -10, 10, "invalid_delta"));
}

TEST(ParseLineRequest, quantity_must_be_within_the_limit) {
  Limits l{5, 100};
  EXPECT_TRUE(parse_line_request(R"({"product_id":"p","inventory_id":"i","quantity":5})", l));
  auto r = parse_line_request(R"({"product_id":"p","inventory_id":"i","quantity":6})", l);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().status, 400u);
  EXPECT_EQ(r.error().code, "invalid_quantity");
  EXPECT_NE(r.error().message.find("1 to 5"), std::string::npos);
}

TEST(ParseLineRequest, rejects_each_kind_of_bad_body_with_its_code) {
  struct Case {
    const char* body;
    const char* code;
  };
  for (auto [body, code] : std::initializer_list<Case>{
           {"", "invalid_json"},
           {"{", "invalid_json"},
           {"[]", "invalid_json"},
           {R"({"inventory_id":"i","quantity":1})", "missing_field"},
           {R"({"product_id":"p","quantity":1})", "missing_field"},
           {R"({"product_id":"p","inventory_id":"i"})", "missing_field"},
           {R"({"product_id":"p q","inventory_id":"i","quantity":1})", "invalid_id"},
           {R"({"product_id":1,"inventory_id":"i","quantity":1})", "invalid_id"},
           {R"({"product_id":"p","inventory_id":"i","quantity":0})", "invalid_quantity"},
           {R"({"product_id":"p","inventory_id":"i","quantity":-2})", "invalid_quantity"},
           {R"({"product_id":"p","inventory_id":"i","quantity":1.5})", "invalid_quantity"},
           {R"({"product_id":"p","inventory_id":"i","quantity":"1"})", "invalid_quantity"},
           {R"({"product_id":"p","inventory_id":"i","quantity":null})", "invalid_quantity"},
           {R"({"product_id":"p","inventory_id":"i","quantity":1e300})", "invalid_quantity"},
           {R"({"product_id":"p","inventory_id":"i","quantity":18446744073709551615})",
            "invalid_quantity"},
       }) {
    auto r = parse_line_request(body, limits());
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, code) << body;
    EXPECT_EQ(r.error().status, 400u) << body;
  }
}

TEST(ParseObject, rejects_a_key_given_twice_in_one_object) {
  // Last-one-wins would let a body say two things at once ({"quantity":1,"quantity":99}),
  // and what a proxy or a log reads could differ from what cartd acts on.
  for (const char* body : {
           R"({"quantity":1,"quantity":2})",
           R"({"product_id":"p","inventory_id":"i","quantity":1,"product_id":"q"})",
           R"({"outer":{"a":1,"b":2,"a":3}})", R"({"list":[{"a":1,"a":1}]})",
           R"({"a":1,"\u0061":2})",  // the same key, once escaped
       }) {
    auto r = parse_object(body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().status, 400u) << body;
    EXPECT_EQ(r.error().code, "duplicate_key") << body;
  }
  auto line = parse_line_request(
      R"({"product_id":"p","inventory_id":"i","quantity":1,"quantity":2})", limits());
  ASSERT_FALSE(line);
  EXPECT_EQ(line.error().code, "duplicate_key");
}

TEST(ParseObject, the_same_key_in_different_objects_is_fine) {
  auto r = parse_object(R"({"a":{"a":1},"b":[{"a":1},{"a":2}],"c":{"b":{"a":null}}})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->at("a").at("a").as_int64(), 1);
  EXPECT_EQ(r->at("b").as_array().size(), 2u);
}

TEST(ParseObject, still_rejects_what_is_not_one_json_object) {
  for (const char* body : {"", "{", "[]", "{} {}", "{\"a\":1,}", "{\"a\":1} x", "1"}) {
    auto r = parse_object(body);
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code, "invalid_json") << body;
  }
}

TEST(PlanLineChange, a_new_line_holds_its_quantity) {
  auto c = plan_line_change(std::nullopt, Line{"a", 3});
  EXPECT_FALSE(c.release);
  ASSERT_TRUE(c.hold);
  EXPECT_EQ(c.hold->inventory_id, "a");
  EXPECT_EQ(c.hold->quantity, 3);
}

TEST(PlanLineChange, growing_a_line_holds_only_the_difference) {
  auto c = plan_line_change(Line{"a", 3}, Line{"a", 5});
  EXPECT_FALSE(c.release);
  ASSERT_TRUE(c.hold);
  EXPECT_EQ(c.hold->quantity, 2);
}

TEST(PlanLineChange, shrinking_a_line_releases_only_the_difference) {
  auto c = plan_line_change(Line{"a", 5}, Line{"a", 1});
  EXPECT_FALSE(c.hold);
  ASSERT_TRUE(c.release);
  EXPECT_EQ(c.release->quantity, 4);
}

TEST(PlanLineChange, the_same_quantity_moves_nothing) {
  auto c = plan_line_change(Line{"a", 2}, Line{"a", 2});
  EXPECT_FALSE(c.hold);
  EXPECT_FALSE(c.release);
}

TEST(PlanLineChange, moving_to_another_row_releases_all_and_holds_all) {
  auto c = plan_line_change(Line{"a", 2}, Line{"b", 3});
  ASSERT_TRUE(c.release);
  ASSERT_TRUE(c.hold);
  EXPECT_EQ(c.release->inventory_id, "a");
  EXPECT_EQ(c.release->quantity, 2);
  EXPECT_EQ(c.hold->inventory_id, "b");
  EXPECT_EQ(c.hold->quantity, 3);
}

TEST(PlanLineChange, removing_a_line_releases_it) {
  auto c = plan_line_change(Line{"a", 2}, std::nullopt);
  ASSERT_TRUE(c.release);
  EXPECT_EQ(c.release->quantity, 2);
  auto zero = plan_line_change(Line{"a", 2}, Line{"a", 0});
  ASSERT_TRUE(zero.release);
  EXPECT_EQ(zero.release->quantity, 2);
  EXPECT_FALSE(zero.hold);
}

}  // namespace
}  // namespace cartd::cart
