#include "cart/split.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "base/session_id.hpp"
#include "cart/replies.hpp"
#include "functions/keys.hpp"
#include "redis/commands.hpp"

namespace cartd::cart {
namespace {

using replies::missing_from;
using replies::unexpected;

using Kind = SetLineOutcome::Kind;
using Type = redis::Reply::Type;

// A step that finds its cart locked by another change of it asks again after a pause
// that doubles from 1 ms to kMostPause, for as long as a lease at most (the other change
// ends well within it, or its lease lapses); then it gives up (503).
constexpr std::chrono::milliseconds kMostPause{16};

// Runs `again` after the pause for try number `tries` (0-based), on the connection's
// loop; false (nothing scheduled) once the pauses would add up to more than `lease`.
bool pause_then(redis::Commands& redis, int tries, std::chrono::milliseconds lease,
                std::function<void()> again) {
  std::chrono::milliseconds waited{0}, pause{1};
  for (int i = 0; i < tries; ++i) {
    waited += pause;
    pause = std::min(pause * 2, kMostPause);
  }
  if (waited + pause > lease) return false;
  auto timer = std::make_shared<boost::asio::steady_timer>(redis.context(), pause);
  timer->async_wait([timer, again = std::move(again)](boost::system::error_code ec) {
    if (ec != boost::asio::error::operation_aborted) again();  // not at shutdown
  });
  return true;
}

boost::system::error_code unavailable() {
  return redis::Errc::unavailable;
}

struct StoredLine {
  std::string product_id, inventory_id;
  std::int64_t quantity = 0;
};

// The rows a cart's marks name: a reply's trailing array (push_marks in holds.lua).
std::vector<std::string> marks_at(const redis::Reply& r) {
  std::vector<std::string> marks;
  if (r.elements.empty() || r.elements.back().type != Type::array) return marks;
  for (const redis::Reply& m : r.elements.back().elements) marks.push_back(m.str);
  return marks;
}

// Reads "pid inv qty" triples from element `first` on, up to a trailing array of marks.
std::optional<std::vector<StoredLine>> lines_at(const redis::Reply& r, std::size_t first) {
  std::size_t end = r.elements.size();
  if (end > first && r.elements.back().type == Type::array) --end;
  if (end < first || (end - first) % 3 != 0) return std::nullopt;
  std::vector<StoredLine> lines;
  for (std::size_t i = first; i < end; i += 3) {
    auto pid = r.text_at(i), inv = r.text_at(i + 1);
    auto qty = r.int_at(i + 2);
    if (!pid || !inv || !qty) return std::nullopt;
    lines.push_back(StoredLine{*pid, *inv, *qty});
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

// Sends a cart step (owned arguments), and again after a pause while it answers 'busy'
// (a line change of the cart under way; see pause_then); then the handler gets
// Errc::unavailable.
void send_while_busy(redis::Commands& redis, std::chrono::milliseconds lease,
                     std::vector<std::string> args, redis::ReplyHandler handler, int tries = 0) {
  std::vector<std::string_view> views(args.begin(), args.end());
  redis.command(
      std::span<const std::string_view>(views),
      [&redis, lease, args, handler = std::move(handler), tries](redis::Result r) mutable {
        if (r && r->type == Type::array && r->text_at(0) == "busy") {
          auto again = [&redis, lease, args = std::move(args), handler, tries]() mutable {
            send_while_busy(redis, lease, std::move(args), std::move(handler), tries + 1);
          };
          if (!pause_then(redis, tries, lease, std::move(again))) handler(unavailable());
          return;
        }
        handler(std::move(r));
      });
}

// A cart step: FCALL `function` on the cart, then `args`.
std::vector<std::string> cart_command(const char* function, const std::string& sid,
                                      std::vector<std::string> args) {
  return keys::fcall(function, {keys::cart(sid)}, std::move(args));
}

// The row steps of the waitlist on one row (waitlist.lua): a cart's place or offer there,
// and a cart leaving its line.
std::vector<std::string> wait_state_command(const std::string& sid, const std::string& inv) {
  return keys::fcall("cartd_wait_state", {keys::stock(inv)}, {sid, inv});
}
std::vector<std::string> leave_row_command(const std::string& sid, const std::string& inv) {
  return keys::fcall("cartd_leave_row", {keys::stock(inv)}, {sid, inv});
}

// A row step of many rows at once; `after` gets the replies in order (or the first
// error).
void rows_at_once(redis::Commands& redis, std::vector<std::vector<std::string>> commands,
                  std::function<void(boost::system::result<std::vector<redis::Reply>>)> after) {
  auto replies = std::make_shared<std::vector<redis::Reply>>(commands.size());
  auto failed = std::make_shared<boost::system::error_code>();
  auto owned = std::make_shared<std::vector<std::vector<std::string>>>(std::move(commands));
  all_of(
      owned->size(),
      [&redis, owned, replies, failed](std::size_t i, std::function<void()> answered) {
        std::vector<std::string_view> views((*owned)[i].begin(), (*owned)[i].end());
        redis.command(std::span<const std::string_view>(views),
                      [replies, failed, i, answered = std::move(answered)](redis::Result r) {
                        if (!r) {
                          *failed = r.error();
                        } else if (r->is_error()) {
                          *failed = unexpected(*r);
                        } else {
                          (*replies)[i] = std::move(*r);
                        }
                        answered();
                      });
      },
      [replies, failed, after = std::move(after)] {
        if (*failed) {
          return after(boost::system::result<std::vector<redis::Reply>>(
              boost::system::in_place_error, *failed));
        }
        after(std::move(*replies));
      });
}

// Lines as the split checkout records them: [{product_id, inventory_id, quantity}].
std::optional<std::vector<StoredLine>> parse_lines_json(const std::string& text) {
  boost::system::error_code ec;
  auto json = boost::json::parse(text, ec);
  if (ec || !json.is_array()) return std::nullopt;
  std::vector<StoredLine> lines;
  for (const auto& l : json.get_array()) {
    const auto* o = l.if_object();
    if (o == nullptr) return std::nullopt;
    try {
      lines.push_back(StoredLine{std::string(o->at("product_id").as_string()),
                                 std::string(o->at("inventory_id").as_string()),
                                 o->at("quantity").to_number<std::int64_t>()});
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return lines;
}

// How a row step sets a cart's hold (cartd_hold): for change `op` ("" for none); `if_mine`
// only a shrink, while the row's record is still that change's; `fence` (Redis' clock,
// ms; 0 for none), for a set that is not `if_mine`: the time after which the step writes
// nothing (answers 'lapsed').
struct HoldBy {
  std::string op;
  bool if_mine = false;
  std::int64_t fence = 0;
};

std::vector<std::string> hold_command(const char* function, const std::string& inv,
                                      const std::string& sid, const std::string& pid,
                                      std::int64_t qty, std::int64_t deadline,
                                      const HoldBy& by = {}) {
  std::vector<std::string> args{inv, sid, pid, std::to_string(qty), std::to_string(deadline)};
  if (!by.op.empty()) {
    args.push_back(by.op);
    if (by.if_mine) {
      args.push_back("if-mine");
    } else if (by.fence > 0) {
      args.insert(args.end(), {"", std::to_string(by.fence)});  // ARGV[7] '', ARGV[8]
    }
  }
  return keys::fcall(function, {keys::stock(inv)}, std::move(args));
}

// The names and prices of `lines`' rows, and the cart's place or offer on each row it
// marks (cartd_wait_state), read from their slots at once, into a view.
void read_view(redis::Commands& redis, CartView cart, std::vector<StoredLine> lines,
               std::vector<std::string> marks, Callback<CartView> done) {
  auto view = std::make_shared<CartView>(std::move(cart));
  view->lines.clear();
  for (const StoredLine& l : lines) {
    view->lines.push_back(CartLine{l.product_id, l.inventory_id, l.quantity, "", 0});
  }
  std::size_t count = view->lines.size();
  auto waits = std::make_shared<std::vector<redis::Reply>>(marks.size());
  auto failed = std::make_shared<boost::system::error_code>();
  auto wait_state = std::make_shared<std::vector<std::vector<std::string>>>();
  for (const std::string& inv : marks) {
    wait_state->push_back(wait_state_command(view->id, inv));
  }
  all_of(
      count + marks.size(),
      [&redis, view, waits, wait_state, count, failed](std::size_t i,
                                                       std::function<void()> answered) {
        if (i >= count) {
          return send(
              redis, (*wait_state)[i - count],
              [waits, failed, i = i - count, answered = std::move(answered)](redis::Result r) {
                if (!r) {
                  *failed = r.error();
                } else {
                  (*waits)[i] = std::move(*r);
                }
                answered();
              });
        }
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
      [view, waits, failed, done = std::move(done)] {
        if (*failed)
          return done(boost::system::result<CartView>(boost::system::in_place_error, *failed));
        // A mark whose row names the cart no longer (an offer lapsed or was claimed)
        // answers an empty array: left out.
        for (const redis::Reply& w : *waits) {
          if (w.type == Type::array && w.elements.empty()) continue;
          if (auto ok = decode_wait(w, *view); !ok) {
            return done(boost::system::result<CartView>(boost::system::in_place_error, ok.error()));
          }
        }
        std::sort(view->lines.begin(), view->lines.end(),
                  [](const CartLine& a, const CartLine& b) { return a.product_id < b.product_id; });
        done(std::move(*view));
      });
}

}  // namespace

void leave_rows(redis::Commands& redis, const std::string& sid,
                const std::vector<std::string>& marks, std::function<void()> after) {
  std::vector<std::vector<std::string>> commands;
  for (const std::string& inv : marks) {
    commands.push_back(leave_row_command(sid, inv));
  }
  rows_at_once(redis, std::move(commands), [sid, after = std::move(after)](auto replies) {
    if (!replies) spdlog::warn("cart {} leaving its waitlists: {}", sid, replies.error().message());
    after();
  });
}

namespace {

// One line change on its way (see split.lua for the steps).
class Change : public std::enable_shared_from_this<Change> {
 public:
  Change(redis::Commands& redis, const CartSettings& settings, LineHints& hints, SetLineCall call,
         std::string sid, bool create, Callback<SetLineOutcome> done)
      : redis_(redis),
        settings_(settings),
        hints_(hints),
        call_(std::move(call)),
        sid_(std::move(sid)),
        create_(create),
        done_(std::move(done)) {}

  void begin() {
    if (create_ && call_.quantity > 0) return begin_new();
    if (grows()) return begin_grow();
    begin_locked();
  }

 private:
  void begin_locked() {
    std::vector<std::string> args{sid_, op_, std::to_string(settings_.line_lease.count()),
                                  call_.inventory_id, create_ ? "1" : "0"};
    // A set to a quantity within the limits, of a line the cart has already, with a
    // deadline that stays: the same quantity is answered at once (one step instead of
    // three), a smaller one written to the cart at once, the row after (two instead of
    // four).
    if (call_.mode == LineMode::set && call_.quantity >= 0 &&
        call_.quantity <= settings_.limits.max_line_quantity && !grew_first_) {
      args.push_back(call_.product_id);
      args.push_back(std::to_string(call_.quantity));
      for (std::string& a : deadline_settings()) args.push_back(std::move(a));
      if (!call_.want_cart) args.push_back("bare");
    }
    send(redis_, cart_command("cartd_line_begin", sid_, std::move(args)),
         [self = shared_from_this()](redis::Result r) { self->on_begin(std::move(r)); });
  }

  // What makes a cart's deadline, as the steps that compute it take it: TTL ms, deadline
  // quantum ms, the cart's longest life ms.
  std::vector<std::string> deadline_settings() const {
    return {std::to_string(settings_.ttl.count()),
            std::to_string(settings_.deadline_quantum().count()),
            std::to_string(settings_.max_lifetime.count())};
  }

  // Whether the change is a grow of a line the cart has: an add, or a set above the line
  // as this loop last saw it (LineHints).
  bool grows() const {
    if (call_.quantity <= 0 || call_.quantity > settings_.limits.max_line_quantity) return false;
    if (call_.mode == LineMode::add) return true;
    auto seen = hints_.quantity(sid_, call_.product_id);
    return seen && *seen > 0 && call_.quantity > *seen;
  }

  // A grow, its row first (cartd_hold 'grow': only for a live record whose deadline
  // stays), then the line (cartd_line_grown: only if nothing changed it since the row's
  // record was set for it). Two steps instead of three; anything else takes the locked
  // steps, whose row step sets the row exactly.
  void begin_grow() {
    std::vector<std::string> args{call_.inventory_id,
                                  sid_,
                                  call_.product_id,
                                  std::to_string(call_.quantity),
                                  "0",
                                  op_,
                                  "grow",
                                  std::to_string(settings_.ttl.count()),
                                  std::to_string(settings_.deadline_quantum().count()),
                                  mode_name(),
                                  std::to_string(settings_.limits.max_line_quantity)};
    send(redis_, keys::fcall("cartd_hold_grow", {keys::stock(call_.inventory_id)}, std::move(args)),
         [self = shared_from_this()](redis::Result r) { self->on_grow_hold(std::move(r)); });
  }

  // A library from before a function (an older instance loaded its own during an
  // upgrade): the change takes the locked steps.
  static bool unknown_function(const redis::Result& r) {
    return r && r->is_error() && r->str.find("Function not found") != std::string::npos;
  }

  const char* mode_name() const { return call_.mode == LineMode::add ? "add" : "set"; }

  void on_grow_hold(redis::Result r) {
    // No answer: the row may hold more for the cart than its line, the safe side (as a
    // change cut short).
    if (!r) return fail(r.error());
    if (unknown_function(r)) return begin_locked();
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "slow") return begin_locked();
    if (*tag != "ok") return on_hold(std::move(r));  // a refusal: nothing was written
    out_.dropped = r->int_at(1).value_or(0);
    auto deadline = r->int_at(4);
    auto was = r->text_at(5);
    auto held = r->int_at(6), before = r->int_at(7);
    if (!deadline || !was || !held || !before) return fail(unexpected(*r));
    deadline_ = *deadline;
    held_ = *held;
    grow_ = Grow{op_, *deadline, *before};
    std::vector<std::string> args{op_,
                                  call_.product_id,
                                  call_.inventory_id,
                                  std::to_string(call_.quantity),
                                  mode_name(),
                                  std::to_string(deadline_),
                                  *was};
    for (std::string& a : deadline_settings()) args.push_back(std::move(a));
    if (!call_.want_cart) args.push_back("bare");
    send(redis_, cart_command("cartd_line_grown", sid_, std::move(args)),
         [self = shared_from_this()](redis::Result r) { self->on_grown(std::move(r)); });
  }

  void on_grown(redis::Result r) {
    if (!r) return fail(r.error());
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "refused") {
      // Something changed the cart since the row's record was set: the locked steps, in
      // full (no 'same' or 'shrunk' shortcut: the row must be set for the line again),
      // under an id of their own. Another grow's row step may have seen this one's id on
      // the record meanwhile; a line written with it would pass that grow's check.
      grew_first_ = true;
      op_ = new_session_id();
      return begin_locked();
    }
    if (*tag == "lost") {  // the cart ended: the row lets go of what this change held
      send_hold(
          call_.inventory_id, call_.product_id, 0, [](redis::Result) {}, true);
      out_.kind = Kind::no_cart;
      out_.missing = Missing::expired;
      return reply();
    }
    auto quantity = r->int_at(1);
    auto lines = lines_at(*r, 2);
    if (*tag != "ok" || !quantity || !lines) return fail(unexpected(*r));
    quantity_ = *quantity;
    take_lines(*r, std::move(*lines), true);
    out_.cart = CartView{sid_, deadline_, {}, {}, {}};
    // The row held more than the line (an add counted from a record above the line).
    if (held_ <= quantity_) return reply_with_cart();
    send_hold(
        call_.inventory_id, call_.product_id, quantity_,
        [self = shared_from_this()](redis::Result r) {
          self->warn_unless_ok(r, self->call_.inventory_id, "kept more than the cart's line");
          self->reply_with_cart();
        },
        true);
  }

  void on_begin(redis::Result r) {
    if (!r) return fail(r.error());
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "busy") {
      auto again = [self = shared_from_this()] { self->begin_locked(); };
      if (!pause_then(redis_, busy_tries_++, settings_.line_lease, std::move(again))) {
        fail(unavailable());
      }
      return;
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
    } else if (*tag == "locked" || *tag == "same" || *tag == "shrunk") {
      auto born = r->int_at(2), deadline = r->int_at(3);
      auto stale = r->text_at(4);  // for 'shrunk': the change that wrote the old line
      auto lines = lines_at(*r, 5);
      if (!born || !deadline || !stale || !lines) return fail(unexpected(*r));
      born_ = *born;
      old_deadline_ = *deadline;
      take_lines(*r, std::move(*lines), *tag != "locked");
      if (*tag == "same") return unchanged();
      if (*tag == "shrunk") return shrunk(*stale);
      stale_ = *stale;
      locked_ = true;
      // The lock lasts until now + the lease (the cart's node's clock); a quarter of it
      // is left for the clocks of the rows' nodes, which may differ a little.
      auto lease = settings_.line_lease.count();
      fence_ = *now + lease - lease / 4;
    } else {
      return fail(unexpected(*r));
    }
    plan(*now);
  }

  // The cart has the line already and its deadline stays: nothing to change (no lock
  // was taken), the answer is the cart as it is.
  void unchanged() {
    out_.cart = CartView{sid_, old_deadline_, {}, {}, {}};
    deadline_ = old_deadline_;
    quantity_ = call_.quantity;
    reply_with_cart();
  }

  // The cart has the smaller line already (its step wrote it, with no lock, keeping the
  // id of the change `was` that set the line's row): the row follows, while its record
  // is still that change's. A row another change set since keeps that change's hold; one
  // this step misses (cartd killed, Redis down) holds more than the line until the line's
  // next locked change, a change that moves the deadline, the checkout, or the record's
  // deadline.
  void shrunk(const std::string& was) {
    deadline_ = old_deadline_;
    quantity_ = call_.quantity;
    out_.cart = CartView{sid_, deadline_, {}, {}, {}};
    put_line();
    send(redis_,
         hold_command("cartd_hold", call_.inventory_id, sid_, call_.product_id, quantity_,
                      deadline_, HoldBy{was, true}),
         [self = shared_from_this()](redis::Result r) {
           self->warn_unless_ok(r, self->call_.inventory_id, "kept more than the cart's line");
           if (r) self->out_.dropped = r->int_at(1).value_or(0);
           self->reply_with_cart();
         });
  }

  // The cart's lines and marks from a step's reply, unless it answered 'bare' (`may_be_bare`:
  // a reply that names the cart's line has none when the change asked for none, on the
  // classic route).
  void take_lines(const redis::Reply& r, std::vector<StoredLine> lines, bool may_be_bare) {
    lines_known_ = !(may_be_bare && lines.empty() && !call_.want_cart);
    lines_ = std::move(lines);
    marks_ = marks_at(r);
  }

  // The cart's lines as this change left them: its line of the product is the new one.
  void put_line() {
    std::erase_if(lines_, [&](const StoredLine& l) { return l.product_id == call_.product_id; });
    if (quantity_ > 0)
      lines_.push_back(StoredLine{call_.product_id, call_.inventory_id, quantity_});
    if (fresh_) lines_known_ = true;  // a new cart has this line only
  }

  // A new cart's first line. The cart's id is cartd's own, made for this request, so no
  // other step can touch the cart: its row goes first, setting the cart's deadline from
  // its clock (as cartd_line_begin would), then the commit makes the cart. Two steps
  // instead of three (no cartd_line_begin to find that the cart is new).
  void begin_new() {
    fresh_ = true;
    quantity_ = held_ = call_.quantity;
    if (refused_by_limits(false)) return;
    std::vector<std::string> args{
        call_.inventory_id, sid_, call_.product_id, std::to_string(quantity_), "0", op_,
        "new-cart"};
    for (std::string& a : deadline_settings()) args.push_back(std::move(a));
    send(redis_, keys::fcall("cartd_hold_new", {keys::stock(call_.inventory_id)}, std::move(args)),
         [self = shared_from_this()](redis::Result r) {
           if (unknown_function(r)) return self->begin_locked();
           self->on_hold(std::move(r));
         });
  }

  // Refuses (and answers) a line over the limits: its quantity, or a new line in a cart
  // that has `--max-lines` already (`has_line`: the cart has a line of the product).
  bool refused_by_limits(bool has_line) {
    const Limits& limits = settings_.limits;
    if (quantity_ > limits.max_line_quantity) {
      out_.kind = Kind::quantity_limit;
      out_.limit = limits.max_line_quantity;
    } else if (quantity_ > 0 && !has_line &&
               static_cast<std::int64_t>(lines_.size()) >= limits.max_lines) {
      out_.kind = Kind::too_many_lines;
      out_.limit = limits.max_lines;
    } else {
      return false;
    }
    refuse();
    return true;
  }

  // What the line and the deadline become, within the limits.
  void plan(std::int64_t now) {
    auto old = std::find_if(lines_.begin(), lines_.end(),
                            [&](const StoredLine& l) { return l.product_id == call_.product_id; });
    if (old != lines_.end()) old_ = *old;
    quantity_ = call_.mode == LineMode::add ? old_.quantity + call_.quantity : call_.quantity;
    if (refused_by_limits(old != lines_.end())) return;
    std::int64_t quantum = settings_.deadline_quantum().count();
    deadline_ = std::min((now + settings_.ttl.count() + quantum - 1) / quantum * quantum,
                         born_ + settings_.max_lifetime.count());
    deadline_ = std::max(deadline_, old_deadline_);  // never back (see cartd_set_line)
    if (quantity_ == 0) return hold_others();
    // Until the line is written the row keeps what the cart says now if that is more: a
    // change cut short must leave too much held, never too little. A smaller line is
    // held exactly once it is written (after_commit).
    bool same_row = old_.quantity > 0 && old_.inventory_id == call_.inventory_id;
    held_ = same_row ? std::max(quantity_, old_.quantity) : quantity_;
    send_hold(call_.inventory_id, call_.product_id, held_,
              [self = shared_from_this()](redis::Result r) { self->on_hold(std::move(r)); });
  }

  // Sets the cart's hold on a row for this change. `if_mine`: the change's last word on
  // the row, after its commit (a shrink, a give-back), which a later change of the cart
  // that set the row since overrides.
  // A locked change's writes that may set a row lower go only inside its lease (`fence_`):
  // one held up past it could land after the cart's next change set the row.
  void send_hold(const std::string& inv, const std::string& pid, std::int64_t qty,
                 redis::ReplyHandler handler, bool if_mine = false) {
    send(redis_,
         hold_command("cartd_hold", inv, sid_, pid, qty, deadline_, HoldBy{op_, if_mine, fence_}),
         std::move(handler));
  }

  void on_hold(redis::Result r) {
    if (!r) {
      // The hold may have been taken. A locked cart keeps its lock, which records the
      // row: the cart's next change sets it back once the lease lapses. A new cart's id
      // is never seen again: its hold is given back now, if Redis takes it.
      if (fresh_)
        send_hold(
            call_.inventory_id, call_.product_id, 0, [](redis::Result) {}, true);
      return fail(r.error());
    }
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "ok") {
      out_.dropped = r->int_at(1).value_or(0);
      if (fresh_ && deadline_ == 0) {  // begin_new: the row set the deadline and the birth
        auto deadline = r->int_at(4), born = r->int_at(5);
        if (!deadline || !born) {
          send_hold(
              call_.inventory_id, call_.product_id, 0, [](redis::Result) {}, true);
          return fail(unexpected(*r));
        }
        deadline_ = *deadline;
        born_ = *born;
      }
      return hold_others();
    }
    if (*tag == "lapsed") return fail(unavailable());  // past the lease: nothing written
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

  // Before the commit, the rows besides the line's own that keep or gain holds: every
  // other line's (its old row's too, if it moves or goes) when the deadline moves, and
  // all of the cart's when a change before this one lapsed unfinished (a repair: each
  // row set to what the cart says; a row the lapsed change held that the cart has no
  // line on, to nothing).
  void hold_others() {
    auto sets = std::make_shared<std::vector<RowSet>>();
    bool moved = old_deadline_ != deadline_ || !stale_.empty();
    bool stale_seen = stale_.empty() || (quantity_ > 0 && stale_ == call_.inventory_id);
    for (const StoredLine& l : lines_) {
      if (l.inventory_id == stale_) stale_seen = true;
      bool own_row = l.product_id == call_.product_id && quantity_ > 0 &&
                     l.inventory_id == call_.inventory_id;  // held above
      // The row the line leaves is set as it is, for this change: the record is then
      // this change's, to let go of after the commit (after_commit).
      bool left = l.product_id == call_.product_id && releases_old_row();
      if ((moved || left) && !own_row) sets->push_back({l.inventory_id, l.product_id, l.quantity});
    }
    if (!stale_seen) sets->push_back({stale_, "", 0});
    // Every line's row is then this change's: the commit says so on each line.
    restamp_ = moved;
    // A row write that did not answer may still land, and one past the fence wrote
    // nothing: either way no commit, as for a change cut short. The lock stays until its
    // lease ends, after the fence, so no later change of the cart sets a row before such a
    // write lands or is refused; that change then sets every row.
    set_rows(sets, "was not moved with its deadline", [self = shared_from_this()] {
      if (self->row_unsure_) return self->fail(unavailable());
      self->commit();
    });
  }

  // After the commit, the holds that shrink: the line's own row to the line, and the
  // line's old row (it moved to another row, or went) to nothing. Both rows were set by
  // this change before the commit, and these writes are its last word on them: they go
  // only while the row's record is still this change's (if-mine), so a later change of
  // the cart that set the row since (from another instance, or after this change's
  // lease lapsed) keeps its hold.
  void after_commit(std::function<void()> then) {
    auto sets = std::make_shared<std::vector<RowSet>>();
    if (quantity_ > 0 && held_ > quantity_) {
      sets->push_back({call_.inventory_id, call_.product_id, quantity_});
    }
    if (releases_old_row()) sets->push_back({old_.inventory_id, old_.product_id, 0});
    set_rows(sets, "kept more than the cart's line", std::move(then), true);
  }

  // Whether the line leaves a row (it moves to another, or goes).
  bool releases_old_row() const {
    return old_.quantity > 0 && (old_.inventory_id != call_.inventory_id || quantity_ == 0);
  }

  void warn_unless_ok(const redis::Result& r, const std::string& inv, const char* what) {
    if (!r || r->text_at(0).value_or("") != "ok") {
      spdlog::warn("cart {}: the hold on row {} {} ({})", sid_, inv, what,
                   !r              ? r.error().message()
                   : r->is_error() ? r->str
                                   : r->text_at(0).value_or("?"));
    }
  }

  struct RowSet {
    std::string inv, pid;
    std::int64_t qty;
  };
  // Sets the cart's hold on rows, at once, at the change's deadline; `then` after the
  // last answer. A row that refuses (its record lapsed and the units went to others)
  // breaks the cart's promise on that line: checkout finds it; no unit is sold twice.
  void set_rows(std::shared_ptr<std::vector<RowSet>> sets, const char* what,
                std::function<void()> then, bool if_mine = false) {
    auto self = shared_from_this();
    all_of(
        sets->size(),
        [self, sets, what, if_mine](std::size_t i, std::function<void()> answered) {
          const RowSet& s = (*sets)[i];
          self->send_hold(
              s.inv, s.pid, s.qty,
              [self, what, inv = s.inv, answered = std::move(answered)](redis::Result r) {
                self->warn_unless_ok(r, inv, what);
                if (!r || r->text_at(0) == "lapsed") self->row_unsure_ = true;
                answered();
              },
              if_mine);
        },
        std::move(then));
  }

  void commit() {
    std::string qty = std::to_string(quantity_), deadline = std::to_string(deadline_),
                born = std::to_string(born_);
    send(redis_,
         cart_command("cartd_line_commit", sid_,
                      {op_, call_.product_id, call_.inventory_id, qty, deadline,
                       fresh_ ? "new" : "locked", born, restamp_ ? "all" : ""}),
         [self = shared_from_this()](redis::Result r) { self->on_commit(std::move(r)); });
  }

  void on_commit(redis::Result r) {
    if (!r) return fail(r.error());
    auto tag = r->text_at(0);
    if (r->type != Type::array || !tag) return fail(unexpected(*r));
    if (*tag == "lost") {
      // The cart ended while its rows took the change: the line's hold is given back.
      // If another step took the lapsed lock instead (a change that repairs, a checkout
      // that holds its rows anew), the row is theirs now: it is left as it is, holding
      // too much at worst, until its record's deadline.
      bool gone = r->text_at(1).value_or("") == "gone";
      if (gone && quantity_ > 0) {
        send_hold(
            call_.inventory_id, call_.product_id, 0, [](redis::Result) {}, true);
      }
      if (gone && !fresh_) {
        out_.kind = Kind::no_cart;
        out_.missing = Missing::expired;
        return reply();
      }
      return fail(unavailable());
    }
    if (*tag != "ok") return fail(unexpected(*r));
    out_.created = fresh_;
    out_.cart = CartView{sid_, deadline_, {}, {}, {}};
    put_line();
    after_commit([self = shared_from_this()] { self->reply_with_cart(); });
  }

  // The answer, with the whole cart (its names and prices, its waits) if the call wants it.
  void reply_with_cart() {
    if (!call_.want_cart) return reply();
    read_view(redis_, out_.cart, lines_, marks_,
              [self = shared_from_this()](boost::system::result<CartView> view) {
                if (!view) return self->fail(view.error());
                self->out_.cart = std::move(*view);
                self->reply();
              });
  }

  // A refusal: nothing changed; the cart is unlocked.
  void refuse() {
    if (!locked_) return reply();
    send(redis_, cart_command("cartd_line_release", sid_, {op_}),
         [self = shared_from_this()](redis::Result) { self->reply(); });
  }

  // A grow whose row went first and whose line was never written (its commit refused,
  // then the locked steps refused or failed) sets the row back, while the record is
  // still the grow's: to the line as the locked steps found it, or to what the record
  // held before the grow (at least the line). A refused request holds no more than the
  // row held before it (a record above the line, a shrink's row step pending, may come
  // down to the line).
  void give_back_grow() {
    if (!grew_first_) return;
    grew_first_ = false;
    std::int64_t back = grow_.before;
    if (lines_known_) {
      back = 0;
      for (const StoredLine& l : lines_) {
        if (l.product_id == call_.product_id && l.inventory_id == call_.inventory_id) {
          back = l.quantity;
        }
      }
    }
    send(redis_,
         hold_command("cartd_hold", call_.inventory_id, sid_, call_.product_id, back,
                      grow_.deadline, HoldBy{grow_.op, true}),
         [](redis::Result) {});
  }

  void reply() {
    if (out_.kind != Kind::ok) give_back_grow();
    // What the cart's lines are now (or were, for a refusal), for the next change's guess.
    if (out_.kind == Kind::no_cart) {
      hints_.forget(sid_);
    } else if (lines_known_) {
      LineHints::Lines seen;
      for (const StoredLine& l : lines_) seen.emplace_back(l.product_id, l.quantity);
      hints_.remember(sid_, std::move(seen));
    } else if (out_.kind == Kind::ok) {  // a bare reply: the line this change left
      hints_.note(sid_, call_.product_id, quantity_);
    }
    done_(std::move(out_));
  }
  void fail(boost::system::error_code ec) {
    give_back_grow();
    done_(boost::system::result<SetLineOutcome>(boost::system::in_place_error, ec));
  }

  redis::Commands& redis_;
  const CartSettings& settings_;
  LineHints& hints_;
  SetLineCall call_;
  std::string sid_;
  bool create_;
  Callback<SetLineOutcome> done_;
  std::string op_ = new_session_id();
  int busy_tries_ = 0;
  bool fresh_ = false, locked_ = false;
  bool restamp_ = false;     // the change set the rows of every line (see cartd_line_commit)
  bool grew_first_ = false;  // its row went first, and the commit was refused
  struct Grow {              // what a grow's row step did
    std::string op;          // under this id
    std::int64_t deadline = 0, before = 0;  // at this deadline, from this quantity
  } grow_;
  bool lines_known_ = false;  // lines_ is the cart's (before the change, or after it)
  std::int64_t born_ = 0, old_deadline_ = 0, quantity_ = 0, deadline_ = 0;
  std::int64_t held_ = 0;    // what the line's row holds until the commit
  std::int64_t fence_ = 0;   // a locked change: its row writes go until then (see send_hold)
  bool row_unsure_ = false;  // a row write did not answer, or came past the fence
  std::string stale_;
  std::vector<StoredLine> lines_;
  std::vector<std::string> marks_;  // the rows the cart waits on
  StoredLine old_;
  SetLineOutcome out_;
};

}  // namespace

void split_set_line(redis::Commands& redis, const CartSettings& settings, LineHints& hints,
                    const SetLineCall& call, const std::string& session_id, bool create,
                    Callback<SetLineOutcome> done) {
  std::make_shared<Change>(redis, settings, hints, call, session_id, create, std::move(done))
      ->begin();
}

void split_checkout_begin(redis::Commands& redis, const CartSettings& settings,
                          const std::string& session_id, const std::string& key,
                          const std::string& attempt_id, Callback<CheckoutStart> done) {
  send_while_busy(
      redis, settings.line_lease,
      cart_command("cartd_checkout_freeze", session_id,
                   {session_id, key, std::to_string(settings.checkout_grace.count()), attempt_id,
                    std::to_string(settings.deadline_quantum().count())}),
      [&redis, session_id, done = std::move(done)](redis::Result r) {
        using K = CheckoutStart::Kind;
        if (!r)
          return done(
              boost::system::result<CheckoutStart>(boost::system::in_place_error, r.error()));
        auto tag = r->text_at(0).value_or("");
        if (tag != "begun" && tag != "resume") return done(decode_checkout_start(*r));
        auto lines = parse_lines_json(r->text_at(1).value_or(""));
        auto attempt = r->text_at(2);
        auto deadline = r->int_at(3);
        auto stale = r->text_at(4);
        if (!lines || !attempt || !deadline || *deadline <= 0 || !stale) {
          return done(
              boost::system::result<CheckoutStart>(boost::system::in_place_error, unexpected(*r)));
        }
        auto start = std::make_shared<CheckoutStart>();
        start->kind = tag == "begun" ? K::begun : K::resume;
        start->attempt_id = *attempt;
        // Each row holds the line until the checkout's deadline and is marked pending; a
        // row a lapsed line change left holding too much holds nothing for the cart.
        std::vector<std::vector<std::string>> commands;
        bool stale_seen = stale->empty();
        for (const StoredLine& l : *lines) {
          start->lines.push_back(CartLine{l.product_id, l.inventory_id, l.quantity, "", 0});
          commands.push_back(hold_command("cartd_checkout_hold", l.inventory_id, session_id,
                                          l.product_id, l.quantity, *deadline));
          if (l.inventory_id == *stale) stale_seen = true;
        }
        if (!stale_seen)
          commands.push_back(hold_command("cartd_hold", *stale, session_id, "", 0, 0));
        rows_at_once(redis, std::move(commands),
                     [start, done](boost::system::result<std::vector<redis::Reply>> replies) {
                       if (!replies) {
                         return done(boost::system::result<CheckoutStart>(
                             boost::system::in_place_error, replies.error()));
                       }
                       for (std::size_t i = 0; i < start->lines.size(); ++i) {
                         const redis::Reply& h = (*replies)[i];
                         CartLine& line = start->lines[i];
                         if (h.text_at(0) != "ok") {
                           start->kind = K::short_of;
                           start->inventory_id = line.inventory_id;
                           continue;
                         }
                         line.name = h.text_at(2).value_or("");
                         line.unit_price_cents = h.int_at(3).value_or(0);
                       }
                       std::sort(start->lines.begin(), start->lines.end(),
                                 [](const CartLine& a, const CartLine& b) {
                                   return a.product_id < b.product_id;
                                 });
                       done(std::move(*start));
                     });
      });
}

void split_checkout_finish(redis::Commands& redis, const std::string& session_id,
                           const db::Order& order, const std::vector<db::OnHandVersion>& rows,
                           Callback<bool> done, std::shared_ptr<std::int64_t> units) {
  std::vector<std::vector<std::string>> commands;
  boost::json::array sold;
  for (const db::OrderLine& l : order.lines) {
    auto row = std::find_if(rows.begin(), rows.end(), [&](const db::OnHandVersion& r) {
      return r.inventory_id == l.inventory_id;
    });
    bool known = row != rows.end();
    commands.push_back(keys::fcall(
        "cartd_checkout_release", {keys::stock(l.inventory_id)},
        {l.inventory_id, session_id, std::to_string(l.quantity),
         known ? std::to_string(row->on_hand) : "", known ? std::to_string(row->version) : ""}));
    sold.push_back(boost::json::object{
        {"product_id", l.product_id}, {"inventory_id", l.inventory_id}, {"quantity", l.quantity}});
  }
  std::vector<std::string> close = cart_command("cartd_checkout_close", session_id,
                                                {session_id, order.idempotency_key, order.order_id,
                                                 std::string(boost::json::serialize(sold))});
  rows_at_once(
      redis, std::move(commands),
      [&redis, session_id, close = std::move(close), units,
       done = std::move(done)](boost::system::result<std::vector<redis::Reply>> replies) {
        if (!replies) {
          return done(boost::system::result<bool>(boost::system::in_place_error, replies.error()));
        }
        std::int64_t dropped = 0;
        for (const redis::Reply& r : *replies) dropped += r.integer;
        send(redis, close, [&redis, session_id, units, dropped, done](redis::Result r) {
          if (!r) {
            return done(boost::system::result<bool>(boost::system::in_place_error, r.error()));
          }
          auto tag = r->text_at(0).value_or("");
          if (tag == "finished" && units) *units = dropped;
          if (tag != "finished" && tag != "done") {
            return done(boost::system::result<bool>(boost::system::in_place_error, unexpected(*r)));
          }
          // The rows the cart waited on: it leaves them.
          leave_rows(redis, session_id, marks_at(*r), [done] { done(true); });
        });
      });
}

void split_checkout_abort(redis::Commands& redis, const std::string& session_id,
                          const std::string& key, const std::string& attempt_id,
                          const std::vector<db::OnHandVersion>& rows, Callback<bool> done) {
  // The rows are unmarked before the cart is thawed: once thawed, the cart may begin its
  // next checkout, whose pending marks (the same member: the session id) a late unmark
  // would clear. Only this attempt's rows are unmarked.
  std::vector<std::string> read{"HMGET", keys::checkout(session_id), "key", "attempt", "lines"};
  send(redis, read,
       [&redis, session_id, key, attempt_id, rows, done = std::move(done)](redis::Result r) {
         if (!r) return done(boost::system::result<bool>(boost::system::in_place_error, r.error()));
         auto co_key = r->text_at(0);
         bool ours = co_key == key &&
                     r->text_at(1).value_or(session_id + " " + key) == attempt_id;  // attempt_of
         // inventory_id -> {on_hand, version} ("" when the DB gave none), clear the mark
         std::map<std::string, std::tuple<std::string, std::string, bool>> unmark;
         if (ours) {
           for (const StoredLine& l :
                parse_lines_json(r->text_at(2).value_or("")).value_or(std::vector<StoredLine>{})) {
             unmark[l.inventory_id] = {"", "", true};
           }
         }
         for (const db::OnHandVersion& row : rows) {
           bool marked = unmark.contains(row.inventory_id);
           unmark[row.inventory_id] = {std::to_string(row.on_hand), std::to_string(row.version),
                                       marked};
         }
         std::vector<std::vector<std::string>> commands;
         for (const auto& [inv, u] : unmark) {
           const auto& [on_hand, version, clear] = u;
           commands.push_back(keys::fcall("cartd_checkout_unmark", {keys::stock(inv)},
                                          {inv, session_id, on_hand, version, clear ? "1" : "0"}));
         }
         rows_at_once(
             redis, std::move(commands), [&redis, session_id, key, attempt_id, done](auto replies) {
               if (!replies) {
                 return done(
                     boost::system::result<bool>(boost::system::in_place_error, replies.error()));
               }
               send(redis,
                    cart_command("cartd_checkout_thaw", session_id, {session_id, key, attempt_id}),
                    [done](redis::Result r) {
                      if (!r) {
                        return done(
                            boost::system::result<bool>(boost::system::in_place_error, r.error()));
                      }
                      auto thawed = r->int_at(0);
                      if (r->type != Type::array || !thawed) {
                        return done(boost::system::result<bool>(boost::system::in_place_error,
                                                                unexpected(*r)));
                      }
                      done(*thawed == 1);
                    });
             });
       });
}

void split_abandon(redis::Commands& redis, std::chrono::milliseconds lease,
                   const std::string& session_id, Callback<CartService::Abandoned> done) {
  using Abandoned = CartService::Abandoned;
  using K = Abandoned::Kind;
  send_while_busy(
      redis, lease, cart_command("cartd_abandon_cart", session_id, {session_id}),
      [&redis, session_id, done = std::move(done)](redis::Result r) {
        if (!r) {
          return done(boost::system::result<Abandoned>(boost::system::in_place_error, r.error()));
        }
        auto tag = r->text_at(0).value_or("");
        if (tag == "checkout_in_progress") return done(Abandoned{K::checkout_in_progress, {}, {}});
        if (tag != "abandoned") return done(Abandoned{K::missing, {}, missing_from(tag)});
        auto deadline = r->int_at(1);
        auto stale = r->text_at(2);
        auto lines = lines_at(*r, 3);
        if (!deadline || !stale || !lines) {
          return done(
              boost::system::result<Abandoned>(boost::system::in_place_error, unexpected(*r)));
        }
        std::vector<std::vector<std::string>> commands;
        bool stale_seen = stale->empty();
        for (const StoredLine& l : *lines) {
          commands.push_back(hold_command("cartd_hold", l.inventory_id, session_id, "", 0, 0));
          if (l.inventory_id == *stale) stale_seen = true;
        }
        if (!stale_seen)
          commands.push_back(hold_command("cartd_hold", *stale, session_id, "", 0, 0));
        // It leaves the waitlists it was in, at the same time.
        for (const std::string& inv : marks_at(*r)) {
          commands.push_back(leave_row_command(session_id, inv));
        }
        CartView cart{session_id, *deadline, {}, {}, {}};
        rows_at_once(
            redis, std::move(commands),
            [&redis, cart = std::move(cart), lines = std::move(*lines), done](auto replies) {
              // The cart is gone either way; a row that did not answer holds its units
              // until the cart's deadline, when they come back by themselves.
              if (!replies) spdlog::warn("abandon {}: {}", cart.id, replies.error().message());
              read_view(redis, cart, lines, {}, [done](boost::system::result<CartView> view) {
                if (!view) {
                  return done(boost::system::result<Abandoned>(boost::system::in_place_error,
                                                               view.error()));
                }
                done(Abandoned{K::abandoned, std::move(*view), {}});
              });
            });
      });
}

void split_get_cart(redis::Commands& redis, const std::string& session_id,
                    Callback<CartLookup> done) {
  send(redis, cart_command("cartd_cart_lines", session_id, {session_id}),
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
                   marks_at(*r), [done](boost::system::result<CartView> view) {
                     if (!view) {
                       return done(boost::system::result<CartLookup>(boost::system::in_place_error,
                                                                     view.error()));
                     }
                     done(CartLookup{std::move(*view), Missing::unknown});
                   });
       });
}

namespace {

// A wait's cart step, marking the cart with `token`; `drop`: marks (inventory_id, token
// pairs) found stale, dropped first if they still carry their token. A second
// 'too_many_waits' (after a drop) is the answer.
void wait_mark(redis::Commands& redis, std::shared_ptr<const std::vector<std::string>> row_call,
               const std::string& sid, const std::string& inv, const WaitLimits& limits,
               const std::string& token, std::vector<std::string> drop, redis::ReplyHandler done) {
  bool checked = !drop.empty();
  std::vector<std::string> args{sid, inv, limits.max_waits, token, limits.max_lifetime_ms};
  for (std::string& d : drop) args.push_back(std::move(d));
  send(redis, cart_command("cartd_wait_mark", sid, std::move(args)),
       [&redis, row_call, sid, inv, limits, token, checked, done](redis::Result r) {
         if (!r || r->type != Type::array) return done(std::move(r));
         auto tag = r->text_at(0).value_or("");
         if (tag == "too_many_waits" && !checked) {
           // A mark outlives an offer that lapsed or was claimed: read the marked rows,
           // and ask again without those that name the cart no longer.
           std::vector<std::string> marked;  // inventory_id, token, ...
           std::vector<std::vector<std::string>> reads;
           for (std::size_t i = 2; i + 1 < r->elements.size(); i += 2) {
             marked.push_back(r->elements[i].str);
             marked.push_back(r->elements[i + 1].str);
             reads.push_back(wait_state_command(sid, r->elements[i].str));
           }
           auto full = std::make_shared<redis::Reply>(std::move(*r));
           return rows_at_once(
               redis, std::move(reads),
               [&redis, row_call, sid, inv, limits, token, marked, full, done](auto replies) {
                 if (!replies)
                   return done(redis::Result(boost::system::in_place_error, replies.error()));
                 std::vector<std::string> gone;
                 for (std::size_t i = 0; i < replies->size(); ++i) {
                   if (!(*replies)[i].elements.empty()) continue;
                   gone.push_back(marked[2 * i]);
                   gone.push_back(marked[2 * i + 1]);
                 }
                 if (gone.empty()) return done(std::move(*full));
                 wait_mark(redis, row_call, sid, inv, limits, token, std::move(gone), done);
               });
         }
         if (tag != "marked") return done(std::move(r));
         bool fresh = r->int_at(1) == 1;
         send(redis, *row_call, [&redis, sid, inv, token, fresh, done](redis::Result row) {
           auto placed = row && row->type == Type::array ? row->text_at(0) : std::nullopt;
           if (placed == "waiting" && row->int_at(2) == 1) {
             // A new place: if the cart ended between the steps (its end left the rows
             // it waited on before this one had it), the place goes too.
             auto joined = std::make_shared<redis::Reply>(std::move(*row));
             std::vector<std::string> exists{"EXISTS", keys::cart(sid)};
             return send(redis, exists, [&redis, sid, inv, joined, done](redis::Result live) {
               if (!live || live->integer != 0) return done(std::move(*joined));
               send(redis, leave_row_command(sid, inv),
                    [joined, done](redis::Result) { done(std::move(*joined)); });
             });
           }
           if (!placed || *placed == "waiting" || *placed == "offered" || !fresh) {
             return done(std::move(row));
           }
           // The row refused a cart this wait marked: the mark goes, unless another wait
           // of the cart has marked the row since.
           auto refusal = std::make_shared<redis::Reply>(std::move(*row));
           send(redis, cart_command("cartd_wait_unmark", sid, {sid, inv, token}),
                [refusal, done](redis::Result) { done(std::move(*refusal)); });
         });
       });
}

}  // namespace

void split_wait(redis::Commands& redis, const std::string& session_id,
                const std::string& inventory_id, std::vector<std::string> row_args,
                const WaitLimits& limits, redis::ReplyHandler done) {
  std::vector<std::string> args{session_id, inventory_id};
  for (std::string& a : row_args) args.push_back(std::move(a));
  auto row_call = std::make_shared<const std::vector<std::string>>(
      keys::fcall("cartd_wait_row", {keys::stock(inventory_id)}, std::move(args)));
  wait_mark(redis, row_call, session_id, inventory_id, limits, new_session_id(), {},
            std::move(done));
}

void split_leave(redis::Commands& redis, const std::string& session_id,
                 const std::string& inventory_id, redis::ReplyHandler done) {
  // The mark goes first: a mark without a place is read and left out, a place without a
  // mark would be missed by the cart's view and its end (a wait of the cart in between
  // takes a place again, and marks the row again).
  send(redis, cart_command("cartd_wait_unmark", session_id, {session_id, inventory_id, ""}),
       [&redis, session_id, inventory_id, done = std::move(done)](redis::Result r) {
         if (!r) return done(std::move(r));
         send(redis, leave_row_command(session_id, inventory_id), done);
       });
}

}  // namespace cartd::cart
