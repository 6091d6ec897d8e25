// The cartd Redis Functions, called directly on a real redis-server: the hold
// bookkeeping that every route and the expiry paths rely on.
#include <gtest/gtest.h>

#include <thread>

#include "harness.hpp"
#include "lua/library.hpp"

namespace cartd::test {
namespace {

using namespace std::chrono_literals;

class LuaFunctions : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = redis_.command({"FUNCTION", "LOAD", "REPLACE", std::string(scripts::library)});
    ASSERT_FALSE(r.is_error()) << r.str;
    call({"cartd_mirror", "inv", "prod", "10", "1", "Item", "100"});
  }

  redis::Reply call(std::vector<std::string> args) {
    args.insert(args.begin() + 1, "0");
    args.insert(args.begin(), "FCALL");
    auto r = redis_.command(args);
    EXPECT_FALSE(r.is_error()) << r.str;
    return r;
  }
  // Holds qty units of "inv" in a new cart with the given TTL; returns its id.
  std::string hold(int qty, int ttl_ms = 60000, const std::string& sid = "") {
    std::string id =
        sid.empty() ? "00000000-0000-4000-8000-" + std::to_string(100000000000 + n_++) : sid;
    auto r = call({"cartd_set_line", sid.empty() ? "" : sid, id, "prod", "inv", std::to_string(qty),
                   "set", std::to_string(ttl_ms), "7200000", "100", "100"});
    EXPECT_EQ(r.text_at(0), "ok");
    return id;
  }
  std::int64_t reserved() { return call({"cartd_stock", "inv"}).int_at(2).value_or(-1); }
  std::int64_t raw_reserved() { return std::stoll(redis_.command({"HGET", "st:{inv}", "r"}).str); }

  RedisServer redis_;
  int n_ = 0;
};

TEST_F(LuaFunctions, reserved_is_the_sum_of_the_holds) {
  hold(3);
  std::string b = hold(4);
  EXPECT_EQ(reserved(), 7);
  hold(1, 60000, b);
  EXPECT_EQ(reserved(), 4);
}

TEST_F(LuaFunctions, an_expired_hold_stops_counting_at_its_deadline) {
  hold(6, 100);
  EXPECT_EQ(raw_reserved(), 6);
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(reserved(), 0) << "no release ran, yet the units are free";
  EXPECT_EQ(call({"cartd_stock", "inv"}).int_at(1), 10);
}

TEST_F(LuaFunctions, a_reservation_drops_expired_holds_before_it_checks_stock) {
  hold(10, 100);
  auto r = call({"cartd_set_line", "", "00000000-0000-4000-8000-aaaaaaaaaaaa", "prod", "inv", "1",
                 "set", "60000", "7200000", "100", "100"});
  EXPECT_EQ(r.text_at(0), "insufficient");
  std::this_thread::sleep_for(150ms);
  hold(10);
  EXPECT_EQ(raw_reserved(), 10);
}

TEST_F(LuaFunctions, release_returns_the_units_once) {
  std::string sid = hold(5, 50);
  std::this_thread::sleep_for(100ms);
  auto first = call({"cartd_expire", sid});
  EXPECT_EQ(first.int_at(0), 1);
  EXPECT_EQ(first.int_at(1), 5) << "the units it returned";
  auto again = call({"cartd_expire", sid});
  EXPECT_EQ(again.int_at(0), 0);
  EXPECT_EQ(again.int_at(1), 0);
  EXPECT_EQ(raw_reserved(), 0);
  EXPECT_EQ(redis_.command({"XLEN", "cart-events"}).integer, 1);
  EXPECT_EQ(redis_.command({"EXISTS", "c:{" + sid + "}"}).integer, 0);
  EXPECT_EQ(redis_.command({"ZSCORE", "dl", sid}).type, redis::Reply::Type::nil);
}

TEST_F(LuaFunctions, release_after_logical_expiry_returns_nothing_more) {
  std::string sid = hold(5, 50);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(reserved(), 0);  // the hold is dropped logically
  auto released = call({"cartd_expire", sid});
  EXPECT_EQ(released.int_at(0), 1);
  EXPECT_EQ(released.int_at(1), 0) << "the units were counted where they were dropped";
  EXPECT_EQ(raw_reserved(), 0) << "not -5: the dropped hold is not returned twice";
}

TEST_F(LuaFunctions, expire_leaves_a_live_cart_alone) {
  std::string sid = hold(2);
  EXPECT_EQ(call({"cartd_expire", sid}).int_at(0), 0);
  EXPECT_EQ(raw_reserved(), 2);
}

TEST_F(LuaFunctions, abandon_returns_a_live_cart_at_once) {
  std::string sid = hold(2);
  auto abandoned = call({"cartd_abandon", sid});
  EXPECT_EQ(abandoned.text_at(0), "abandoned");
  EXPECT_EQ(abandoned.int_at(2), 2) << "the units it returned";
  EXPECT_EQ(raw_reserved(), 0);
  auto ev = redis_.command({"XRANGE", "cart-events", "-", "+"});
  ASSERT_EQ(ev.elements.size(), 1u);
  EXPECT_EQ(ev.elements[0].elements[1].text_at(1), "abandoned");
}

TEST_F(LuaFunctions, sweep_releases_due_carts_in_batches) {
  for (int i = 0; i < 7; ++i) hold(1, 50);
  std::string live = hold(1);
  std::this_thread::sleep_for(100ms);
  auto first = call({"cartd_sweep", "5"});
  EXPECT_EQ(first.int_at(0), 5);
  EXPECT_EQ(first.int_at(1), 1) << "a full batch says there may be more";
  EXPECT_EQ(first.int_at(2), 5) << "one unit per cart returned";
  auto second = call({"cartd_sweep", "5"});
  EXPECT_EQ(second.int_at(0), 2);
  EXPECT_EQ(second.int_at(1), 0);
  EXPECT_EQ(raw_reserved(), 1) << "the live cart keeps its hold";
  EXPECT_EQ(redis_.command({"XLEN", "cart-events"}).integer, 7);
  EXPECT_EQ(redis_.command({"EXISTS", "c:{" + live + "}"}).integer, 1);
}

TEST_F(LuaFunctions, mirror_sets_absolute_values_and_recomputes_reserved) {
  hold(3);
  redis_.command({"HSET", "st:{inv}", "r", "99"});  // a drifted count
  call({"cartd_mirror", "inv", "prod", "12", "2", "Item", "100"});
  call({"cartd_mirror", "inv", "prod", "12", "2", "Item", "100"});
  auto s = call({"cartd_stock", "inv"});
  EXPECT_EQ(s.int_at(1), 12);
  EXPECT_EQ(s.int_at(2), 3);
}

TEST_F(LuaFunctions, take_dirty_hands_each_changed_row_to_the_db_writer) {
  call({"cartd_take_dirty", "100"});
  hold(2);
  auto r = call({"cartd_take_dirty", "100"});
  ASSERT_EQ(r.elements.size(), 3u);
  EXPECT_EQ(r.text_at(0), "inv");
  EXPECT_EQ(r.int_at(1), 10);
  EXPECT_EQ(r.int_at(2), 2);
  EXPECT_EQ(call({"cartd_take_dirty", "100"}).elements.size(), 0u);
}

TEST_F(LuaFunctions, the_cart_lifetime_caps_the_sliding_deadline) {
  auto r = call({"cartd_set_line", "", "00000000-0000-4000-8000-bbbbbbbbbbbb", "prod", "inv", "1",
                 "set", "60000", "200", "100", "100"});
  ASSERT_EQ(r.text_at(0), "ok");
  auto pttl = redis_.command({"PTTL", "s:{00000000-0000-4000-8000-bbbbbbbbbbbb}"}).integer;
  EXPECT_LE(pttl, 200);
  EXPECT_GT(pttl, 0);
}

}  // namespace
}  // namespace cartd::test
