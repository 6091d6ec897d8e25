#include "checkout/saga.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <memory>

#include "base/session_id.hpp"

namespace cartd::checkout {
namespace {

using Kind = Outcome::Kind;

[[noreturn]] void inject_fault(int step) {
  spdlog::critical("fault injection: exiting after checkout step {}", step);
  spdlog::default_logger()->flush();
  _exit(86);
}

class Saga : public std::enable_shared_from_this<Saga> {
 public:
  Saga(const Context& ctx, std::string sid, std::string key, std::function<void(Outcome)> done)
      : ctx_(ctx), sid_(std::move(sid)), key_(std::move(key)), done_(std::move(done)) {}

  void start() {
    ctx_.carts.checkout_begin(sid_, key_, new_session_id(),
                              [self = shared_from_this()](auto r) { self->begun(r); });
  }

 private:
  using K = cart::CheckoutStart::Kind;
  using Placed = db::PlacedOrder::Kind;

  void begun(const boost::system::result<cart::CheckoutStart>& r) {
    if (!r) return redis_failed(r.error());
    switch (r->kind) {
      case K::done:
        return load_existing(r->order_id);
      case K::conflict:
        if (r->order_id.empty()) return answer(Kind::in_progress);
        return answer(Kind::other_key, [&](Outcome& o) { o.order_id = r->order_id; });
      case K::expired:
        return answer(Kind::expired);
      case K::unknown:
        return answer(Kind::unknown);
      case K::empty:
        return answer(Kind::empty);
      case K::short_of:
        attempt_ = r->attempt_id;
        return settle_short(r->inventory_id);
      case K::begun:
      case K::resume:
        break;
    }
    if (ctx_.fault_after_checkout_step == 1) inject_fault(1);
    attempt_ = r->attempt_id;
    db::Order draft;
    draft.order_id = new_session_id();
    draft.cart_id = sid_;
    draft.idempotency_key = key_;
    for (const cart::CartLine& l : r->lines) {
      draft.lines.push_back(
          db::OrderLine{l.product_id, l.inventory_id, l.name, l.quantity, l.unit_price_cents});
      draft.total_cents += l.quantity * l.unit_price_cents;
    }
    ctx_.db.run<db::PlacedOrder>(
        ctx_.loop,
        [draft, attempt = attempt_](db::Store& store) { return store.place_order(draft, attempt); },
        [self = shared_from_this()](db::DbResult<db::PlacedOrder> placed) {
          // The transaction may or may not have committed: the cart stays frozen until a
          // retry with the same key or recovery settles it (see docs/DESIGN.md).
          if (!placed) return self->db_failed(placed.error());
          self->placed(std::move(*placed));
        });
  }

  void placed(db::PlacedOrder placed) {
    switch (placed.kind) {
      case Placed::created:
      case Placed::existing:
        break;
      case Placed::aborted:
        return answer(Kind::aborted);
      case Placed::insufficient:
        return refuse_short(std::move(placed.rows));
    }
    if (ctx_.fault_after_checkout_step == 2) inject_fault(2);
    order_ = std::move(placed.order);
    created_ = placed.kind == Placed::created;
    settle(ctx_.carts, sid_, key_, attempt_, order_, placed.rows,
           [self = shared_from_this()](auto r) { self->finished(r); });
  }

  void finished(const boost::system::result<bool>& r) {
    // The order is in the main DB: it stands even if Redis did not answer, and checkout
    // recovery (or a retry with the same key) settles Redis.
    if (!r) spdlog::warn("checkout {}: Redis not settled yet: {}", sid_, r.error().message());
    if (ctx_.fault_after_checkout_step == 3) inject_fault(3);
    answer(Kind::placed, [&](Outcome& o) {
      o.created = created_;
      o.order = std::move(order_);
    });
  }

  // The main DB has fewer units of a row than the cart held: the promise of the hold is
  // broken (the DB was changed behind cartd's back, or Redis lost a change). The DB has
  // fenced the attempt; unfreeze the cart so the shopper can change it, and correct the
  // row's mirror so that no one else is promised those units.
  // On a Redis Cluster the begin step can find it too: a row whose hold lapsed (a
  // failover lost it, or a line change was cut short) while its units went to others.
  void refuse_short(std::vector<db::OnHandVersion> rows, std::string inv = {},
                    const char* who = "the main DB refused the order") {
    if (ctx_.metrics != nullptr) ctx_.metrics->count_broken_promise();
    if (inv.empty() && !rows.empty()) inv = rows.front().inventory_id;
    spdlog::error("checkout {}: {}: {} has fewer units than the cart held (a broken hold promise)",
                  sid_, who, inv.empty() ? std::string("a row") : inv);
    settle(ctx_.carts, sid_, key_, attempt_, std::nullopt, rows,
           [self = shared_from_this(), inv](auto r) {
             if (!r) return self->redis_failed(r.error());
             self->answer(Kind::stock_short, [&](Outcome& o) { o.inventory_id = inv; });
           });
  }

  // A row refused the checkout's hold (a Redis Cluster only, where the rows are steps of
  // their own): a hold a failover lost, or this very checkout resumed (a retry with the
  // same key) after a finish cut short had released its rows, before the cart's half.
  // The main DB decides, as recovery does: its order is finished in Redis and answered;
  // with none, the attempt is fenced off there (no transaction of it can place an order
  // any more) and given up, a broken hold promise.
  void settle_short(const std::string& inv) {
    ctx_.db.run<db::SettledCheckout>(
        ctx_.loop,
        [sid = sid_, attempt = attempt_](db::Store& store) {
          return store.settle_checkout(sid, attempt);
        },
        [self = shared_from_this(), inv](db::DbResult<db::SettledCheckout> settled) {
          if (!settled) return self->db_failed(settled.error());
          if (!settled->order) {
            return self->refuse_short({}, inv, "a row refused the checkout's hold");
          }
          self->order_ = std::move(*settled->order);
          settle(self->ctx_.carts, self->sid_, self->key_, self->attempt_, self->order_,
                 settled->rows, [self](auto r) { self->finished(r); });
        });
  }

  void load_existing(const std::string& order_id) {
    ctx_.db.run<std::optional<db::Order>>(
        ctx_.loop, [order_id](db::Store& store) { return store.order(order_id); },
        [self = shared_from_this()](db::DbResult<std::optional<db::Order>> o) {
          if (!o) return self->db_failed(o.error());
          if (!*o) return self->answer(Kind::order_missing);
          self->answer(Kind::done, [&](Outcome& out) { out.order = std::move(**o); });
        });
  }

  void redis_failed(const boost::system::error_code& ec) {
    answer(Kind::redis_failed, [&](Outcome& o) { o.error = ec; });
  }
  void db_failed(std::string why) {
    answer(Kind::db_failed, [&](Outcome& o) { o.why = std::move(why); });
  }
  // Every outcome goes out through here: `fill` sets what goes with its kind.
  void answer(Kind kind, const std::function<void(Outcome&)>& fill = nullptr) {
    Outcome out;
    out.kind = kind;
    if (fill) fill(out);
    done_(std::move(out));
  }

  Context ctx_;  // a copy: references and settings
  std::string sid_;
  std::string key_;
  std::string attempt_;
  std::function<void(Outcome)> done_;
  db::Order order_;
  bool created_ = false;
};

}  // namespace

void run(const Context& ctx, std::string session_id, std::string key,
         std::function<void(Outcome)> done) {
  std::make_shared<Saga>(ctx, std::move(session_id), std::move(key), std::move(done))->start();
}

void settle(cart::CartService& carts, const std::string& session_id, const std::string& key,
            const std::string& attempt_id, const std::optional<db::Order>& order,
            const std::vector<db::OnHandVersion>& rows, cart::Callback<bool> done) {
  if (order) return carts.checkout_finish(session_id, *order, rows, std::move(done));
  carts.checkout_abort(session_id, key, attempt_id, rows, std::move(done));
}

}  // namespace cartd::checkout
