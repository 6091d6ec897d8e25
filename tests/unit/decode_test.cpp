// Decoding the replies of the cartd Redis Functions (their shapes are in src/lua).
#include <gtest/gtest.h>

#include "cart/service.hpp"
#include "replies.hpp"
#include "stock/service.hpp"

namespace cartd::cart {
namespace {

using redis::Reply;

using test::arr;
using test::num;
using test::str;

TEST(DecodeSetLine, reads_ok_with_the_cart) {
  auto view = arr({num(1234), str("p"), str("inv"), num(3), str("Mug"), num(1499)});
  auto r = decode_set_line(arr({str("ok"), str("sid"), num(1), num(1234), num(3), num(4), view}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, SetLineOutcome::Kind::ok);
  EXPECT_EQ(r->dropped, 4);
  EXPECT_EQ(r->cart.id, "sid");
  EXPECT_TRUE(r->created);
  EXPECT_EQ(r->cart.deadline_ms, 1234);
  ASSERT_EQ(r->cart.lines.size(), 1u);
  EXPECT_EQ(r->cart.lines[0].name, "Mug");
  EXPECT_EQ(r->cart.lines[0].unit_price_cents, 1499);
}

TEST(DecodeSetLine, reads_insufficient_with_available) {
  auto r = decode_set_line(arr({str("insufficient"), num(2), num(1)}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, SetLineOutcome::Kind::insufficient);
  EXPECT_EQ(r->available, 2);
  EXPECT_EQ(r->dropped, 1);
}

TEST(DecodeSetLine, insufficient_says_whether_carts_wait_on_the_row) {
  auto r = decode_set_line(arr({str("insufficient"), num(0), num(0), num(1)}));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->waitlisted);
  EXPECT_FALSE(decode_set_line(arr({str("insufficient"), num(0), num(0), num(0)}))->waitlisted);
}

TEST(DecodeSetLine, reads_the_per_cart_limit) {
  auto r = decode_set_line(arr({str("limit_exceeded"), num(2)}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, SetLineOutcome::Kind::limit_exceeded);
  EXPECT_EQ(r->limit, 2);
}

TEST(DecodeSetLine, no_cart_says_whether_it_expired) {
  auto r = decode_set_line(arr({str("no_cart"), str("expired")}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, SetLineOutcome::Kind::no_cart);
  EXPECT_EQ(r->missing, Missing::expired);
}

TEST(DecodeSetLine, a_lua_error_is_a_server_fault) {
  EXPECT_FALSE(decode_set_line(Reply{Reply::Type::error, 0, "ERR boom", {}}));
  EXPECT_FALSE(decode_set_line(arr({str("what")})));
  EXPECT_FALSE(decode_set_line(arr({str("ok"), str("sid")})));
}

TEST(DecodeCart, reads_lines_sorted_by_product) {
  auto r = decode_cart("id", arr({num(99), str("b"), str("inv-b"), num(2), str("B"), num(5),
                                  str("a"), str("inv-a"), num(1), str("A"), num(7)}));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->cart);
  EXPECT_EQ(r->cart->deadline_ms, 99);
  ASSERT_EQ(r->cart->lines.size(), 2u);
  EXPECT_EQ(r->cart->lines[0].product_id, "a");
  EXPECT_EQ(r->cart->lines[0].inventory_id, "inv-a");
  EXPECT_EQ(r->cart->lines[1].quantity, 2);
}

TEST(DecodeCart, reads_the_places_and_offers_of_a_waiting_cart) {
  auto waits = arr({arr({str("inv-a"), str("a"), str("waiting"), num(2), num(7)}),
                    arr({str("inv-b"), str("b"), str("offer"), num(1), num(5000)})});
  auto r =
      decode_cart("id", arr({num(99), str("c"), str("inv-c"), num(1), str("C"), num(5), waits}));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->cart);
  ASSERT_EQ(r->cart->lines.size(), 1u);
  ASSERT_EQ(r->cart->waitlist.size(), 1u);
  EXPECT_EQ(r->cart->waitlist[0].inventory_id, "inv-a");
  EXPECT_EQ(r->cart->waitlist[0].quantity, 2);
  EXPECT_EQ(r->cart->waitlist[0].position, 7);
  ASSERT_EQ(r->cart->offers.size(), 1u);
  EXPECT_EQ(r->cart->offers[0].product_id, "b");
  EXPECT_EQ(r->cart->offers[0].expires_at_ms, 5000);
  auto only_waits = decode_cart("id", arr({num(99), arr({})}));
  ASSERT_TRUE(only_waits && only_waits->cart);
  EXPECT_TRUE(only_waits->cart->lines.empty());
  EXPECT_FALSE(decode_cart("id", arr({num(99), arr({arr({str("x")})})}))) << "a bad place";
}

TEST(DecodeCart, a_missing_cart_says_why_and_bad_lines_are_faults) {
  auto expired = decode_cart("id", str("expired"));
  ASSERT_TRUE(expired);
  EXPECT_FALSE(expired->cart);
  EXPECT_EQ(expired->missing, Missing::expired);
  EXPECT_EQ(decode_cart("id", str("unknown"))->missing, Missing::unknown);
  EXPECT_FALSE(decode_cart("id", arr({num(1), str("a"), str("inv")})));
  EXPECT_FALSE(decode_cart("id", arr({num(1), str("a"), str("inv"), str("x"), str("A"), num(1)})));
}

TEST(DecodeLines, reads_the_cart_hash_sorted_by_product_without_its_other_fields) {
  auto r = decode_lines("id", arr({str("@"), str("1700000000000"), str("b"), str("inv-b 2"),
                                   str("!"), str("1"), str("a"), str("inv-a 1")}));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->cart);
  ASSERT_EQ(r->cart->lines.size(), 2u);
  EXPECT_EQ(r->cart->lines[0].product_id, "a");
  EXPECT_EQ(r->cart->lines[0].inventory_id, "inv-a");
  EXPECT_EQ(r->cart->lines[1].quantity, 2);
}

TEST(DecodeLines, the_marks_of_rows_a_cart_waits_on_are_not_lines) {
  auto r = decode_lines(
      "id", arr({str("@"), str("1"), str("?inv-a"), str("1"), str("p"), str("inv-p 2")}));
  ASSERT_TRUE(r && r->cart);
  ASSERT_EQ(r->cart->lines.size(), 1u);
  EXPECT_EQ(r->cart->lines[0].product_id, "p");
}

TEST(DecodeLines, no_hash_is_no_cart_and_bad_lines_are_faults) {
  auto gone = decode_lines("id", arr({}));
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->cart);
  auto empty = decode_lines("id", arr({str("@"), str("1700000000000")}));
  ASSERT_TRUE(empty);
  ASSERT_TRUE(empty->cart) << "a live cart without lines";
  EXPECT_TRUE(empty->cart->lines.empty());
  EXPECT_FALSE(decode_lines("id", arr({str("a")})));
  EXPECT_FALSE(decode_lines("id", arr({str("a"), str("inv")})));
  EXPECT_FALSE(decode_lines("id", arr({str("a"), str("inv x")})));
  EXPECT_FALSE(decode_lines("id", str("a")));
}

TEST(DecodeCheckoutStart, reads_the_frozen_lines) {
  auto r = decode_checkout_start(arr({str("begun"), str(R"([{"product_id":"p","inventory_id":"i",
      "quantity":2,"name":"P","unit_price_cents":150}])"),
                                      str("attempt-1")}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kind, CheckoutStart::Kind::begun);
  EXPECT_EQ(r->attempt_id, "attempt-1");
  ASSERT_EQ(r->lines.size(), 1u);
  EXPECT_EQ(r->lines[0].quantity, 2);
  EXPECT_EQ(r->lines[0].unit_price_cents, 150);
  EXPECT_FALSE(decode_checkout_start(arr({str("begun"), str("not json")})));
  auto done = decode_checkout_start(arr({str("done"), str("order-1")}));
  ASSERT_TRUE(done);
  EXPECT_EQ(done->order_id, "order-1");
}

TEST(DecodeStock, reads_counts) {
  auto r = stock::decode_stock("inv", arr({str("p"), num(10), num(3)}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->available(), 7);
  auto none = stock::decode_stock("inv", Reply{});
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

}  // namespace
}  // namespace cartd::cart
