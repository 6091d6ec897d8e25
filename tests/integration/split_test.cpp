// The line change in steps of one slot each (src/lua/split.lua, src/cart/split.cpp),
// the way carts change on a Redis Cluster: on a standalone Redis (the steps one by one,
// a change cut short and its repair), and through CartService on a real cluster of three
// primaries, where carts and their rows live on different nodes, ending in exact
// accounting of every held unit.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <csignal>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "cart/service.hpp"
#include "functions/keys.hpp"
#include "harness.hpp"
#include "lua/library.hpp"
#include "redis/client.hpp"
#include "redis/cluster.hpp"
#include "redis/slot.hpp"
#include "stock/service.hpp"

namespace cartd::test {
namespace split_test {

using namespace std::chrono_literals;
using Kind = cart::SetLineOutcome::Kind;

std::string product_of(const std::string& inv) {
  return "p-" + inv;
}

// A CartService with split line changes on a loop of its own, over a standalone Client
// or a ClusterClient.
class SplitShop {
 public:
  SplitShop(const std::string& url, bool cluster, std::chrono::milliseconds ttl = 60s,
            std::chrono::milliseconds max_lifetime = 7200s, std::chrono::milliseconds lease = 10s,
            std::chrono::milliseconds timeout = 2000ms) {
    redis::Client::Options node{
        *redis::parse_url(url), scripts::library, timeout, 200ms, "cartd-test", {}, nullptr};
    if (cluster) {
      redis::ClusterClient::Options o;
      o.seeds.push_back(node.endpoint);
      o.node = node;
      auto c = std::make_unique<redis::ClusterClient>(io_, std::move(o));
      start_ = [c = c.get()] { c->start(); };
      stop_ = [c = c.get()] { c->stop(); };
      redis_ = std::move(c);
    } else {
      auto c = std::make_unique<redis::Client>(io_, node);
      start_ = [c = c.get()] { c->start(); };
      stop_ = [c = c.get()] { c->stop(); };
      redis_ = std::move(c);
    }
    cart::CartSettings settings;
    settings.ttl = ttl;
    settings.max_lifetime = max_lifetime;
    settings.line_lease = lease;
    settings.sold_out_memory = 0ms;
    settings.split_lines = true;
    carts_ = std::make_unique<cart::CartService>(*redis_, settings);
    stock_ = std::make_unique<stock::StockService>(*redis_, cluster);
    boost::asio::post(io_, start_);
    thread_ = std::thread([this] { io_.run(); });
    EXPECT_TRUE(eventually([&] { return redis_->ready(); }, 20s));
  }
  ~SplitShop() {
    boost::asio::post(io_, stop_);
    work_.reset();
    thread_.join();
  }

  // Sends a line change without waiting (from any thread).
  std::future<boost::system::result<cart::SetLineOutcome>> send(
      const std::string& sid, const std::string& inv, std::int64_t qty,
      cart::LineMode mode = cart::LineMode::set, const std::string& pid = "") {
    auto done = std::make_shared<std::promise<boost::system::result<cart::SetLineOutcome>>>();
    auto future = done->get_future();
    cart::SetLineCall call{sid, sid, pid.empty() ? product_of(inv) : pid, inv, qty, mode, false};
    boost::asio::post(io_, [this, call, done] {
      carts_->set_line(call, [done](auto r) { done->set_value(std::move(r)); });
    });
    return future;
  }
  // A line in a new cart of id `sid`, as a request that names no cart asks for it.
  boost::system::result<cart::SetLineOutcome> create(const std::string& sid, const std::string& inv,
                                                     std::int64_t qty) {
    std::promise<boost::system::result<cart::SetLineOutcome>> done;
    cart::SetLineCall call{"", sid, product_of(inv), inv, qty, cart::LineMode::set, false};
    boost::asio::post(
        io_, [&] { carts_->set_line(call, [&](auto r) { done.set_value(std::move(r)); }); });
    return done.get_future().get();
  }
  boost::system::result<cart::SetLineOutcome> set(const std::string& sid, const std::string& inv,
                                                  std::int64_t qty,
                                                  cart::LineMode mode = cart::LineMode::set) {
    return send(sid, inv, qty, mode).get();
  }
  boost::system::result<cart::CartLookup> get(const std::string& sid) {
    std::promise<boost::system::result<cart::CartLookup>> done;
    boost::asio::post(
        io_, [&] { carts_->get_cart(sid, [&](auto r) { done.set_value(std::move(r)); }); });
    return done.get_future().get();
  }
  // Runs f(carts, done) on the loop and waits for what it passes to done.
  template <typename T, typename F>
  T on_loop(F f) {
    std::promise<T> result;
    boost::asio::post(io_, [&] { f(*carts_, [&](T r) { result.set_value(std::move(r)); }); });
    return result.get_future().get();
  }
  boost::system::result<cart::CheckoutStart> begin_checkout(const std::string& sid,
                                                            const std::string& key) {
    return on_loop<boost::system::result<cart::CheckoutStart>>(
        [&](auto& carts, auto done) { carts.checkout_begin(sid, key, "attempt-" + key, done); });
  }
  boost::system::result<bool> abort_checkout(const std::string& sid, const std::string& key,
                                             const std::string& attempt,
                                             const std::vector<db::OnHandVersion>& rows) {
    return on_loop<boost::system::result<bool>>(
        [&](auto& carts, auto done) { carts.checkout_abort(sid, key, attempt, rows, done); });
  }
  // Sends the sweeper's call for the group of row `inv`, as the housekeeper of an
  // instance on a cluster does (with a lease), without waiting: its answer, or nothing
  // swept when the group had no work.
  std::future<boost::system::result<stock::StockService::Swept>> send_sweep(
      const std::string& inv) {
    using Answer = boost::system::result<stock::StockService::Swept>;
    auto answer = std::make_shared<std::optional<Answer>>();
    auto done = std::make_shared<std::promise<Answer>>();
    auto future = done->get_future();
    boost::asio::post(io_, [this, inv, answer, done] {
      stock_->sweep(
          {keys::group_of(inv)}, 500, [answer](auto r) { *answer = std::move(r); },
          [answer, done] { done->set_value(answer->value_or(stock::StockService::Swept{})); },
          GroupLease{"test-instance", 10s});
    });
    return future;
  }
  redis::Result run(std::vector<std::string> args) {
    std::promise<redis::Result> done;
    boost::asio::post(io_, [&] {
      std::vector<std::string_view> views(args.begin(), args.end());
      redis_->command(std::span<const std::string_view>(views),
                      [&](redis::Result r) { done.set_value(std::move(r)); });
    });
    return done.get_future().get();
  }
  void mirror(const std::string& inv, int on_hand, const std::string& pid = "") {
    auto r = run({"FCALL", "cartd_mirror", "1", keys::stock(inv), inv,
                  pid.empty() ? product_of(inv) : pid, std::to_string(on_hand), "1", "Item " + inv,
                  "250", "0"});
    ASSERT_TRUE(r && !r->is_error()) << (r ? r->str : r.error().message());
  }
  // Step 1 of a change that locks cart `sid` for row `inv` with a lease of `lease_ms`, as
  // a change that then dies does: its lock lapses, naming the row to repair.
  redis::Result lock_as_a_dying_change(const std::string& sid, const std::string& inv,
                                       const std::string& lease_ms) {
    return run({"FCALL", "cartd_line_begin", "1", keys::cart(sid), sid, "dead-change", lease_ms,
                inv, "0"});
  }
  std::int64_t now_ms() {
    auto t = run({"TIME"});
    return *t->int_at(0) * 1000 + *t->int_at(1) / 1000;
  }

  // Every unit of every row explained: on each row, r is the sum of its buckets, the live
  // buckets hold what the live hold records say, and those are what the live carts' lines
  // on the row say, unit for unit; no row holds more than it has.
  void expect_exact_accounting(const std::vector<std::string>& rows,
                               const std::vector<std::string>& sids) {
    std::map<std::string, std::int64_t> in_carts;
    for (const std::string& sid : sids) {
      auto r = run({"FCALL", "cartd_cart_lines", "1", keys::cart(sid), sid});
      ASSERT_TRUE(r);
      if (r->type != redis::Reply::Type::array) continue;  // not live
      for (std::size_t i = 1; i + 2 < r->elements.size(); i += 3) {
        in_carts[*r->text_at(i + 1)] += *r->int_at(i + 2);
      }
    }
    std::int64_t now = now_ms();
    for (const std::string& inv : rows) {
      auto row = run({"HGETALL", keys::stock(inv)});
      std::int64_t r = 0, on_hand = 0, buckets = 0, live = 0;
      for (std::size_t i = 0; i + 1 < row->elements.size(); i += 2) {
        const std::string& f = row->elements[i].str;
        if (f != "r" && f != "oh" && !f.starts_with('t')) continue;
        std::int64_t v = std::stoll(row->elements[i + 1].str);
        if (f == "r") r = v;
        if (f == "oh") on_hand = v;
        if (f.starts_with('t')) {
          buckets += v;
          if (std::stoll(f.substr(1)) >= now) live += v;
        }
      }
      auto records = run({"HGETALL", keys::stock_tag(keys::group_of(inv)) + "hc:" + inv});
      std::int64_t recorded = 0;
      for (std::size_t i = 0; i + 1 < records->elements.size(); i += 2) {
        const std::string& v = records->elements[i + 1].str;
        auto space = v.find(' ');
        if (std::stoll(v.substr(space + 1)) >= now) recorded += std::stoll(v.substr(0, space));
      }
      EXPECT_EQ(r, buckets) << inv;
      EXPECT_EQ(live, recorded) << inv;
      EXPECT_EQ(recorded, in_carts[inv]) << inv;
      EXPECT_LE(live, on_hand) << inv;
    }
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::unique_ptr<redis::Commands> redis_;
  std::function<void()> start_, stop_;
  std::unique_ptr<cart::CartService> carts_;
  std::unique_ptr<stock::StockService> stock_;
  std::thread thread_;
};

std::string sid_of(int n) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012d", n);
  return buf;
}

Kind kind_of(const boost::system::result<cart::SetLineOutcome>& r) {
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return r ? r->kind : Kind::no_cart;
}

TEST(SplitLines, a_cart_holds_takes_back_and_moves_its_lines_in_steps) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 5);
  shop.mirror("b", 5);
  std::string sid = sid_of(1);
  auto made = shop.set(sid, "a", 2);
  ASSERT_EQ(kind_of(made), Kind::ok);
  EXPECT_TRUE(made->created);
  EXPECT_EQ(kind_of(shop.set(sid, "b", 4)), Kind::ok);
  EXPECT_EQ(kind_of(shop.set(sid, "a", 1, cart::LineMode::add)), Kind::ok);
  auto refused = shop.set(sid, "b", 6);
  ASSERT_EQ(kind_of(refused), Kind::insufficient);
  EXPECT_EQ(refused->available, 1);
  // A second cart sees what the first holds.
  EXPECT_EQ(shop.set(sid_of(2), "a", 3)->kind, Kind::insufficient);
  EXPECT_EQ(kind_of(shop.set(sid_of(2), "a", 2)), Kind::ok);
  auto cart = shop.get(sid);
  ASSERT_TRUE(cart && cart->cart);
  ASSERT_EQ(cart->cart->lines.size(), 2u);
  EXPECT_EQ(cart->cart->lines[0].quantity, 3);
  EXPECT_EQ(cart->cart->lines[0].name, "Item a");
  EXPECT_EQ(cart->cart->lines[0].unit_price_cents, 250);
  EXPECT_EQ(cart->cart->lines[1].quantity, 4);
  EXPECT_EQ(kind_of(shop.set(sid, "b", 0)), Kind::ok);
  EXPECT_EQ(kind_of(shop.set(sid_of(3), "b", 5)), Kind::ok);  // b's units came back
  // Limits refuse before any row changes, and unlock the cart.
  EXPECT_EQ(kind_of(shop.set(sid, "a", 1000)), Kind::quantity_limit);
  EXPECT_EQ(kind_of(shop.set(sid, "zz", 1)), Kind::unknown_inventory);
  EXPECT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  shop.expect_exact_accounting({"a", "b", "zz"}, {sid, sid_of(2), sid_of(3)});
}

TEST(SplitLines, a_change_cut_short_is_set_right_by_the_carts_next_change) {
  RedisServer redis;
  // A cart at its lifetime's cap: its deadline stays where it is, so only the repair
  // sets its rows again.
  // A change waits for another change's lock for at most its own lease (300 ms here).
  SplitShop shop(redis.url(), false, 60s, 5s, 300ms);
  shop.mirror("a", 10);
  shop.mirror("b", 10);
  std::string sid = sid_of(7);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "b", 1)), Kind::ok);
  // A change that locked the cart and held 6 of a, then died before it wrote the line:
  // a holds 6 for a cart whose line says 2.
  auto lock = shop.lock_as_a_dying_change(sid, "a", "1000");
  ASSERT_EQ(lock->text_at(0), "locked");
  std::string later = std::to_string(shop.now_ms() + 120000);
  auto held = shop.run(
      {"FCALL", "cartd_hold", "1", keys::stock("a"), "a", sid, product_of("a"), "6", later});
  ASSERT_EQ(held->text_at(0), "ok");
  EXPECT_EQ(redis.stock_row("a")["r"], "6");
  // While its lease lasts, the cart's other changes wait, then are refused (503),
  // changing nothing.
  auto busy = shop.set(sid, "b", 2);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error(), redis::Errc::unavailable);
  EXPECT_EQ(redis.stock_row("b")["r"], "1");
  std::this_thread::sleep_for(1000ms);
  // The next change finds the lapsed lock and sets a back to the cart's 2.
  ASSERT_EQ(kind_of(shop.set(sid, "b", 2)), Kind::ok);
  EXPECT_EQ(redis.stock_row("a")["r"], "2");
  EXPECT_EQ(redis.stock_row("b")["r"], "2");
  shop.expect_exact_accounting({"a", "b"}, {sid});
}

// A set to the line the cart has, whose deadline stays (here: a cart at its lifetime's
// cap), is answered by the cart's step alone: no lock, no row step. A cart with a lapsed
// change still gets its repair from it.
TEST(SplitLines, a_set_that_changes_nothing_is_one_step) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, 60s, 5s, 300ms);
  shop.mirror("a", 10);
  std::string sid = sid_of(8);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  auto record = [&] { return shop.run({"HGET", keys::hold_records("a"), sid})->str; };
  std::string before = record();
  auto same = shop.set(sid, "a", 2);
  ASSERT_EQ(kind_of(same), Kind::ok);
  EXPECT_FALSE(same->created);
  EXPECT_EQ(record(), before) << "no row step: the record still names the first change";
  EXPECT_EQ(shop.run({"HEXISTS", keys::cart(sid), "~"})->integer, 0) << "no lock";
  EXPECT_EQ(shop.get(sid)->cart->lines.at(0).quantity, 2);
  // A change that died after holding 6: the same set repairs the row once the lease lapsed.
  auto lock = shop.lock_as_a_dying_change(sid, "a", "200");
  ASSERT_EQ(lock->text_at(0), "locked");
  std::string later = std::to_string(shop.now_ms() + 120000);
  ASSERT_EQ(shop.run({"FCALL", "cartd_hold", "1", keys::stock("a"), "a", sid, product_of("a"), "6",
                      later})
                ->text_at(0),
            "ok");
  std::this_thread::sleep_for(400ms);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  EXPECT_EQ(redis.stock_row("a")["r"], "2") << "repaired";
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  EXPECT_EQ(redis.stock_row("a")["r"], "3");
  shop.expect_exact_accounting({"a"}, {sid});
}

// A set to less than the line, whose deadline stays, is written to the cart first, with
// no lock (the row holding more than the line until its step is the safe side), then to
// its row: two steps instead of four. A removal too.
TEST(SplitLines, a_shrink_is_two_steps_the_cart_first) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, 60s, 5s, 300ms);  // at its lifetime's cap
  shop.mirror("a", 10);
  shop.mirror("b", 10);
  std::string sid = sid_of(9);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "b", 2)), Kind::ok);
  auto before = redis.fcalls();
  ASSERT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  EXPECT_EQ(redis.fcalls() - before, 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "1");
  EXPECT_EQ(shop.run({"HEXISTS", keys::cart(sid), "~"})->integer, 0) << "no lock";
  before = redis.fcalls();
  ASSERT_EQ(kind_of(shop.set(sid, "b", 0)), Kind::ok);
  EXPECT_EQ(redis.fcalls() - before, 2);
  EXPECT_EQ(redis.stock_row("b")["r"], "0");
  auto cart = shop.get(sid);
  ASSERT_TRUE(cart && cart->cart);
  ASSERT_EQ(cart->cart->lines.size(), 1u);
  EXPECT_EQ(cart->cart->lines[0].quantity, 1);
  EXPECT_EQ(kind_of(shop.set(sid_of(10), "a", 9)), Kind::ok) << "a's units came back";
  shop.expect_exact_accounting({"a", "b"}, {sid, sid_of(10)});
}

// A shrink's row step is its last word on the row: it goes only while the row's record
// is still the one set for the line (the line keeps the id of the change that set it),
// and only lowers it. Here the cart shrinks 3 -> 1 and another change (another instance)
// sets it back to 3 before the shrink's row step arrives: the late step must leave the 3
// held. The quantities cannot tell (the record holds 3 either way); the change id can.
// And two shrinks whose row steps arrive in the wrong order leave the row at the line.
TEST(SplitLines, a_shrinks_late_row_step_leaves_the_hold_a_later_change_set) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, 60s, 5s, 300ms);
  shop.mirror("a", 10);
  std::string sid = sid_of(11);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  auto shrink = [&](const std::string& qty) {
    auto r = shop.run({"FCALL", "cartd_line_begin", "1", keys::cart(sid), sid, "lock-id", "1000",
                       "a", "0", product_of("a"), qty, "60000", "600", "5000"});
    EXPECT_EQ(r->text_at(0), "shrunk");
    return r;
  };
  // The row step as cartd sends it: the change the line names, if-mine.
  auto row_step = [&](const redis::Result& cart_step, const std::string& qty) {
    auto r = shop.run({"FCALL", "cartd_hold", "1", keys::stock("a"), "a", sid, product_of("a"), qty,
                       std::to_string(*cart_step->int_at(3)), *cart_step->text_at(4), "if-mine"});
    ASSERT_TRUE(r && r->text_at(0) == "ok") << (r ? r->str : r.error().message());
  };
  auto first = shrink("1");
  EXPECT_EQ(redis.stock_row("a")["r"], "3") << "the row holds the old line until its step";
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);  // a grow: locked, the row first
  row_step(first, "1");
  EXPECT_EQ(redis.stock_row("a")["r"], "3") << "the later change's hold stands";
  shop.expect_exact_accounting({"a"}, {sid});
  // Two shrinks, 3 -> 2 -> 1, their row steps late and in the wrong order.
  auto two = shrink("2");
  auto one = shrink("1");
  row_step(one, "1");
  row_step(two, "2");
  EXPECT_EQ(redis.stock_row("a")["r"], "1") << "the row keeps the smaller, the line";
  shop.expect_exact_accounting({"a"}, {sid});
}

// A checkout sets the rows' records for itself; given up, it leaves lines whose change
// ids no record names any more. The next shrink then takes the locked steps and frees
// the units (a shrink written to the cart first would find the checkout's record and
// leave the row holding the old quantity).
TEST(SplitLines, a_shrink_after_an_aborted_checkout_frees_its_units) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, 60s, 5s, 300ms);
  shop.mirror("a", 10);
  std::string sid = sid_of(13);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  auto begun = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(begun && begun->kind == cart::CheckoutStart::Kind::begun);
  auto aborted = shop.abort_checkout(sid, "k1", begun->attempt_id, {});
  ASSERT_TRUE(aborted && *aborted);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  EXPECT_EQ(redis.stock_row("a")["r"], "1");
  shop.expect_exact_accounting({"a"}, {sid});
  auto before = redis.fcalls();
  ASSERT_EQ(kind_of(shop.set(sid, "a", 0)), Kind::ok);  // and the next shrink is two steps
  EXPECT_EQ(redis.fcalls() - before, 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "0");
  shop.expect_exact_accounting({"a"}, {sid});
}

// A change that sets every row of the cart (a repair here; a deadline that moves does the
// same) makes each row's record its own, and says so on every line: the next shrink of
// another line is then followed by its row (else the row would keep the old units until
// its deadline).
TEST(SplitLines, a_change_that_sets_every_row_leaves_the_next_shrink_its_row) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, 60s, 5s, 300ms);
  shop.mirror("a", 10);
  shop.mirror("b", 10);
  std::string sid = sid_of(12);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "b", 1)), Kind::ok);
  auto lock = shop.lock_as_a_dying_change(sid, "b", "200");
  ASSERT_EQ(lock->text_at(0), "locked");
  std::this_thread::sleep_for(400ms);
  ASSERT_EQ(kind_of(shop.set(sid, "b", 2)), Kind::ok);  // the repair sets a's row too
  auto before = redis.fcalls();
  ASSERT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  EXPECT_EQ(redis.fcalls() - before, 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "1");
  shop.expect_exact_accounting({"a", "b"}, {sid});
}

// A new cart's first line: the cart's id is cartd's own, so the row goes first (setting
// the cart's deadline from its clock) and the commit makes the cart: two steps, not three.
// Refused, it makes no cart.
TEST(SplitLines, a_new_carts_first_line_is_two_steps) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 5);
  std::string sid = sid_of(14);
  auto before = redis.fcalls();
  auto made = shop.create(sid, "a", 2);
  ASSERT_EQ(kind_of(made), Kind::ok);
  EXPECT_TRUE(made->created);
  EXPECT_EQ(redis.fcalls() - before, 2);
  std::int64_t deadline = redis.command({"PEXPIRETIME", keys::cart(sid)}).integer;
  EXPECT_EQ(made->cart.deadline_ms, deadline);
  std::int64_t now = shop.now_ms();
  EXPECT_GT(deadline, now + 55'000);
  EXPECT_LE(deadline, now + 61'000);
  std::istringstream record(shop.run({"HGET", keys::hold_records("a"), sid})->str);
  std::int64_t held = 0, until = 0;
  record >> held >> until;
  EXPECT_EQ(held, 2);
  EXPECT_EQ(until, deadline);
  std::int64_t born = std::stoll(shop.run({"HGET", keys::cart(sid), "@"})->str);
  EXPECT_GT(born, now - 5'000);
  EXPECT_LE(born, now);
  // It is a cart like any other: its line names the change that set its row, so a
  // shrink is two steps.
  before = redis.fcalls();
  EXPECT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  EXPECT_EQ(redis.fcalls() - before, 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "1");
  EXPECT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  before = redis.fcalls();
  EXPECT_EQ(kind_of(shop.create(sid_of(15), "a", 3)), Kind::insufficient);
  EXPECT_EQ(redis.fcalls() - before, 1);
  EXPECT_EQ(kind_of(shop.create(sid_of(16), "zz", 1)), Kind::unknown_inventory);
  EXPECT_EQ(kind_of(shop.create(sid_of(17), "a", 1000)), Kind::quantity_limit);
  for (int n : {15, 16, 17}) EXPECT_EQ(redis.command({"EXISTS", keys::cart(sid_of(n))}).integer, 0);
  EXPECT_EQ(kind_of(shop.create(sid_of(18), "a", 2)), Kind::ok);
  shop.expect_exact_accounting({"a"}, {sid, sid_of(18)});
}

// A grow goes to the row first only while the cart's deadline stays (the row cannot
// move the cart's other holds): these tests' carts live for a TTL of 11 days, whose
// deadline moves in quanta of 2.8 hours.
constexpr std::chrono::milliseconds kLongTtl{1'000'000'000};

// cartd_hold_grow on row "a" for cart `sid`, as cartd sends it.
std::vector<std::string> grow_row_step(const std::string& sid, const std::string& op,
                                       const std::string& qty, const std::string& mode,
                                       std::chrono::milliseconds ttl) {
  std::vector<std::string> args{"FCALL", "cartd_hold_grow", "1", keys::stock("a")};
  for (std::string a :
       {std::string("a"), sid, product_of("a"), qty, std::string("0"), op, std::string("grow"),
        std::to_string(ttl.count()), std::to_string(ttl.count() / 100), mode, std::string("100")}) {
    args.push_back(a);
  }
  return args;
}

// cartd_line_grown for cart `sid`'s line of row "a", after the row step that answered
// `held`, as cartd sends it (a TTL of `ttl`, a longest life of twice that).
std::vector<std::string> grown_commit(const std::string& sid, const std::string& op,
                                      const std::string& qty, const std::string& mode,
                                      const redis::Result& held, std::chrono::milliseconds ttl) {
  return {"FCALL",
          "cartd_line_grown",
          "1",
          keys::cart(sid),
          op,
          product_of("a"),
          "a",
          qty,
          mode,
          std::to_string(*held->int_at(4)),
          *held->text_at(5),
          std::to_string(ttl.count()),
          std::to_string(ttl.count() / 100),
          std::to_string(2 * ttl.count())};
}

// The classic route answers with the cart's id only, so its set asks for a bare answer:
// 'same' and 'shrunk' read the fields that decide them and answer without the lines
// (the full answer's names and prices would be read for nothing); whatever they cannot
// tell (a live lock, a checkout, a lock that lapsed) answers as the full step does. The
// loop's guess follows the bare answers: the grow after a bare shrink is two steps.
TEST(SplitLines, a_bare_set_answers_without_the_carts_lines) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, kLongTtl, 2 * kLongTtl, 300ms);
  shop.mirror("a", 10);
  shop.mirror("b", 10);
  std::string sid = sid_of(21);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "b", 1)), Kind::ok);
  auto bare = [&](const std::string& qty, const std::string& shape = "bare") {
    return shop.run({"FCALL", "cartd_line_begin", "1", keys::cart(sid), sid, "op-" + qty, "1000",
                     "a", "0", product_of("a"), qty, "60000", "600", "5000", shape});
  };
  auto same = bare("3");
  ASSERT_EQ(same->text_at(0), "same");
  EXPECT_EQ(same->elements.size(), 5u) << "no lines, no marks";
  EXPECT_EQ(bare("3", "")->elements.size(), 11u) << "the full answer: two lines";
  auto shrunk = bare("2");
  ASSERT_EQ(shrunk->text_at(0), "shrunk");
  EXPECT_EQ(shrunk->elements.size(), 5u);
  EXPECT_FALSE(shrunk->text_at(4).value_or("").empty()) << "the change the line names";
  EXPECT_EQ(shop.run({"HEXISTS", keys::cart(sid), "~"})->integer, 0) << "no lock";
  // The row step cartd sends after a 'shrunk'.
  ASSERT_EQ(shop.run({"FCALL", "cartd_hold", "1", keys::stock("a"), "a", sid, product_of("a"), "2",
                      std::to_string(*shrunk->int_at(3)), *shrunk->text_at(4), "if-mine"})
                ->text_at(0),
            "ok");
  EXPECT_EQ(redis.stock_row("a")["r"], "2");
  // A live lock: busy, as the full step answers; a lapsed one: the full step's repair.
  auto lock = shop.lock_as_a_dying_change(sid, "a", "300");
  ASSERT_EQ(lock->text_at(0), "locked");
  EXPECT_EQ(bare("2")->text_at(0), "busy");
  std::this_thread::sleep_for(400ms);
  auto repair = bare("2");
  EXPECT_EQ(repair->text_at(0), "locked") << "a lapsed lock takes the full path";
  EXPECT_EQ(repair->text_at(4), "a") << "and names the row to set right";
  ASSERT_EQ(shop.run({"FCALL", "cartd_line_release", "1", keys::cart(sid), "op-2"})->integer, 1);
  // A checkout under way.
  ASSERT_EQ(shop.run({"HSET", keys::cart(sid), "!", "x"})->integer, 1);
  EXPECT_EQ(bare("1")->text_at(0), "checkout_in_progress");
  ASSERT_EQ(shop.run({"HDEL", keys::cart(sid), "!"})->integer, 1);
  // Through cartd, whose classic calls ask for the bare answers: 3 -> 1, then 1 -> 2,
  // guessed a grow from the bare shrink's line (two steps, not three), though below the
  // 3 the loop saw before.
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  auto before = redis.fcalls();
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  EXPECT_EQ(redis.fcalls() - before, 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "2");
  shop.expect_exact_accounting({"a", "b"}, {sid});
}

// A grow of a line the cart has goes to its row first, then writes the line: two steps,
// not three. An add always grows; a set grows when it is above the line as this loop last
// saw it. A guess that is wrong (another instance changed the line) costs a step.
TEST(SplitLines, a_grow_is_two_steps_its_row_first) {
  RedisServer redis;
  // A TTL so long that the deadline (in quanta of a hundredth of it) stays put.
  SplitShop one(redis.url(), false, kLongTtl, 2 * kLongTtl),
      two(redis.url(), false, kLongTtl, 2 * kLongTtl);
  one.mirror("a", 20);
  std::string sid = sid_of(19);
  ASSERT_EQ(kind_of(one.set(sid, "a", 1)), Kind::ok);
  auto steps = [&](auto change) {
    auto before = redis.fcalls();
    EXPECT_EQ(kind_of(change()), Kind::ok);
    return redis.fcalls() - before;
  };
  EXPECT_EQ(steps([&] { return one.set(sid, "a", 3); }), 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "3");
  EXPECT_EQ(steps([&] { return two.set(sid, "a", 2, cart::LineMode::add); }), 2);
  EXPECT_EQ(redis.stock_row("a")["r"], "5");
  // one's guess (3) is wrong now: its set to 4 is a shrink of the 5, found at the row.
  EXPECT_EQ(steps([&] { return one.set(sid, "a", 4); }), 3);
  EXPECT_EQ(redis.stock_row("a")["r"], "4");
  auto refused = one.set(sid, "a", 1000);
  ASSERT_EQ(kind_of(refused), Kind::quantity_limit);
  refused = one.set(sid, "a", 21);
  ASSERT_EQ(kind_of(refused), Kind::insufficient);
  EXPECT_EQ(refused->available, 16);
  EXPECT_EQ(redis.stock_row("a")["r"], "4");
  EXPECT_EQ(one.get(sid)->cart->lines.at(0).quantity, 4);
  one.expect_exact_accounting({"a"}, {sid});
}

// The line a grow's row step was set for must still be the cart's when the grow writes
// it: a change of the line in between (here a locked change from another instance), or a
// checkout given up in between, and the grow's commit is refused (it then takes the
// locked steps); the row holds what the cart's line says.
TEST(SplitLines, a_grow_whose_line_changed_meanwhile_is_not_written) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, kLongTtl, 2 * kLongTtl);
  shop.mirror("a", 20);
  std::string sid = sid_of(20);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);
  // The grow's two steps, as cartd sends them, with a change in between.
  auto row_step = [&](const std::string& op, const std::string& qty) {
    auto r = shop.run(grow_row_step(sid, op, qty, "set", kLongTtl));
    EXPECT_EQ(r->text_at(0), "ok");
    return r;
  };
  auto commit = [&](const redis::Result& held, const std::string& op, const std::string& qty) {
    return shop.run(grown_commit(sid, op, qty, "set", held, kLongTtl));
  };
  auto held = row_step("grow-1", "6");
  EXPECT_EQ(redis.stock_row("a")["r"], "6") << "the row first";
  // Another instance's locked change sets the line to 4 (no hints there: it locks).
  SplitShop other(redis.url(), false, kLongTtl, 2 * kLongTtl);
  ASSERT_EQ(kind_of(other.set(sid, "a", 4, cart::LineMode::set)), Kind::ok);
  EXPECT_EQ(commit(held, "grow-1", "6")->text_at(0), "refused");
  EXPECT_EQ(shop.get(sid)->cart->lines.at(0).quantity, 4);
  shop.expect_exact_accounting({"a"}, {sid});
  // A checkout begun and given up between the steps: refused too.
  held = row_step("grow-2", "7");
  auto begun = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(begun && begun->kind == cart::CheckoutStart::Kind::begun);
  ASSERT_TRUE(*shop.abort_checkout(sid, "k1", begun->attempt_id, {}));
  EXPECT_EQ(commit(held, "grow-2", "7")->text_at(0), "refused");
  shop.expect_exact_accounting({"a"}, {sid});
  // With nothing in between, the grow is written.
  ASSERT_EQ(kind_of(shop.set(sid, "a", 5)), Kind::ok);  // the locked steps: ids again
  held = row_step("grow-3", "8");
  auto written = commit(held, "grow-3", "8");
  EXPECT_EQ(written->text_at(0), "ok");
  EXPECT_EQ(written->int_at(1), 8);
  shop.expect_exact_accounting({"a"}, {sid});
}

// A grow whose commit was refused takes the locked steps under an id of its own: another
// grow, whose row step saw the first one's id on the record meanwhile, must not find that
// id on the line. Here a dying change's lock refuses grow 1 (add 1: the row 2 -> 3) and
// holds its locked steps back; grow 2's row step goes meanwhile (3 -> 4, the record
// naming grow 1); grow 1's locked steps then set the row to its line (3); grow 2's commit
// must be refused, or its line of 4 would be held by 3.
TEST(SplitLines, a_grow_refused_at_its_commit_goes_on_under_a_new_id) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, kLongTtl, 2 * kLongTtl, 5s);
  shop.mirror("a", 20);
  std::string sid = sid_of(21);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  auto record_op = [&] {
    std::istringstream record(shop.run({"HGET", keys::hold_records("a"), sid})->str);
    std::string q, d, op;
    record >> q >> d >> op;
    return op;
  };
  std::string first = record_op();
  ASSERT_EQ(shop.lock_as_a_dying_change(sid, "a", "1500")->text_at(0), "locked");
  auto grow1 = shop.send(sid, "a", 1, cart::LineMode::add);
  ASSERT_TRUE(eventually([&] { return record_op() != first; }, 1000ms)) << "grow 1's row step";
  auto held = shop.run(grow_row_step(sid, "grow-2", "1", "add", kLongTtl));
  ASSERT_EQ(held->text_at(0), "ok");
  EXPECT_EQ(redis.stock_row("a")["r"], "4");
  ASSERT_EQ(kind_of(grow1.get()), Kind::ok);  // once the dying change's lock lapsed
  EXPECT_EQ(redis.stock_row("a")["r"], "3");
  auto commit = shop.run(grown_commit(sid, "grow-2", "1", "add", held, kLongTtl));
  EXPECT_EQ(commit->text_at(0), "refused");
  EXPECT_EQ(shop.get(sid)->cart->lines.at(0).quantity, 3);
  shop.expect_exact_accounting({"a"}, {sid});
}

// A grow whose row went first and whose commit and locked steps were then refused (here
// the cart is checking out) leaves the row as it was.
TEST(SplitLines, a_refused_grow_leaves_its_row_as_it_was) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, kLongTtl, 2 * kLongTtl);
  shop.mirror("a", 20);
  std::string sid = sid_of(22);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  // The cart's checkout begins (its rows' step not there yet).
  auto frozen = shop.run({"FCALL", "cartd_checkout_freeze", "1", keys::cart(sid), sid, "k1",
                          "120000", "attempt-1", std::to_string(kLongTtl.count() / 100)});
  ASSERT_EQ(frozen->text_at(0), "begun");
  auto grow = shop.set(sid, "a", 5);  // this loop saw 2: a grow, its row first
  ASSERT_EQ(kind_of(grow), Kind::checkout_in_progress);
  EXPECT_TRUE(eventually([&] { return redis.stock_row("a")["r"] == "2"; }, 1000ms))
      << "the row holds the cart's 2 again, not 5";
  shop.expect_exact_accounting({"a"}, {sid});
}

TEST(SplitLines, hold_records_end_with_their_bucket) {
  RedisServer redis;
  SplitShop shop(redis.url(), false, 1s);
  shop.mirror("a", 4);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(kind_of(shop.set(sid_of(100 + i), "a", 1)), Kind::ok);
  EXPECT_EQ(shop.set(sid_of(200), "a", 1)->kind, Kind::insufficient);
  std::string records = keys::stock_tag(keys::group_of("a")) + "hc:a";
  EXPECT_EQ(redis.command({"HLEN", records}).integer, 4);
  std::this_thread::sleep_for(1500ms);
  // The holds ended at the carts' deadline; the next hold drops them and their records.
  auto taken = shop.set(sid_of(200), "a", 4);
  ASSERT_EQ(kind_of(taken), Kind::ok);
  EXPECT_EQ(taken->dropped, 4);
  EXPECT_EQ(redis.command({"HLEN", records}).integer, 1);
  shop.expect_exact_accounting({"a"}, {sid_of(100), sid_of(200)});
}

// Carts and rows spread over three primaries; many changes at once, some on the same
// cart (the lock serialises them: a change waits for the one before it). At the end
// every unit is where the carts say.
TEST(SplitLines, carts_on_a_cluster_account_for_every_unit) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true);
  std::vector<std::string> rows, sids;
  for (int i = 0; i < 24; ++i) {
    rows.push_back("row" + std::to_string(i));
    shop.mirror(rows.back(), 8);
  }
  // The carts first: a new cart's id is cartd's own, never made twice at once.
  for (int i = 0; i < 60; ++i) {
    sids.push_back(sid_of(1000 + i));
    ASSERT_EQ(kind_of(shop.set(sids.back(), rows[i % rows.size()], 1)), Kind::ok);
  }
  std::mt19937 random(42);
  int ok = 0, refused = 0, unavailable = 0;
  for (int wave = 0; wave < 20; ++wave) {
    std::vector<std::future<boost::system::result<cart::SetLineOutcome>>> changes;
    for (int i = 0; i < 40; ++i) {
      const std::string& sid = sids[random() % sids.size()];
      const std::string& inv = rows[random() % rows.size()];
      int pick = static_cast<int>(random() % 10);
      if (pick < 5) {
        changes.push_back(shop.send(sid, inv, 1 + random() % 2, cart::LineMode::add));
      } else if (pick < 8) {
        changes.push_back(shop.send(sid, inv, random() % 4));
      } else {
        changes.push_back(shop.send(sid, inv, 0));
      }
    }
    for (auto& c : changes) {
      auto r = c.get();
      if (!r) {
        EXPECT_EQ(r.error(), redis::Errc::unavailable);
        ++unavailable;
      } else if (r->kind == Kind::ok) {
        ++ok;
      } else {
        EXPECT_TRUE(r->kind == Kind::insufficient || r->kind == Kind::too_many_lines)
            << static_cast<int>(r->kind);
        ++refused;
      }
    }
  }
  EXPECT_GT(ok, 200);
  EXPECT_GT(refused, 0);
  EXPECT_EQ(unavailable, 0) << "a change waits for the one before it on its cart";
  std::cout << "changes: " << ok << " ok, " << refused << " refused, " << unavailable
            << " busy (503)\n";
  shop.expect_exact_accounting(rows, sids);
}

// Adds to one cart at once: each waits for the one before it, and is in the line once.
TEST(SplitLines, concurrent_adds_to_one_cart_each_count_once) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true);
  shop.mirror("a", 100);
  std::string sid = sid_of(5);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);
  std::vector<std::future<boost::system::result<cart::SetLineOutcome>>> adds;
  for (int i = 0; i < 20; ++i) adds.push_back(shop.send(sid, "a", 1, cart::LineMode::add));
  int acknowledged = 1;
  for (auto& a : adds) {
    auto r = a.get();
    if (r && r->kind == Kind::ok) ++acknowledged;
  }
  auto cart = shop.get(sid);
  ASSERT_TRUE(cart && cart->cart);
  ASSERT_EQ(cart->cart->lines.size(), 1u);
  EXPECT_EQ(cart->cart->lines[0].quantity, acknowledged);
  EXPECT_EQ(acknowledged, 21) << "each waits for the one before it";
  shop.expect_exact_accounting({"a"}, {sid});
}

// A change's shrink of its row after its commit is its last word there: a later change
// of the same cart (another instance) that set the row since, even to the same hold, has
// made the row its own, and the late shrink must leave it.
TEST(SplitLines, a_late_shrink_leaves_the_hold_a_later_change_set) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 10);
  std::string sid = sid_of(6);
  std::string deadline = std::to_string(shop.now_ms() + 60'000);
  auto hold = [&](const std::string& qty, std::vector<std::string> by) {
    std::vector<std::string> args{"FCALL", "cartd_hold", "1", keys::stock("a")};
    for (std::string a : {std::string("a"), sid, product_of("a"), qty, deadline}) args.push_back(a);
    for (auto& b : by) args.push_back(b);
    auto r = shop.run(args);
    ASSERT_TRUE(r && r->text_at(0) == "ok") << (r ? r->str : r.error().message());
  };
  hold("5", {"change-a"});             // a's row step: the larger of old and new until its commit
  hold("5", {"change-c"});             // c, after a's commit, sets the line to 5 again
  hold("2", {"change-a", "if-mine"});  // a's shrink to its line (2), late
  EXPECT_EQ(redis.stock_row("a")["r"], "5") << "c's hold of 5 stands";
  hold("3", {"change-c", "if-mine"});  // c's own last word
  EXPECT_EQ(redis.stock_row("a")["r"], "3");
  // A line that leaves the row: d sets the row as it is, for itself, before its commit;
  // e (after d's lease lapsed) moves the line back with 4; d's late release leaves e's.
  hold("3", {"change-d"});
  hold("4", {"change-e"});
  hold("0", {"change-d", "if-mine"});
  EXPECT_EQ(redis.stock_row("a")["r"], "4") << "e's hold of 4 stands";
}

// Two instances change one cart at once: quantities up and down, the line removed, moved
// between the two rows of one product. Each change's rows are right for the line it
// committed, whatever the other instance does in between.
TEST(SplitLines, two_instances_changing_one_cart_leave_every_row_right) {
  RedisCluster cluster(3, 0);
  SplitShop one(cluster.url(), true), two(cluster.url(), true);
  one.mirror("x1", 1000, "p-x");
  one.mirror("x2", 1000, "p-x");
  one.mirror("y", 1000);
  std::string sid = sid_of(7);
  ASSERT_EQ(kind_of(one.set(sid, "y", 1)), Kind::ok);
  std::mt19937 rng(7);
  for (int round = 0; round < 10; ++round) {
    std::vector<std::future<boost::system::result<cart::SetLineOutcome>>> changes;
    for (int i = 0; i < 16; ++i) {
      SplitShop& via = i % 2 ? one : two;
      int pick = static_cast<int>(rng() % 3);
      std::int64_t qty = static_cast<std::int64_t>(rng() % 4);
      if (pick == 2) {
        changes.push_back(via.send(sid, "y", qty));
      } else {
        changes.push_back(via.send(sid, pick ? "x2" : "x1", qty, cart::LineMode::set, "p-x"));
      }
    }
    for (auto& c : changes) ASSERT_TRUE(c.get());
    one.expect_exact_accounting({"x1", "x2", "y"}, {sid});
  }
}

// A locked change's row writes go only inside its lease (found by review): one held up
// past it (a failover, a moving slot) could land after the cart's next change took the
// lapsed lock and set the row, and set the row back below that change's line.
TEST(SplitLines, a_locked_changes_row_write_after_its_lease_writes_nothing) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 10);
  std::string sid = sid_of(41);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 6)), Kind::ok);  // the cart's latest change
  // The late write of an earlier change whose lease (and fence) has passed.
  std::int64_t now = shop.now_ms();
  auto late =
      shop.run({"FCALL", "cartd_hold", "1", keys::stock("a"), "a", sid, product_of("a"), "3",
                std::to_string(now + 60000), "earlier-change", "", std::to_string(now - 1000)});
  ASSERT_TRUE(late);
  EXPECT_EQ(late->text_at(0), "lapsed");
  EXPECT_EQ(redis.stock_row("a")["r"], "6");
  shop.expect_exact_accounting({"a"}, {sid});

  // A locked change (it repairs a change that lapsed unfinished) sends its fence: the
  // lock's time plus three quarters of the lease (10 s here).
  ASSERT_EQ(shop.lock_as_a_dying_change(sid, "a", "1")->text_at(0), "locked");
  std::this_thread::sleep_for(5ms);
  redis.command({"CONFIG", "SET", "slowlog-log-slower-than", "0"});
  redis.command({"SLOWLOG", "RESET"});
  std::int64_t before = shop.now_ms();
  ASSERT_EQ(kind_of(shop.set(sid, "a", 4)), Kind::ok);
  std::int64_t after = shop.now_ms();
  auto log = redis.command({"SLOWLOG", "GET", "100"});
  int fenced = 0;
  for (const redis::Reply& entry : log.elements) {
    const auto& args = entry.elements.at(3).elements;
    if (args.size() != 12 || args[1].str != "cartd_hold") continue;
    std::int64_t fence = std::stoll(args[11].str);
    EXPECT_GE(fence, before + 7500);
    EXPECT_LE(fence, after + 7500);
    ++fenced;
  }
  EXPECT_GE(fenced, 1) << "the locked change's row write names no fence";
  shop.expect_exact_accounting({"a"}, {sid});
}

// A locked change whose write to another of the cart's rows does not answer (the row's
// node stalls past the command timeout) does not commit (found by review): the write may
// still land, and a commit would free the cart for its next change at once, whose write
// to that row the late one could undo. The lock stays until its lease ends, after the
// fence, and the change after it sets every row.
TEST(SplitLines, a_locked_change_whose_row_write_is_unanswered_does_not_commit) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true, 60s, 7200s, 3s, 300ms);
  std::string sid = sid_of(42);
  int cart_node = cluster.owner_of(redis::key_slot(keys::cart(sid)));
  std::string a, b;  // a row on the cart's node, and one on another
  for (int i = 0; i < 500 && (a.empty() || b.empty()); ++i) {
    std::string inv = "r" + std::to_string(i);
    bool here = cluster.owner_of(redis::key_slot(keys::stock(inv))) == cart_node;
    if (here && a.empty()) a = inv;
    if (!here && b.empty()) b = inv;
  }
  ASSERT_FALSE(a.empty() || b.empty());
  shop.mirror(a, 10);
  shop.mirror(b, 10);
  ASSERT_EQ(kind_of(shop.set(sid, a, 2)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, b, 2)), Kind::ok);
  // A change that lapsed unfinished: the next one takes the locked steps and sets every row.
  ASSERT_EQ(shop.lock_as_a_dying_change(sid, a, "1")->text_at(0), "locked");
  std::this_thread::sleep_for(5ms);
  int b_node = cluster.owner_of(redis::key_slot(keys::stock(b)));
  cluster.signal(b_node, SIGSTOP);
  auto change = shop.set(sid, a, 3);
  cluster.signal(b_node, SIGCONT);
  EXPECT_FALSE(change) << "committed with a row write unanswered";
  auto lines = shop.run({"FCALL", "cartd_cart_lines", "1", keys::cart(sid), sid});
  ASSERT_TRUE(lines && lines->elements.size() == 7u);  // the deadline, then 2 x (pid, inv, qty)
  for (std::size_t i = 1; i + 2 < lines->elements.size(); i += 3) {
    EXPECT_EQ(lines->int_at(i + 2), 2) << *lines->text_at(i + 1) << ": the change was written";
  }
  // Once the lease has ended, the cart's next change sets every row.
  EXPECT_TRUE(eventually(
      [&] {
        auto r = shop.set(sid, a, 3);
        return r && r->kind == Kind::ok;
      },
      10s, 200ms));
  shop.expect_exact_accounting({a, b}, {sid});
}

TEST(SplitLines, a_checkout_holds_its_rows_then_sells_their_units) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 5);
  shop.mirror("b", 5);
  std::string sid = sid_of(11);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(sid, "b", 1)), Kind::ok);
  auto begun = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(begun);
  ASSERT_EQ(begun->kind, cart::CheckoutStart::Kind::begun);
  ASSERT_EQ(begun->lines.size(), 2u);
  EXPECT_EQ(begun->lines[0].name, "Item a");
  EXPECT_EQ(begun->lines[0].unit_price_cents, 250);
  EXPECT_EQ(begun->attempt_id, "attempt-k1");
  // Frozen: no line change; the rows are marked pending for the checkout.
  EXPECT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::checkout_in_progress);
  EXPECT_EQ(redis.command({"ZCARD", keys::pending("a")}).integer, 1);
  // A retry with the same key resumes it, with the same attempt.
  auto again = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->kind, cart::CheckoutStart::Kind::resume);
  EXPECT_EQ(again->attempt_id, "attempt-k1");
  EXPECT_EQ(redis.stock_row("a")["r"], "2");

  db::Order order{"order-1", sid, "k1", {}, 0, ""};
  for (const auto& l : begun->lines) {
    order.lines.push_back({l.product_id, l.inventory_id, l.name, l.quantity, l.unit_price_cents});
  }
  std::vector<db::OnHandVersion> rows{{"a", 3, 2}, {"b", 4, 2}};
  for (int i = 0; i < 2; ++i) {  // finishing twice changes nothing more
    auto finished = shop.on_loop<boost::system::result<bool>>(
        [&](auto& carts, auto done) { carts.checkout_finish(sid, order, rows, done); });
    ASSERT_TRUE(finished && *finished);
  }
  EXPECT_EQ(redis.stock_row("a")["r"], "0");
  EXPECT_EQ(redis.stock_row("a")["oh"], "3");
  EXPECT_EQ(redis.stock_row("b")["oh"], "4");
  EXPECT_EQ(redis.command({"ZCARD", keys::pending("a")}).integer, 0);
  auto gone = shop.get(sid);
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->missing, cart::Missing::checked_out);
  auto done = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->kind, cart::CheckoutStart::Kind::done);
  EXPECT_EQ(done->order_id, "order-1");
  shop.expect_exact_accounting({"a", "b"}, {sid});
}

TEST(SplitLines, an_aborted_checkout_leaves_the_cart_as_it_was) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 5);
  std::string sid = sid_of(12);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  auto begun = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(begun && begun->kind == cart::CheckoutStart::Kind::begun);
  // The DB refused the order: the row's on_hand comes with the abort.
  std::vector<db::OnHandVersion> rows{{"a", 4, 3}};
  auto aborted = shop.abort_checkout(sid, "k1", begun->attempt_id, rows);
  ASSERT_TRUE(aborted && *aborted);
  EXPECT_EQ(redis.stock_row("a")["oh"], "4");
  EXPECT_EQ(redis.command({"ZCARD", keys::pending("a")}).integer, 0);
  EXPECT_EQ(kind_of(shop.set(sid, "a", 3)), Kind::ok);  // usable again
  EXPECT_EQ(redis.stock_row("a")["r"], "3");
  shop.expect_exact_accounting({"a"}, {sid});
}

// A row that lost the cart's hold (as a failover can lose a write) while its units went
// to another cart: the checkout is refused at its first step, not sold twice.
TEST(SplitLines, a_checkout_finds_a_hold_that_a_row_lost) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 2);
  std::string sid = sid_of(13);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  auto lost = shop.run({"FCALL", "cartd_hold", "1", keys::stock("a"), "a", sid, "", "0", "0"});
  ASSERT_EQ(lost->text_at(0), "ok");
  ASSERT_EQ(kind_of(shop.set(sid_of(14), "a", 2)), Kind::ok);
  auto begun = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(begun);
  EXPECT_EQ(begun->kind, cart::CheckoutStart::Kind::short_of);
  EXPECT_EQ(begun->inventory_id, "a");
  EXPECT_EQ(redis.stock_row("a")["r"], "2");  // the other cart's, untouched
}

TEST(SplitLines, an_abandoned_cart_gives_its_units_back) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true);
  std::vector<std::string> rows{"a", "b", "c"};
  for (const auto& inv : rows) shop.mirror(inv, 3);
  std::string sid = sid_of(15);
  for (const auto& inv : rows) ASSERT_EQ(kind_of(shop.set(sid, inv, 3)), Kind::ok);
  auto abandoned = shop.on_loop<boost::system::result<cart::CartService::Abandoned>>(
      [&](auto& carts, auto done) { carts.abandon(sid, done); });
  ASSERT_TRUE(abandoned);
  ASSERT_EQ(abandoned->kind, cart::CartService::Abandoned::Kind::abandoned);
  EXPECT_EQ(abandoned->cart.lines.size(), 3u);
  for (const auto& inv : rows) EXPECT_EQ(kind_of(shop.set(sid_of(16), inv, 3)), Kind::ok);
  EXPECT_EQ(shop.get(sid)->missing, cart::Missing::expired);  // ended: abandoned
  shop.expect_exact_accounting(rows, {sid, sid_of(16)});
}

// Review: two waits of one cart on one row at once (one the row takes, one it refuses),
// and a stale mark dropped while a wait marks the row again. A cart's mark of a row
// carries the token of the wait that set it; an unmark or a drop by an earlier wait
// leaves a mark a later wait set (before, the cart waited on a row it had no mark of:
// its view left the row out, and its abandon did not leave the row).
TEST(SplitLines, a_waits_mark_survives_an_earlier_waits_unmark) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 10);
  std::string sid = sid_of(40);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 1)), Kind::ok);  // a live cart
  auto cart_step = [&](const char* function, std::vector<std::string> args) {
    std::vector<std::string> call{"FCALL", function, "1", keys::cart(sid)};
    call.push_back(sid);
    for (auto& a : args) call.push_back(a);
    auto r = shop.run(call);
    EXPECT_TRUE(r && !r->is_error()) << (r ? r->str : r.error().message());
    return r ? *r : redis::Reply{};
  };
  auto mark = [&] { return shop.run({"HGET", keys::cart(sid), "?x"})->str; };
  EXPECT_EQ(cart_step("cartd_wait_mark", {"x", "5", "wait-1", "3600000"}).int_at(1), 1);
  EXPECT_EQ(cart_step("cartd_wait_mark", {"x", "5", "wait-2", "3600000"}).int_at(1), 0);
  cart_step("cartd_wait_unmark", {"x", "wait-1"});  // the row refused wait 1; wait 2 waits
  EXPECT_EQ(mark(), "wait-2");
  cart_step("cartd_wait_unmark", {"x", "wait-2"});
  EXPECT_EQ(mark(), "");
  // A drop of a mark found stale goes only while the mark has the token read with it.
  cart_step("cartd_wait_mark", {"x", "5", "wait-3", "3600000"});
  cart_step("cartd_wait_mark", {"y", "5", "wait-4", "3600000", "x", "wait-0"});
  EXPECT_EQ(mark(), "wait-3");
  cart_step("cartd_wait_mark", {"y", "5", "wait-5", "3600000", "x", "wait-3"});
  EXPECT_EQ(mark(), "");
  cart_step("cartd_wait_unmark", {"y", ""});  // a leave drops it, whoever set it
  EXPECT_EQ(shop.run({"HGET", keys::cart(sid), "?y"})->str, "");
}

// The slot of a key moved by hand from its owner to another primary, key by key, as
// `redis-cli --cluster reshard` moves it: open, some keys, the rest, close.
class SlotMove {
 public:
  SlotMove(RedisCluster& cluster, const std::string& key)
      : cluster_(cluster), slot_(std::to_string(redis::key_slot(key))) {
    from_ = cluster.owner_of(redis::key_slot(key));
    to_ = from_ == cluster.ports()[0] ? cluster.ports()[1] : cluster.ports()[0];
    from_id_ = cluster.node_id(from_);
    to_id_ = cluster.node_id(to_);
  }
  int from() const { return from_; }
  int to() const { return to_; }
  const std::string& slot() const { return slot_; }
  // The target imports the slot, the source migrates it.
  bool open() {
    return cluster_.command(to_, {"CLUSTER", "SETSLOT", slot_, "IMPORTING", from_id_}).str ==
               "OK" &&
           cluster_.command(from_, {"CLUSTER", "SETSLOT", slot_, "MIGRATING", to_id_}).str == "OK";
  }
  // MIGRATE's answer for `keys` ("OK"), or for every key left on the source when none
  // are named ("" when none is left).
  std::string migrate(std::vector<std::string> keys = {}) {
    if (keys.empty()) {
      for (auto& k :
           cluster_.command(from_, {"CLUSTER", "GETKEYSINSLOT", slot_, "1000"}).elements) {
        keys.push_back(k.str);
      }
      if (keys.empty()) return "";
    }
    std::vector<std::string> args{"MIGRATE", "127.0.0.1", std::to_string(to_), "", "0",
                                  "5000",    "KEYS"};
    args.insert(args.end(), keys.begin(), keys.end());
    return cluster_.command(from_, args).str;
  }
  // The slot is the target's, on both nodes.
  bool close() {
    for (int port : {to_, from_}) {
      if (cluster_.command(port, {"CLUSTER", "SETSLOT", slot_, "NODE", to_id_}).str != "OK") {
        return false;
      }
    }
    return true;
  }

 private:
  RedisCluster& cluster_;
  std::string slot_;
  int from_ = 0, to_ = 0;
  std::string from_id_, to_id_;
};

// A slot in migration, its keys split between two nodes: a line change waits (TRYAGAIN)
// until the slot has moved, rather than run on the node that has only the row, where it
// would miss the cart's hold record (moved already) and write a second one.
TEST(SplitLines, a_change_waits_while_its_rows_slot_is_split_between_two_nodes) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true);
  shop.mirror("a", 10);
  std::string sid = sid_of(21);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  SlotMove move(cluster, keys::stock("a"));
  ASSERT_TRUE(move.open());
  // The hold records go first; the row stays behind for now.
  ASSERT_EQ(move.migrate({keys::hold_records("a")}), "OK");
  auto change = shop.send(sid, "a", 3);
  EXPECT_EQ(change.wait_for(200ms), std::future_status::timeout) << "it ran on half a slot";
  // The rest of the slot moves, and the slot is the target's.
  ASSERT_EQ(move.migrate(), "OK") << "a key of the slot was written twice";
  ASSERT_TRUE(move.close());
  ASSERT_EQ(kind_of(change.get()), Kind::ok);
  EXPECT_EQ(cluster.command(move.from(), {"CLUSTER", "COUNTKEYSINSLOT", move.slot()}).integer, 0);
  EXPECT_EQ(cluster.command(move.to(), {"HGET", keys::stock("a"), "r"}).str, "3");
  shop.expect_exact_accounting({"a"}, {sid});
}

// The same for the sweeper, a group function: it looks at rows it finds in its group's
// index. Its index moved first (the slot's keys move in any order), so Redis sends it to
// the target, while its lease (from an earlier call) and the row are still on the source:
// there it must wait too, rather than write a second lease, or look at a row that is not
// there yet and leave its expired hold counted.
TEST(SplitLines, the_sweep_waits_while_its_groups_slot_is_split_between_two_nodes) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true, 1s);
  shop.mirror("a", 10);
  std::string sid = sid_of(22);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  // The hold lapses (its bucket is rounded up to the next second).
  std::this_thread::sleep_for(2500ms);
  SlotMove move(cluster, keys::stock("a"));
  // The group's lease, this instance's from an earlier sweep.
  std::string lease = keys::lease(keys::due(keys::group_of("a")));
  ASSERT_EQ(cluster.command(move.from(), {"SET", lease, "test-instance", "PX", "10000"}).str, "OK");
  ASSERT_TRUE(move.open());
  ASSERT_EQ(move.migrate({keys::due(keys::group_of("a"))}), "OK");
  auto sweep = shop.send_sweep("a");
  EXPECT_EQ(sweep.wait_for(200ms), std::future_status::timeout) << "it ran on half a slot";
  ASSERT_EQ(move.migrate(), "OK") << "a key of the slot was written twice";
  ASSERT_TRUE(move.close());
  auto swept = sweep.get();
  ASSERT_TRUE(swept) << swept.error().message();
  EXPECT_EQ(swept->units, 2);
  EXPECT_EQ(cluster.command(move.to(), {"HGET", keys::stock("a"), "r"}).str, "0");
  shop.expect_exact_accounting({"a"}, {sid});
}

// A slot in migration whose keys are all still on the source: Redis would run a
// function there, and each command it makes is checked against the keys as they are at
// that command, so one that empties a key (its last member) and touches it again is
// refused halfway, its earlier writes made. Here a shrink's row step gives the freed units
// to the row's last waiter and looks for the next: before the fix it ran, emptied the
// waitlist and failed ("non local key") with the units half poured. No function may run on
// a slot while it migrates (ClusterClient names a key that never exists with each call).
TEST(SplitLines, no_function_runs_on_a_slot_in_migration_even_with_all_its_keys_there) {
  RedisCluster cluster(3, 0);
  SplitShop shop(cluster.url(), true);
  shop.mirror("a", 10);
  shop.mirror("z", 10);
  std::string holder = sid_of(51), buyer = sid_of(52), first = sid_of(53), second = sid_of(54);
  ASSERT_EQ(kind_of(shop.set(buyer, "a", 2)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(holder, "a", 8)), Kind::ok);  // sold out
  auto begun = shop.begin_checkout(buyer, "k");            // the row's pending mark
  ASSERT_TRUE(begun && begun->kind == cart::CheckoutStart::Kind::begun);
  for (const std::string& sid : {first, second}) {
    ASSERT_EQ(kind_of(shop.set(sid, "z", 1)), Kind::ok);
    auto waited = shop.on_loop<boost::system::result<cart::CartService::Waited>>(
        [&](auto& carts, auto done) { carts.wait(sid, "a", 1, done); });
    ASSERT_TRUE(waited && waited->kind == cart::CartService::Waited::Kind::waiting);
  }
  ASSERT_EQ(kind_of(shop.set(holder, "a", 7)), Kind::ok);  // the first waiter's offer
  SlotMove move(cluster, keys::stock("a"));
  std::uint32_t group = keys::group_of("a");
  for (const std::string& k : {keys::stock("a"), keys::hold_records("a"), keys::hold_deadlines("a"),
                               keys::pending("a"), keys::offers("a"), keys::waitlist("a"),
                               keys::wanted("a"), keys::dirty(group), keys::due(group)}) {
    ASSERT_EQ(cluster.command(move.from(), {"EXISTS", k}).integer, 1) << k;
  }
  ASSERT_TRUE(move.open());
  // 3 units come back: the second waiter is offered 1, and the waitlist is then empty.
  auto change = shop.send(holder, "a", 4);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(cluster.command(move.from(), {"ZCARD", keys::waitlist("a")}).integer, 1)
      << "a function ran on a slot in migration";
  EXPECT_EQ(change.wait_for(0ms), std::future_status::timeout) << "its row step did not wait";
  // Every key has moved, the slot not yet closed: the call goes to the target (ASK) and is
  // told to try again there, for its timeout, however many times that takes.
  ASSERT_EQ(move.migrate(), "OK");
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(change.wait_for(0ms), std::future_status::timeout) << "its row step gave up";
  ASSERT_TRUE(move.close());
  ASSERT_EQ(kind_of(change.get()), Kind::ok);
  // Every unit of the row: the buyer's 2 (checking out), the holder's 4, an offer of 1 to
  // each waiter; r is the sum of the buckets.
  auto offers = cluster.command(move.to(), {"HGETALL", keys::offers("a")});
  ASSERT_EQ(offers.elements.size(), 4u);
  EXPECT_EQ(offers.elements[1].str.substr(0, 2), "1 ");
  EXPECT_EQ(offers.elements[3].str.substr(0, 2), "1 ");
  EXPECT_EQ(cluster.command(move.to(), {"EXISTS", keys::waitlist("a")}).integer, 0);
  auto row = cluster.command(move.to(), {"HGETALL", keys::stock("a")});
  std::int64_t r = -1, buckets = 0;
  for (std::size_t i = 0; i + 1 < row.elements.size(); i += 2) {
    if (row.elements[i].str == "r") r = std::stoll(row.elements[i + 1].str);
    if (row.elements[i].str.starts_with('t')) buckets += std::stoll(row.elements[i + 1].str);
  }
  EXPECT_EQ(r, 8);
  EXPECT_EQ(buckets, 8);
  EXPECT_EQ(cluster.command(move.to(), {"HGET", keys::hold_records("a"), holder}).str.substr(0, 2),
            "4 ");
}

db::Order order_of(const std::string& sid, const std::string& key,
                   const cart::CheckoutStart& begun) {
  db::Order order{"order-" + key, sid, key, {}, 0, ""};
  for (const auto& l : begun.lines) {
    order.lines.push_back({l.product_id, l.inventory_id, l.name, l.quantity, l.unit_price_cents});
  }
  return order;
}

// A finish sent again (a retry, recovery) after another checkout of the row committed in
// the main DB but before that one's own finish: the row must not take the DB's newer
// count, which already lacks the units the other checkout still holds here.
TEST(SplitLines, a_repeated_finish_leaves_another_checkouts_units_alone) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 10);
  std::string a = sid_of(31), b = sid_of(32);
  ASSERT_EQ(kind_of(shop.set(a, "a", 2)), Kind::ok);
  ASSERT_EQ(kind_of(shop.set(b, "a", 8)), Kind::ok);
  auto begun_a = shop.begin_checkout(a, "ka");
  auto begun_b = shop.begin_checkout(b, "kb");
  ASSERT_TRUE(begun_a && begun_b);
  auto finish = [&](const std::string& sid, const db::Order& order, std::int64_t on_hand,
                    std::int64_t version) {
    std::vector<db::OnHandVersion> rows{{"a", on_hand, version}};
    auto r = shop.on_loop<boost::system::result<bool>>(
        [&](auto& carts, auto done) { carts.checkout_finish(sid, order, rows, done); });
    ASSERT_TRUE(r && *r);
  };
  finish(a, order_of(a, "ka", *begun_a), 8, 2);  // the DB after a's order
  EXPECT_EQ(redis.stock_row("a")["oh"], "8");
  // b's order commits in the DB (on_hand 0, version 3); a's finish runs again first.
  finish(a, order_of(a, "ka", *begun_a), 0, 3);
  auto row = redis.stock_row("a");
  EXPECT_GE(std::stoll(row["oh"]) - std::stoll(row["r"]), 0)
      << "on_hand " << row["oh"] << ", held " << row["r"];
  finish(b, order_of(b, "kb", *begun_b), 0, 3);
  row = redis.stock_row("a");
  EXPECT_EQ(row["oh"], "0");
  EXPECT_EQ(row["r"], "0");
}

// An abort sent again after the cart began its next checkout must not clear the pending
// mark of the new one (the same member: the cart's id).
TEST(SplitLines, a_late_abort_leaves_the_next_checkouts_mark) {
  RedisServer redis;
  SplitShop shop(redis.url(), false);
  shop.mirror("a", 10);
  std::string sid = sid_of(33);
  ASSERT_EQ(kind_of(shop.set(sid, "a", 2)), Kind::ok);
  auto first = shop.begin_checkout(sid, "k1");
  ASSERT_TRUE(first && first->kind == cart::CheckoutStart::Kind::begun);
  std::vector<db::OnHandVersion> rows{{"a", 10, 1}};
  auto abort = [&] { return shop.abort_checkout(sid, "k1", first->attempt_id, rows); };
  ASSERT_TRUE(abort().value());
  auto second = shop.begin_checkout(sid, "k2");
  ASSERT_TRUE(second && second->kind == cart::CheckoutStart::Kind::begun);
  EXPECT_EQ(redis.command({"ZCARD", keys::pending("a")}).integer, 1);
  EXPECT_FALSE(abort().value());  // not this attempt's any more
  EXPECT_EQ(redis.command({"ZCARD", keys::pending("a")}).integer, 1)
      << "the second checkout's mark is gone";
}

}  // namespace split_test
}  // namespace cartd::test
