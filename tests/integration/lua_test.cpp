// The cartd Redis Functions, called directly on a real redis-server: the hold
// bookkeeping that every route and the expiry paths rely on.
#include <gtest/gtest.h>

#include <thread>

#include "functions/keys.hpp"
#include "harness.hpp"
#include "lua/library.hpp"

namespace cartd::test {
namespace lua_test {

using namespace std::chrono_literals;

constexpr const char* kQuantum = "1";  // ms: deadlines as asked, unless a test rounds them

class LuaFunctions : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = redis_.command({"FUNCTION", "LOAD", "REPLACE", std::string(scripts::library)});
    ASSERT_FALSE(r.is_error()) << r.str;
    mirror("inv", 10);
  }

  // FCALL name with `keys`, then `args`.
  redis::Reply call(const std::string& name, const std::vector<std::string>& keys,
                    const std::vector<std::string>& args) {
    std::vector<std::string> command{"FCALL", name, std::to_string(keys.size())};
    command.insert(command.end(), keys.begin(), keys.end());
    command.insert(command.end(), args.begin(), args.end());
    auto r = redis_.command(command);
    EXPECT_FALSE(r.is_error()) << r.str;
    return r;
  }
  static std::string product_of(const std::string& inv) {
    return inv == "inv" ? "prod" : "prod-" + inv;
  }
  void mirror(const std::string& inv, int on_hand) {
    call("cartd_mirror", {keys::stock(inv)},
         {inv, product_of(inv), std::to_string(on_hand), "1", "Item", "100", "0"});
  }
  redis::Reply set_line(const std::string& sid, bool create, const std::string& inv, int qty,
                        int ttl_ms = 60000, const std::string& quantum = kQuantum,
                        int max_life_ms = 7200000) {
    return call("cartd_set_line", {keys::cart(sid), keys::stock(inv)},
                {sid, create ? "1" : "0", product_of(inv), inv, std::to_string(qty), "set",
                 std::to_string(ttl_ms), std::to_string(max_life_ms), "100", "100", "", quantum});
  }
  // Holds qty units of `inv` in a new cart (or `sid`'s) with the given TTL; returns its id.
  std::string hold(int qty, int ttl_ms = 60000, const std::string& sid = "",
                   const std::string& inv = "inv") {
    std::string id =
        sid.empty() ? "00000000-0000-4000-8000-" + std::to_string(100000000000 + n_++) : sid;
    if (inv != "inv") mirror(inv, 10);
    auto r = call("cartd_set_line", {keys::cart(id), keys::stock(inv)},
                  {id, "1", product_of(inv), inv, std::to_string(qty), "set",
                   std::to_string(ttl_ms), "7200000", "100", "100", "", kQuantum});
    EXPECT_EQ(r.text_at(0), "ok");
    return id;
  }
  std::int64_t reserved() {
    return call("cartd_stock", {keys::stock("inv")}, {"inv"}).int_at(2).value_or(-1);
  }
  std::int64_t raw_reserved(const std::string& inv = "inv") {
    return std::stoll(redis_.stock_row(inv)["r"]);
  }
  // The row's buckets: deadline -> units.
  std::map<std::int64_t, std::int64_t> buckets(const std::string& inv = "inv") {
    std::map<std::int64_t, std::int64_t> out;
    for (auto& [field, value] : redis_.stock_row(inv)) {
      if (field.starts_with('t')) out[std::stoll(field.substr(1))] = std::stoll(value);
    }
    return out;
  }
  // Another inventory id in the same key group as "inv".
  std::string same_group_as_inv(int nth) {
    for (int i = 0, found = 0;; ++i) {
      std::string id = "row" + std::to_string(i);
      if (keys::group_of(id) == keys::group_of("inv") && found++ == nth) return id;
    }
  }

  redis::Reply begin_checkout(const std::string& sid, int grace_ms = 30000) {
    auto r = call("cartd_checkout_begin", {keys::cart(sid)},
                  {sid, "key-" + sid, std::to_string(grace_ms), "attempt-" + sid, kQuantum});
    EXPECT_EQ(r.text_at(0), "begun");
    return r;
  }
  // The order of `sid` is in the main DB, which has `on_hand` units of "inv" at `version`
  // after it: Redis settles it.
  redis::Reply finish_checkout(const std::string& sid, int qty, int on_hand, int version) {
    return call("cartd_checkout_finish", {keys::cart(sid)},
                {sid, "key-" + sid, "order-" + sid,
                 "[{\"product_id\":\"prod\",\"inventory_id\":\"inv\",\"quantity\":" +
                     std::to_string(qty) + ",\"on_hand\":" + std::to_string(on_hand) +
                     ",\"version\":" + std::to_string(version) + "}]"});
  }
  std::int64_t on_hand() {
    return call("cartd_stock", {keys::stock("inv")}, {"inv"}).int_at(1).value_or(-1);
  }

  RedisServer redis_;
  int n_ = 0;
};

TEST_F(LuaFunctions, lua_and_cpp_name_the_same_keys) {
  // cartd_mirror writes the rows at the keys Lua computes; C++ reads them at its own.
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) ids.push_back("id-" + std::to_string(i * 7919) + ".x_Y");
  for (const std::string& id : ids) mirror(id, 1);
  for (const std::string& id : ids) {
    EXPECT_EQ(redis_.command({"EXISTS", keys::stock(id)}).integer, 1) << id;
  }
}

TEST_F(LuaFunctions, reserved_is_the_sum_of_the_holds) {
  hold(3);
  std::string b = hold(4);
  EXPECT_EQ(reserved(), 7);
  hold(1, 60000, b);
  EXPECT_EQ(reserved(), 4);
}

TEST_F(LuaFunctions, carts_with_one_deadline_share_one_bucket) {
  // A 60 s quantum: two carts made now end at the same rounded deadline.
  ASSERT_EQ(
      set_line("00000000-0000-4000-8000-000000000001", true, "inv", 2, 60000, "60000").text_at(0),
      "ok");
  ASSERT_EQ(
      set_line("00000000-0000-4000-8000-000000000002", true, "inv", 3, 60000, "60000").text_at(0),
      "ok");
  auto b = buckets();
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b.begin()->second, 5);
  EXPECT_EQ(b.begin()->first % 60000, 0) << "rounded up to the quantum";
  EXPECT_EQ(
      redis_.command({"PEXPIRETIME", keys::cart("00000000-0000-4000-8000-000000000001")}).integer,
      b.begin()->first)
      << "the cart ends with its bucket";
}

TEST_F(LuaFunctions, a_change_moves_the_other_lines_holds_to_the_new_deadline) {
  std::string other = same_group_as_inv(0);
  std::string sid = hold(2, 60000);
  std::this_thread::sleep_for(5ms);
  hold(1, 60000, sid, other);
  auto deadline = redis_.command({"PEXPIRETIME", keys::cart(sid)}).integer;
  EXPECT_EQ(buckets(), (std::map<std::int64_t, std::int64_t>{{deadline, 2}}));
  EXPECT_EQ(buckets(other), (std::map<std::int64_t, std::int64_t>{{deadline, 1}}));
  EXPECT_EQ(raw_reserved(), 2);
}

TEST_F(LuaFunctions, a_hold_made_after_a_stale_bucket_bound_is_rewritten_still_expires) {
  // The row's e (no bucket ends before it) goes stale when a cart's hold moves to a
  // later bucket; the next change on the row rewrites it. A hold made in that same call
  // must still be found when it expires.
  std::string other = same_group_as_inv(0);
  std::string a = hold(2, 100);
  hold(1, 60000, a, other);  // a's deadline moves: its inv hold leaves the 100 ms bucket
  ASSERT_EQ(set_line(a, false, "inv", 0).text_at(0), "ok");  // and then leaves inv
  std::this_thread::sleep_for(150ms);
  hold(1, 100);  // drops nothing, rewrites e, holds 1 until +100 ms
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(reserved(), 0) << "the new hold ended at its deadline";
  EXPECT_EQ(raw_reserved(), 0);
}

TEST_F(LuaFunctions, an_expired_hold_stops_counting_at_its_deadline) {
  hold(6, 100);
  EXPECT_EQ(raw_reserved(), 6);
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(reserved(), 0) << "no release ran, yet the units are free";
  EXPECT_EQ(call("cartd_stock", {keys::stock("inv")}, {"inv"}).int_at(1), 10);
  EXPECT_TRUE(buckets().empty()) << "the bucket was dropped";
}

TEST_F(LuaFunctions, a_reservation_drops_expired_holds_before_it_checks_stock) {
  hold(10, 100);
  auto r = set_line("00000000-0000-4000-8000-aaaaaaaaaaaa", true, "inv", 1);
  EXPECT_EQ(r.text_at(0), "insufficient");
  std::this_thread::sleep_for(150ms);
  hold(10);
  EXPECT_EQ(raw_reserved(), 10);
}

TEST_F(LuaFunctions, a_cart_that_is_not_live_is_created_only_when_asked) {
  auto r = set_line("00000000-0000-4000-8000-cccccccccccc", false, "inv", 1);
  EXPECT_EQ(r.text_at(0), "no_cart");
  EXPECT_EQ(r.text_at(1), "unknown");
  EXPECT_EQ(raw_reserved(), 0);
}

TEST_F(LuaFunctions, expired_records_an_expired_cart_once) {
  std::string sid = hold(5, 50);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(redis_.command({"EXISTS", keys::cart(sid)}).integer, 0) << "Redis deleted it";
  auto first = call("cartd_expired", {keys::cart(sid)}, {sid});
  EXPECT_EQ(first.integer, 1);
  EXPECT_EQ(call("cartd_expired", {keys::cart(sid)}, {sid}).integer, 0);
  EXPECT_EQ(redis_.cart_events().size(), 1u);
  EXPECT_EQ(redis_.command({"GET", keys::gone(sid)}).str, "expired");
  EXPECT_EQ(raw_reserved(), 5) << "the stored count falls when the row is next touched";
  EXPECT_EQ(reserved(), 0);
  EXPECT_EQ(raw_reserved(), 0) << "not -5: the dropped bucket is not returned twice";
}

TEST_F(LuaFunctions, expired_leaves_a_live_cart_alone) {
  std::string sid = hold(2);
  EXPECT_EQ(call("cartd_expired", {keys::cart(sid)}, {sid}).integer, 0);
  EXPECT_TRUE(redis_.cart_events().empty());
  EXPECT_EQ(raw_reserved(), 2);
}

TEST_F(LuaFunctions, abandon_returns_a_live_cart_at_once) {
  std::string sid = hold(2);
  auto abandoned = call("cartd_abandon", {keys::cart(sid)}, {sid});
  EXPECT_EQ(abandoned.text_at(0), "abandoned");
  EXPECT_EQ(abandoned.int_at(2), 2) << "the units it returned";
  EXPECT_EQ(raw_reserved(), 0);
  EXPECT_TRUE(buckets().empty());
  auto ev = redis_.cart_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].elements[1].text_at(1), "abandoned");
  EXPECT_EQ(call("cartd_abandon", {keys::cart(sid)}, {sid}).text_at(0), "expired");
}

TEST_F(LuaFunctions, group_functions_take_one_group_or_many) {
  std::string other = "other";
  while (keys::group_of(other) == keys::group_of("inv")) other += "x";
  hold(2, 50);
  hold(3, 50, "", other);
  std::this_thread::sleep_for(100ms);
  auto swept = call("cartd_sweep",
                    {keys::due(keys::group_of("inv")), keys::due(keys::group_of(other))}, {"10"});
  EXPECT_EQ(swept.int_at(0), 2);
  EXPECT_EQ(swept.int_at(2), 5);
  auto dirty =
      call("cartd_take_dirty",
           {keys::dirty(keys::group_of("inv")), keys::dirty(keys::group_of(other))}, {"10"});
  EXPECT_EQ(dirty.elements.size(), 7u) << "more, and both rows";
}

TEST_F(LuaFunctions, sweep_drops_due_buckets_in_batches) {
  std::vector<std::string> rows{"inv", same_group_as_inv(0), same_group_as_inv(1)};
  for (const std::string& inv : rows) hold(1, 50, "", inv);
  std::string live = hold(1);
  std::this_thread::sleep_for(100ms);
  std::string due = keys::due(keys::group_of("inv"));
  auto first = call("cartd_sweep", {due}, {"2"});
  EXPECT_EQ(first.int_at(0), 2);
  EXPECT_EQ(first.int_at(1), 1) << "a full batch says there may be more";
  EXPECT_EQ(first.int_at(2), 2) << "one unit per row returned";
  auto second = call("cartd_sweep", {due}, {"2"});
  EXPECT_EQ(second.int_at(2), 1);
  EXPECT_EQ(second.int_at(1), 0);
  for (const std::string& inv : rows) {
    EXPECT_EQ(raw_reserved(inv), inv == "inv" ? 1 : 0) << inv << ": the live cart keeps its hold";
  }
  EXPECT_EQ(redis_.command({"EXISTS", keys::cart(live)}).integer, 1);
}

TEST_F(LuaFunctions, mirror_sets_absolute_values_and_recomputes_reserved) {
  hold(3);
  redis_.command({"HSET", keys::stock("inv"), "r", "99"});  // a drifted count
  call("cartd_mirror", {keys::stock("inv")}, {"inv", "prod", "12", "2", "Item", "100", "0"});
  call("cartd_mirror", {keys::stock("inv")}, {"inv", "prod", "12", "2", "Item", "100", "0"});
  auto s = call("cartd_stock", {keys::stock("inv")}, {"inv"});
  EXPECT_EQ(s.int_at(1), 12);
  EXPECT_EQ(s.int_at(2), 3);
}

TEST_F(LuaFunctions, take_dirty_hands_each_changed_row_to_the_db_writer) {
  std::string dirty = keys::dirty(keys::group_of("inv"));
  call("cartd_take_dirty", {dirty}, {"100"});
  hold(2);
  auto r = call("cartd_take_dirty", {dirty}, {"100"});
  ASSERT_EQ(r.elements.size(), 4u);
  EXPECT_EQ(r.int_at(0), 0) << "no batch was full";
  EXPECT_EQ(r.text_at(1), "inv");
  EXPECT_EQ(r.int_at(2), 10);
  EXPECT_EQ(r.int_at(3), 2);
  EXPECT_EQ(call("cartd_take_dirty", {dirty}, {"100"}).elements.size(), 1u);
}

TEST_F(LuaFunctions, the_cart_lifetime_caps_the_sliding_deadline) {
  std::string sid = "00000000-0000-4000-8000-bbbbbbbbbbbb";
  auto r = set_line(sid, true, "inv", 1, 60000, "1000", 200);
  ASSERT_EQ(r.text_at(0), "ok");
  auto pttl = redis_.command({"PTTL", keys::cart(sid)}).integer;
  EXPECT_LE(pttl, 200);
  EXPECT_GT(pttl, 0);
}

TEST_F(LuaFunctions, a_finish_does_not_subtract_another_checkouts_units_twice) {
  // Two checkouts on one row (10 on hand, v1): B's order commits in the DB first (4, v2),
  // then A's (2, v3); A's finish runs first. The DB's count 2 lacks B's 6 units while
  // B's holds still count here until B's finish: on_hand must not fall below them.
  std::string a = hold(2), b = hold(6);
  begin_checkout(a);
  begin_checkout(b);
  ASSERT_EQ(finish_checkout(a, 2, 2, 3).text_at(0), "finished");
  EXPECT_EQ(reserved(), 6);
  EXPECT_EQ(on_hand(), 8) << "10 less A's 2: B's 6 still count as held";
  EXPECT_GE(on_hand() - reserved(), 0) << "negative available";
  ASSERT_EQ(finish_checkout(b, 6, 4, 2).text_at(0), "finished");
  EXPECT_EQ(reserved(), 0);
  EXPECT_EQ(on_hand(), 2) << "both sales, as the DB has it";
  // The mirror sync finds nothing to change, and a stale count is not taken.
  EXPECT_EQ(call("cartd_sync_on_hand", {keys::stock("inv")}, {"inv", "2", "3"}).integer, 0);
  EXPECT_EQ(call("cartd_sync_on_hand", {keys::stock("inv")}, {"inv", "4", "2"}).integer, 0);
  EXPECT_EQ(on_hand(), 2);
}

TEST_F(LuaFunctions, finishes_in_commit_order_still_take_the_db_count) {
  std::string a = hold(2), b = hold(6);
  begin_checkout(a);
  begin_checkout(b);
  ASSERT_EQ(finish_checkout(b, 6, 4, 2).text_at(0), "finished");  // A is under way
  EXPECT_EQ(on_hand(), 4);
  EXPECT_EQ(reserved(), 2);
  ASSERT_EQ(finish_checkout(a, 2, 2, 3).text_at(0), "finished");
  EXPECT_EQ(on_hand(), 2);
  EXPECT_EQ(reserved(), 0);
}

TEST_F(LuaFunctions, an_admin_change_does_not_subtract_a_checkouts_units_twice) {
  // A checkout of 8 (of 10, v1) committed in the DB (2, v2); a restock of 1 commits
  // (3, v3) and Redis takes it before the checkout's finish.
  std::string b = hold(8);
  begin_checkout(b);
  auto counts = call("cartd_apply_on_hand", {keys::stock("inv")}, {"", "", "inv", "3", "3"});
  EXPECT_GE(counts.int_at(0).value_or(-1) - counts.int_at(1).value_or(-1), 0)
      << "negative available: on_hand " << counts.int_at(0).value_or(-1) << ", reserved "
      << counts.int_at(1).value_or(-1);
  // A write-off of 1 (held first) commits too (2, v4).
  auto held = call("cartd_admin_hold", {keys::stock("inv")}, {"inv", "admin-x:1", "1", "5000"});
  ASSERT_EQ(held.text_at(0), "ok");
  counts = call("cartd_apply_on_hand", {keys::stock("inv")}, {"inv", "admin-x:1", "inv", "2", "4"});
  EXPECT_GE(counts.int_at(0).value_or(-1) - counts.int_at(1).value_or(-1), 0)
      << "negative available: on_hand " << counts.int_at(0).value_or(-1) << ", reserved "
      << counts.int_at(1).value_or(-1);
  ASSERT_EQ(finish_checkout(b, 8, 2, 2).text_at(0), "finished");
  EXPECT_EQ(reserved(), 0);
  EXPECT_GE(on_hand(), 0);
  EXPECT_LE(on_hand(), 2) << "never more than the DB has";
  call("cartd_sync_on_hand", {keys::stock("inv")}, {"inv", "2", "4"});
  EXPECT_EQ(on_hand(), 2) << "the mirror sync brings it to the DB's count";
}

TEST_F(LuaFunctions, a_change_after_a_checkout_kept_the_cart_past_its_lifetime_keeps_its_holds) {
  // The cart may live 200 ms; a checkout's grace keeps it (and its holds) 1 s; the
  // checkout is aborted and the cart changed after its lifetime, before the grace ends.
  std::string sid = "00000000-0000-4000-8000-dddddddddddd";
  ASSERT_EQ(set_line(sid, true, "inv", 2, 60000, kQuantum, 200).text_at(0), "ok");
  begin_checkout(sid, 1000);
  ASSERT_EQ(
      call("cartd_checkout_abort", {keys::cart(sid)}, {sid, "key-" + sid, "attempt-" + sid, "[]"})
          .integer,
      1);
  std::this_thread::sleep_for(300ms);
  reserved();  // the row is read: its bucket bound moves up to the grace's bucket
  ASSERT_EQ(set_line(sid, false, "inv", 2, 60000, kQuantum, 200).text_at(0), "ok");
  auto deadline = redis_.command({"PEXPIRETIME", keys::cart(sid)}).integer;
  EXPECT_GE(deadline, 0) << "the cart answered ok is gone";
  if (deadline >= 0) {
    EXPECT_EQ(buckets(), (std::map<std::int64_t, std::int64_t>{{deadline, 2}}))
        << "held in the bucket of the cart's deadline";
  } else {
    EXPECT_EQ(reserved(), 0) << "units held for a cart that is gone";
  }
}

TEST_F(LuaFunctions, migration_keeps_only_the_lines_whose_holds_it_moves) {
  // Layout 1 tolerated a line whose hold was gone (its set_line checked); layout 2 holds
  // every line in its cart's bucket.
  auto time = redis_.command({"TIME"});
  std::int64_t now = std::stoll(time.elements[0].str) * 1000;
  std::string sid = "00000000-0000-4000-8000-ffffffffffff";
  redis_.command({"SET", "s:{" + sid + "}", std::to_string(now), "PX", "60000"});
  std::string held = same_group_as_inv(0), ended = same_group_as_inv(1);
  mirror(held, 10);
  mirror(ended, 10);
  redis_.command({"HSET", "c:{" + sid + "}", "prod", "inv 3", product_of(held), held + " 2",
                  product_of(ended), ended + " 4"});
  redis_.command({"ZADD", "h:{" + held + "}", std::to_string(now + 60000), sid + ":2"});
  redis_.command({"ZADD", "h:{" + ended + "}", std::to_string(now - 5000), sid + ":4"});
  auto m = call("cartd_migrate_cart", {}, {sid});
  EXPECT_EQ(m.int_at(0), 1);
  EXPECT_EQ(m.int_at(1), 2) << "only the live hold moved";
  auto deadline = redis_.command({"PEXPIRETIME", keys::cart(sid)}).integer;
  EXPECT_EQ(buckets(held), (std::map<std::int64_t, std::int64_t>{{deadline, 2}}));
  // The cart changes and is abandoned: every row's buckets and r stay exact.
  std::this_thread::sleep_for(5ms);
  hold(1, 60000, sid, held);
  EXPECT_EQ(call("cartd_abandon", {keys::cart(sid)}, {sid}).text_at(0), "abandoned");
  for (const std::string& inv : {std::string("inv"), held, ended}) {
    EXPECT_EQ(raw_reserved(inv), 0) << inv;
    EXPECT_TRUE(buckets(inv).empty()) << inv;
  }
}

// ---- Review of the waitlist ------------------------------------------------------------

class WaitlistLua : public LuaFunctions {
 protected:
  redis::Reply wait(const std::string& sid, int qty, const std::string& window = "60000") {
    return call("cartd_wait", {keys::cart(sid), keys::stock("inv")},
                {sid, "inv", std::to_string(qty), window, "100", "100"});
  }
  // A new live cart holding 1 unit of "other", waiting for `qty` units of "inv".
  std::string waiter(int qty = 1) {
    std::string sid = hold(1, 60000, "", "other");
    EXPECT_EQ(wait(sid, qty).text_at(0), "waiting");
    return sid;
  }
  std::optional<std::string> offer_of(const std::string& sid) {
    auto r = redis_.command({"HGET", keys::offers("inv"), sid});
    if (r.type != redis::Reply::Type::string) return std::nullopt;
    return r.str;
  }
  std::int64_t available() { return on_hand() - reserved(); }
};

// cart_view appends the cart's waits (an array) after its lines; checkout_begin read it
// as one more line: the call fails half way, after moving the holds to the grace
// deadline but before moving the cart's, so the holds outlive the cart (and every retry
// moves them again, leaving a negative bucket behind).
TEST_F(WaitlistLua, a_cart_that_waits_checks_out_with_its_holds_at_its_deadline) {
  mirror("inv", 2);
  std::string a = hold(2, 1000);
  ASSERT_EQ(wait(a, 1).text_at(0), "waiting");
  auto first = call("cartd_checkout_begin", {keys::cart(a)},
                    {a, "key-" + a, "30000", "attempt-" + a, kQuantum});
  EXPECT_EQ(first.text_at(0), "begun") << first.str;
  call("cartd_checkout_begin", {keys::cart(a)}, {a, "key-" + a, "30000", "attempt-" + a, kQuantum});
  auto deadline = redis_.command({"PEXPIRETIME", keys::cart(a)}).integer;
  std::map<std::int64_t, std::int64_t> expected{{deadline, 2}};
  EXPECT_EQ(buckets(), expected) << "the holds end with the cart";
  EXPECT_EQ(raw_reserved(), 2);
}

// A checkout's finish drops the cart's holds and gives up its offers (leave_all) before
// it lowers on_hand by the sale: a pour then sees the sold units as free and offers
// them to the next in line, so more is held than is on hand.
TEST_F(WaitlistLua, a_checkout_finish_never_offers_the_units_it_sold) {
  mirror("inv", 2);
  std::string a = hold(1), h = hold(1);
  ASSERT_EQ(wait(a, 1).text_at(0), "waiting") << "a holds 1 and waits for 1 more";
  std::string w1 = waiter(), w2 = waiter();
  ASSERT_EQ(call("cartd_abandon", {keys::cart(h)}, {h}).text_at(0), "abandoned");
  ASSERT_TRUE(offer_of(a).has_value()) << "h's unit goes to a, first in line";
  begin_checkout(a);
  // a's order of 1: the DB has 1 left (version 2).
  ASSERT_EQ(finish_checkout(a, 1, 1, 2).text_at(0), "finished");
  EXPECT_EQ(on_hand(), 1);
  EXPECT_LE(reserved(), on_hand()) << "oversold: more offered than on hand";
  EXPECT_TRUE(offer_of(w1).has_value()) << "a's offer passes to w1";
  EXPECT_FALSE(offer_of(w2).has_value()) << "w2 is offered a unit that was sold";
  EXPECT_EQ(raw_reserved(), 1);
}

// The release of an admin hold whose change did not happen (the DB refused or failed:
// release_hold in routes/catalog.cpp calls cartd_apply_on_hand with no rows) frees its
// units: they must go to the carts that waited meanwhile, not to the public.
TEST_F(WaitlistLua, a_released_admin_hold_goes_to_the_line_first) {
  mirror("inv", 3);
  ASSERT_EQ(
      call("cartd_admin_hold", {keys::stock("inv")}, {"inv", "admin-x:3", "3", "60000"}).text_at(0),
      "ok");
  ASSERT_EQ(available(), 0);
  std::string w = waiter(2);
  // The admin change failed: its hold is released, no row changed.
  call("cartd_apply_on_hand", {keys::stock("inv")}, {"inv", "admin-x:3"});
  EXPECT_TRUE(offer_of(w).has_value()) << "the waiting cart is offered the units";
  EXPECT_EQ(available(), 1) << "only what the line did not ask for is public";
  EXPECT_EQ(set_line("00000000-0000-4000-8000-000000000099", true, "inv", 3).text_at(0),
            "insufficient")
      << "a newcomer takes all 3 units while a cart waits for them";
}

// max_per_cart bounds what a cart may hold of a row; a cart already at the limit that
// waits for more is offered units it can never claim (limit_exceeded), and they are
// kept from the carts behind it for the whole offer window.
TEST_F(WaitlistLua, a_cart_at_the_per_cart_limit_is_never_offered_what_it_cannot_claim) {
  call("cartd_mirror", {keys::stock("inv")}, {"inv", "prod", "3", "1", "Item", "100", "2"});
  std::string a = hold(2), h = hold(1);
  auto joined = wait(a, 1);
  EXPECT_EQ(joined.text_at(0), "limit_exceeded") << "a holds 2 of at most 2";
  std::string w = waiter();
  ASSERT_EQ(call("cartd_abandon", {keys::cart(h)}, {h}).text_at(0), "abandoned");
  EXPECT_FALSE(offer_of(a).has_value()) << "a cannot take it";
  EXPECT_TRUE(offer_of(w).has_value()) << "the unit goes to the next who can";
}

// The same when the limit falls below what a waiting cart holds plus asked for after it
// joined: the offer is for what it may still take.
TEST_F(WaitlistLua, an_offer_never_exceeds_what_the_per_cart_limit_leaves) {
  call("cartd_mirror", {keys::stock("inv")}, {"inv", "prod", "2", "1", "Item", "100", "2"});
  std::string a = hold(1), h = hold(1);
  ASSERT_EQ(wait(a, 1).text_at(0), "waiting") << "1 held + 1 asked: within 2";
  std::string w = waiter();
  call("cartd_mirror", {keys::stock("inv")}, {"inv", "prod", "2", "1", "Item", "100", "1"});
  ASSERT_EQ(call("cartd_abandon", {keys::cart(h)}, {h}).text_at(0), "abandoned");
  EXPECT_FALSE(offer_of(a).has_value()) << "a holds the 1 it may";
  EXPECT_TRUE(offer_of(w).has_value());
}

// cartd_mirror dropped the row's expired buckets (and so poured them to the line) with
// the mirror's old on_hand, then took the main DB's lower count: the offers made from
// units the DB no longer has are holds beyond on_hand.
TEST_F(WaitlistLua, the_mirror_offers_only_what_the_main_db_has) {
  mirror("inv", 2);
  hold(1, 100);
  hold(1);
  std::string w = waiter();
  std::this_thread::sleep_for(200ms);  // the first hold's bucket has ended, not dropped
  // The main DB has 1 left (version 2): a change Redis did not hear of.
  call("cartd_mirror", {keys::stock("inv")}, {"inv", "prod", "1", "2", "Item", "100", "0"});
  EXPECT_EQ(on_hand(), 1);
  EXPECT_LE(reserved(), on_hand()) << "oversold: an offer of a unit the DB does not have";
  EXPECT_FALSE(offer_of(w).has_value());
  EXPECT_EQ(raw_reserved(), 1);
}

// On a cluster each instance calls the group functions with its lease: one instance works
// a group at a time, and another takes over once the holder stops renewing it.
TEST_F(LuaFunctions, a_group_lease_lets_one_instance_work_a_group_at_a_time) {
  std::string dirty = keys::dirty(keys::group_of("inv"));
  auto take = [&](const std::string& owner) {
    redis_.command({"SADD", dirty, "inv"});
    return call("cartd_take_dirty", {dirty}, {"100", owner, "300"}).elements.size();
  };
  EXPECT_EQ(take("instance-a"), 4u);  // {more, inv, on_hand, reserved}
  EXPECT_EQ(take("instance-b"), 1u);  // a's lease: b takes nothing
  EXPECT_EQ(redis_.command({"SISMEMBER", dirty, "inv"}).integer, 1) << "left for a";
  EXPECT_EQ(take("instance-a"), 4u);  // a renews it
  std::this_thread::sleep_for(350ms);
  EXPECT_EQ(take("instance-b"), 4u);  // a stopped: b takes over
  EXPECT_EQ(take("instance-a"), 1u);
  // Without an owner (a standalone Redis) there is no lease.
  EXPECT_EQ(call("cartd_take_dirty", {dirty}, {"100"}).elements.size(), 4u);
}

}  // namespace lua_test
}  // namespace cartd::test
