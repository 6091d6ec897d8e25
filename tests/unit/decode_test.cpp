// Decoding the replies of the cartd Redis Functions (their shapes are in src/lua).
#include <gtest/gtest.h>

#include "cart/service.hpp"

namespace cartd::cart {
namespace {

using redis::Reply;

Reply str(std::string s) {
  return Reply{Reply::Type::string, 0, std::move(s), {}};
}
Reply num(std::int64_t v) {
  return Reply{Reply::Type::integer, v, "", {}};
}
Reply arr(std::vector<Reply> e) {
  return Reply{Reply::Type::array, 0, "", std::move(e)};
}

TEST(DecodeSetLine, reads_ok) {
  auto r = decode_set_line(arr({str("ok"), str("sid"), num(1), num(1234), num(3)}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, SetLineOutcome::Kind::ok);
  EXPECT_EQ(r->session_id, "sid");
  EXPECT_TRUE(r->created);
  EXPECT_EQ(r->deadline_ms, 1234);
  EXPECT_EQ(r->quantity, 3);
}

TEST(DecodeSetLine, reads_insufficient_with_available) {
  auto r = decode_set_line(arr({str("insufficient"), num(2)}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, SetLineOutcome::Kind::insufficient);
  EXPECT_EQ(r->available, 2);
}

TEST(DecodeSetLine, a_lua_error_is_a_server_fault) {
  EXPECT_FALSE(decode_set_line(Reply{Reply::Type::error, 0, "ERR boom", {}}));
  EXPECT_FALSE(decode_set_line(arr({str("what")})));
  EXPECT_FALSE(decode_set_line(arr({str("ok"), str("sid")})));
}

TEST(DecodeCart, reads_lines_sorted_by_product) {
  auto r = decode_cart(arr({num(99), str("b"), str("inv-b 2"), str("a"), str("inv-a 1")}));
  ASSERT_TRUE(r);
  ASSERT_TRUE(*r);
  EXPECT_EQ((*r)->deadline_ms, 99);
  ASSERT_EQ((*r)->lines.size(), 2u);
  EXPECT_EQ((*r)->lines[0].product_id, "a");
  EXPECT_EQ((*r)->lines[0].inventory_id, "inv-a");
  EXPECT_EQ((*r)->lines[1].quantity, 2);
}

TEST(DecodeCart, nil_is_no_cart_and_bad_lines_are_faults) {
  auto none = decode_cart(Reply{});
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  EXPECT_FALSE(decode_cart(arr({num(1), str("a"), str("no-space")})));
  EXPECT_FALSE(decode_cart(arr({num(1), str("a")})));
}

TEST(DecodeStock, reads_counts) {
  auto r = decode_stock("inv", arr({str("p"), num(10), num(3)}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->available(), 7);
  auto none = decode_stock("inv", Reply{});
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

}  // namespace
}  // namespace cartd::cart
