#include "cart/sold_out.hpp"

#include <gtest/gtest.h>

namespace cartd::cart {
namespace {

using namespace std::chrono_literals;
using Clock = SoldOutMemory::Clock;

TEST(SoldOutMemory, remembers_a_row_for_its_ttl_only) {
  SoldOutMemory memory(100ms);
  auto t = Clock::now();
  EXPECT_FALSE(memory.sold_out("mug", t));
  memory.remember("mug", t);
  EXPECT_TRUE(memory.sold_out("mug", t + 99ms));
  EXPECT_FALSE(memory.sold_out("cap", t + 1ms));
  EXPECT_FALSE(memory.sold_out("mug", t + 100ms));
  EXPECT_FALSE(memory.sold_out("mug", t + 1ms)) << "a lapsed row is forgotten";
}

TEST(SoldOutMemory, forgets_a_row_on_request_and_nothing_with_a_zero_ttl) {
  SoldOutMemory memory(100ms);
  auto t = Clock::now();
  memory.remember("mug", t);
  memory.forget("mug");
  EXPECT_FALSE(memory.sold_out("mug", t));
  SoldOutMemory off(0ms);
  off.remember("mug", t);
  EXPECT_FALSE(off.sold_out("mug", t));
}

TEST(SoldOutMemory, a_row_with_a_waitlist_is_sold_out_for_new_carts_only) {
  // Carts wait on the row: a cart that exists may hold an offer of its units, which
  // only Redis knows, so only a request for a new cart is refused here.
  SoldOutMemory memory(100ms);
  auto t = Clock::now();
  memory.remember("drop", t, true);
  EXPECT_TRUE(memory.sold_out("drop", t, false));
  EXPECT_FALSE(memory.sold_out("drop", t, true));
  memory.remember("plain", t);
  EXPECT_TRUE(memory.sold_out("plain", t, true)) << "no line: nobody holds an offer";
}

TEST(SoldOutMemory, a_full_memory_starts_afresh) {
  SoldOutMemory memory(100ms, 2);
  auto t = Clock::now();
  memory.remember("a", t);
  memory.remember("b", t);
  memory.remember("c", t);
  EXPECT_FALSE(memory.sold_out("a", t));
  EXPECT_TRUE(memory.sold_out("c", t));
}

}  // namespace
}  // namespace cartd::cart
