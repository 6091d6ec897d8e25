#include "cart/split_line.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "base/session_id.hpp"
#include "functions/keys.hpp"
#include "redis/commands.hpp"

namespace cartd::cart {
namespace {

using Kind = SetLineOutcome::Kind;
using Type = redis::Reply::Type;

// How often a change finding its cart locked by another change asks again, at once,
// before it gives up (503). A change takes three round trips; this covers a few.
constexpr int kBusyTries = 32;

boost::system::error_code unexpected(const redis::Reply& r) {
  spdlog::error("redis: unexpected reply: {}", r.is_error() ? r.str : "wrong shape");
  return ReplyErrc::unexpected_reply;
}

boost::system::error_code unavailable() {
  return redis::Errc::unavailable;
}

Missing missing_from(std::string_view s) {
  if (s == "expired") return Missing::expired;
  if (s == "checked_out") return Missing::checked_out;
  return Missing::unknown;
}

struct Line {
  std::string product_id, inventory_id;
  std::int64_t quantity = 0;
};

// Reads "pid inv qty" triples from element `first` on.
std::optional<std::vector<Line>> lines_at(const redis::Reply& r, std::size_t first) {
  if ((r.elements.size() - first) % 3 != 0) return std::nullopt;
  std::vector<Line> lines;
  for (std::size_t i = first; i < r.elements.size(); i += 3) {
    auto pid = r.text_at(i), inv = r.text_at(i + 1);
    auto qty = r.int_at(i + 2);
    if (!pid || !inv || !qty) return std::nullopt;
    lines.push_back(Line{*pid, *inv, *qty});
  }
  return lines;
}

// Runs `count` commands at once; `each(i, done)` sends the i-th, `after` runs once all
// have answered.
void all_of(std::size_t count, const std::function<void(std::size_t, std::function<void()>)>& each,
            std::function<void()> after) {
  if (count == 0) return after();
  auto left = std::make_shared<std::size_t>(count);
  auto then = std::make_shared<std::function<void()>>(std::move(after));
  for (std::size_t i = 0; i < count; ++i) {
    each(i, [left, then] {
      if (--*left == 0) (*then)();
    });
  }
}

// The names and prices of `lines`' rows, read from their slots at once, into a view.
void read_view(redis::Commands& redis, CartView cart, std::vector<Line> lines,
               Callback<CartView> done) {
  auto view = std::make_shared<CartView>(std::move(cart));
  view->lines.clear();
  for (const Line& l : lines) {
    view->lines.push_back(CartLine{l.product_id, l.inventory_id, l.quantity, "", 0});
  }
  auto failed = std::make_shared<boost::system::error_code>();
  all_of(
      view->lines.size(),
      [&redis, view, failed](std::size_t i, std::function<void()> answered) {
        redis.command({"HMGET", keys::stock(view->lines[i].inventory_id), "n", "pc"},
                      [view, failed, i, answered = std::move(answered)](redis::Result r) {
                        if (!r) {
                          *failed = r.error();
                        } else {
                          view->lines[i].name = r->text_at(0).value_or("");
                          view->lines[i].unit_price_cents = r->int_at(1).value_or(0);
                        }
                        answered();
                      });
      },
      [view, failed, done = std::move(done)] {
        if (*failed)
          return done(boost::system::result<CartView>(boost::system::in_place_error, *failed));
        std::sort(view->lines.begin(), view->lines.end(),
                  [](const CartLine& a, const CartLine& b) { return a.product_id < b.product_id; });
        done(std::move(*view));
      });
}

// One line change on its way (see split.lua for the steps).
class Change : public std::enable_shared_from_this<Change> {
 public:
  Change(redis::Commands& redis, const CartSettings& settings, SetLineCall call, std::string sid,
         bool create, Callback<SetLineOutcome> done)
      : redis_(redis),
        settings_(settings),
        call_(std::move(call)),
        sid_(std::move(sid)),
        cart_key_(keys::cart(sid_)),
        create_(create),
        done_(std::move(done)) {}

  void begin() {
    std::string lease = std::to_string(settings_.line_lease.count());
    redis_.command({"FCALL", "cartd_line_begin", "1", cart_key_, sid_, op_, lease,
                    call_.inventory_id, create_ ? "1" : "0"},
                   [self = shared_from_this()](redis::Result r) { self->on_begin(std::move(r)); });
  }

 private:
  void on_begin(redis::Result r) {
    if (!r) return fail(r.error());
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "busy") {
      if (++busy_tries_ < kBusyTries) return begin();
      return fail(unavailable());
    }
    if (*tag == "no_cart") {
      out_.kind = Kind::no_cart;
      out_.missing = missing_from(r->text_at(1).value_or(""));
      return reply();
    }
    if (*tag == "checkout_in_progress") {
      out_.kind = Kind::checkout_in_progress;
      return reply();
    }
    auto now = r->int_at(1);
    if (!now) return fail(unexpected(*r));
    if (*tag == "new") {
      fresh_ = true;
      born_ = *now;
    } else if (*tag == "locked") {
      auto born = r->int_at(2), deadline = r->int_at(3);
      auto stale = r->text_at(4);
      auto lines = lines_at(*r, 5);
      if (!born || !deadline || !stale || !lines) return fail(unexpected(*r));
      born_ = *born;
      old_deadline_ = *deadline;
      stale_ = *stale;
      lines_ = std::move(*lines);
      locked_ = true;
    } else {
      return fail(unexpected(*r));
    }
    plan(*now);
  }

  // What the line and the deadline become, within the limits.
  void plan(std::int64_t now) {
    auto old = std::find_if(lines_.begin(), lines_.end(),
                            [&](const Line& l) { return l.product_id == call_.product_id; });
    if (old != lines_.end()) old_ = *old;
    quantity_ = call_.mode == LineMode::add ? old_.quantity + call_.quantity : call_.quantity;
    const Limits& limits = settings_.limits;
    if (quantity_ > limits.max_line_quantity) {
      out_.kind = Kind::quantity_limit;
      out_.limit = limits.max_line_quantity;
      return refuse();
    }
    if (quantity_ > 0 && old == lines_.end() &&
        static_cast<std::int64_t>(lines_.size()) >= limits.max_lines) {
      out_.kind = Kind::too_many_lines;
      out_.limit = limits.max_lines;
      return refuse();
    }
    std::int64_t quantum = settings_.deadline_quantum().count();
    deadline_ = std::min((now + settings_.ttl.count() + quantum - 1) / quantum * quantum,
                         born_ + settings_.max_lifetime.count());
    deadline_ = std::max(deadline_, old_deadline_);  // never back (see cartd_set_line)
    if (quantity_ == 0) return hold_others();
    send_hold(call_.inventory_id, call_.product_id, quantity_,
              [self = shared_from_this()](redis::Result r) { self->on_hold(std::move(r)); });
  }

  void send_hold(const std::string& inv, const std::string& pid, std::int64_t qty,
                 redis::ReplyHandler handler) {
    redis_.command({"FCALL", "cartd_hold", "1", keys::stock(inv), inv, sid_, pid,
                    std::to_string(qty), std::to_string(deadline_)},
                   std::move(handler));
  }

  void on_hold(redis::Result r) {
    if (!r) {
      // The hold may have been taken. A locked cart keeps its lock, which records the
      // row: the cart's next change sets it back once the lease lapses. A new cart's id
      // is never seen again: its hold is given back now, if Redis takes it.
      if (fresh_) send_hold(call_.inventory_id, call_.product_id, 0, [](redis::Result) {});
      return fail(r.error());
    }
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "ok") {
      out_.dropped = r->int_at(1).value_or(0);
      return hold_others();
    }
    if (*tag == "insufficient") {
      out_.kind = Kind::insufficient;
      out_.available = r->int_at(1).value_or(0);
      out_.dropped = r->int_at(2).value_or(0);
      out_.waitlisted = r->int_at(3).value_or(0) == 1;
    } else if (*tag == "unknown_inventory") {
      out_.kind = Kind::unknown_inventory;
    } else if (*tag == "product_mismatch") {
      out_.kind = Kind::product_mismatch;
      out_.product_id = r->text_at(1).value_or("");
    } else if (*tag == "limit_exceeded") {
      out_.kind = Kind::limit_exceeded;
      out_.limit = r->int_at(1).value_or(0);
    } else {
      return fail(unexpected(*r));
    }
    refuse();
  }

  // The rows besides the line's own: the line's old row when it moves to another (or
  // goes), every other line's when the deadline moves, and all of the cart's when a
  // change before this one lapsed unfinished (a repair: each row set to what the cart
  // says).
  void hold_others() {
    struct Set {
      std::string inv, pid;
      std::int64_t qty;
    };
    auto sets = std::make_shared<std::vector<Set>>();
    bool moved = old_deadline_ != deadline_ || !stale_.empty();
    bool stale_seen = stale_.empty() || (quantity_ > 0 && stale_ == call_.inventory_id);
    if (old_.quantity > 0 && (old_.inventory_id != call_.inventory_id || quantity_ == 0)) {
      sets->push_back({old_.inventory_id, old_.product_id, 0});
    }
    for (const Line& l : lines_) {
      if (l.inventory_id == stale_) stale_seen = true;
      if (l.product_id != call_.product_id && moved) {
        sets->push_back({l.inventory_id, l.product_id, l.quantity});
      }
    }
    if (!stale_seen) sets->push_back({stale_, "", 0});
    auto self = shared_from_this();
    all_of(
        sets->size(),
        [self, sets](std::size_t i, std::function<void()> answered) {
          const Set& s = (*sets)[i];
          self->send_hold(s.inv, s.pid, s.qty,
                          [self, inv = s.inv, answered = std::move(answered)](redis::Result r) {
                            // A row that cannot take the hold back (its record lapsed and
                            // the units went) breaks this cart's promise on that line;
                            // checkout will find it. Units are never oversold for it.
                            if (!r || r->text_at(0).value_or("") != "ok") {
                              spdlog::warn(
                                  "cart {}: the hold on row {} was not moved with its "
                                  "deadline ({})",
                                  self->sid_, inv,
                                  r ? r->text_at(0).value_or("?") : r.error().message());
                            }
                            answered();
                          });
        },
        [self] { self->commit(); });
  }

  void commit() {
    std::string qty = std::to_string(quantity_), deadline = std::to_string(deadline_),
                born = std::to_string(born_);
    redis_.command({"FCALL", "cartd_line_commit", "1", cart_key_, op_, call_.product_id,
                    call_.inventory_id, qty, deadline, fresh_ ? "new" : "locked", born},
                   [self = shared_from_this()](redis::Result r) { self->on_commit(std::move(r)); });
  }

  void on_commit(redis::Result r) {
    if (!r) return fail(r.error());
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "lost") {
      // The cart ended while its rows took the change (or another change took the lapsed
      // lock, and set them as the cart says): the line's hold is given back.
      if (quantity_ > 0) send_hold(call_.inventory_id, call_.product_id, 0, [](redis::Result) {});
      if (r->text_at(1).value_or("") == "gone" && !fresh_) {
        out_.kind = Kind::no_cart;
        out_.missing = Missing::expired;
        return reply();
      }
      return fail(unavailable());
    }
    if (*tag != "ok") return fail(unexpected(*r));
    out_.created = fresh_;
    out_.cart = CartView{sid_, deadline_, {}, {}, {}};
    std::erase_if(lines_, [&](const Line& l) { return l.product_id == call_.product_id; });
    if (quantity_ > 0) lines_.push_back(Line{call_.product_id, call_.inventory_id, quantity_});
    if (!call_.want_cart) return reply();
    read_view(redis_, out_.cart, lines_,
              [self = shared_from_this()](boost::system::result<CartView> view) {
                if (!view) return self->fail(view.error());
                self->out_.cart = std::move(*view);
                self->reply();
              });
  }

  // A refusal: nothing changed; the cart is unlocked.
  void refuse() {
    if (!locked_) return reply();
    redis_.command({"FCALL", "cartd_line_release", "1", cart_key_, op_},
                   [self = shared_from_this()](redis::Result) { self->reply(); });
  }

  void reply() { done_(std::move(out_)); }
  void fail(boost::system::error_code ec) {
    done_(boost::system::result<SetLineOutcome>(boost::system::in_place_error, ec));
  }

  redis::Commands& redis_;
  const CartSettings& settings_;
  SetLineCall call_;
  std::string sid_, cart_key_;
  bool create_;
  Callback<SetLineOutcome> done_;
  std::string op_ = new_session_id();
  int busy_tries_ = 0;
  bool fresh_ = false, locked_ = false;
  std::int64_t born_ = 0, old_deadline_ = 0, quantity_ = 0, deadline_ = 0;
  std::string stale_;
  std::vector<Line> lines_;
  Line old_;
  SetLineOutcome out_;
};

}  // namespace

void split_set_line(redis::Commands& redis, const CartSettings& settings, const SetLineCall& call,
                    const std::string& session_id, bool create, Callback<SetLineOutcome> done) {
  std::make_shared<Change>(redis, settings, call, session_id, create, std::move(done))->begin();
}

void split_get_cart(redis::Commands& redis, const std::string& session_id,
                    Callback<CartLookup> done) {
  redis.command(
      {"FCALL", "cartd_cart_lines", "1", keys::cart(session_id), session_id},
      [&redis, session_id, done = std::move(done)](redis::Result r) {
        if (!r)
          return done(boost::system::result<CartLookup>(boost::system::in_place_error, r.error()));
        if (r->type == Type::string || r->type == Type::status) {
          return done(CartLookup{{}, missing_from(r->str)});
        }
        auto deadline = r->int_at(0);
        auto lines = r->type == Type::array ? lines_at(*r, 1) : std::nullopt;
        if (!deadline || !lines) {
          return done(
              boost::system::result<CartLookup>(boost::system::in_place_error, unexpected(*r)));
        }
        read_view(redis, CartView{session_id, *deadline, {}, {}, {}}, std::move(*lines),
                  [done](boost::system::result<CartView> view) {
                    if (!view) {
                      return done(boost::system::result<CartLookup>(boost::system::in_place_error,
                                                                    view.error()));
                    }
                    done(CartLookup{std::move(*view), Missing::unknown});
                  });
      });
}

}  // namespace cartd::cart
