#include "routes/v1.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/json/array.hpp>
#include <memory>

#include "base/session_id.hpp"
#include "routes/classic.hpp"

namespace cartd::cart {
namespace {

namespace json = boost::json;
using http::error_response;
using http::PathParams;
using http::Request;
using http::Respond;
using http::Response;
using Kind = SetLineOutcome::Kind;

Response missing_cart(Missing m) {
  if (m == Missing::expired) return error_response(404, "cart_expired", "the cart has expired");
  if (m == Missing::checked_out) {
    return error_response(410, "cart_checked_out", "the cart has been checked out");
  }
  return error_response(404, "cart_not_found", "no such cart");
}

// The cart id from the path, or nullopt after answering 400.
std::optional<std::string> cart_id(const std::string& segment, Respond& respond) {
  auto id = parse_session_id(segment);
  if (!id) respond(error_response(400, "invalid_cart_id", "a cart id is a UUID"));
  return id;
}

Response set_line_failure(const SetLineOutcome& out, const SetLineCall& call) {
  switch (out.kind) {
    case Kind::insufficient:
      return error_response(409, "insufficient_stock", "Insufficient stock",
                            {{"available", out.available}, {"inventory_id", call.inventory_id}});
    case Kind::unknown_inventory:
      return error_response(404, "unknown_inventory", "Unknown inventory_id",
                            {{"inventory_id", call.inventory_id}});
    case Kind::product_mismatch:
      return error_response(422, "product_mismatch",
                            "inventory_id " + call.inventory_id +
                                " does not belong to product_id " + call.product_id);
    case Kind::too_many_lines:
      return error_response(422, "too_many_lines",
                            "a cart holds at most " + std::to_string(out.limit) + " lines",
                            {{"limit", out.limit}});
    case Kind::quantity_limit:
      return error_response(422, "quantity_limit",
                            "a line holds at most " + std::to_string(out.limit) + " units",
                            {{"limit", out.limit}});
    case Kind::no_cart:
      return missing_cart(out.missing);
    case Kind::checkout_in_progress:
      return error_response(409, "checkout_in_progress", "the cart is being checked out");
    case Kind::ok:
      break;
  }
  return unavailable(ReplyErrc::unexpected_reply);
}

// Changes a line of an existing cart and answers with the whole cart.
void change_line(ApiContext& ctx, SetLineCall call, Respond respond) {
  ctx.carts.set_line(call, [&ctx, respond = std::move(respond), call](auto result) {
    if (!result) return respond(unavailable(result.error()));
    if (result->kind != Kind::ok) return respond(set_line_failure(*result, call));
    respond(http::json_response(200, cart_json(result->cart, ctx.currency)));
  });
}

[[noreturn]] void inject_fault(int step) {
  spdlog::critical("fault injection: exiting after checkout step {}", step);
  spdlog::default_logger()->flush();
  _exit(86);
}

// POST /v1/carts/{id}/checkout. The three steps and why a crash between any two is
// safe are described in src/lua/checkout.lua.
class Checkout : public std::enable_shared_from_this<Checkout> {
 public:
  Checkout(ApiContext& ctx, std::string sid, std::string key, Respond respond)
      : ctx_(ctx), sid_(std::move(sid)), key_(std::move(key)), respond_(std::move(respond)) {}

  void start() {
    ctx_.carts.checkout_begin(sid_, key_, new_session_id(),
                              [self = shared_from_this()](auto r) { self->begun(r); });
  }

 private:
  using K = CheckoutStart::Kind;
  using Placed = db::PlacedOrder::Kind;
  using Result = metrics::CheckoutResult;

  void begun(const boost::system::result<CheckoutStart>& r) {
    if (!r) return answer(Result::error, unavailable(r.error()));
    switch (r->kind) {
      case K::done:
        return answer_existing(r->order_id);
      case K::conflict:
        if (r->order_id.empty()) {
          return answer(Result::conflict,
                        error_response(409, "checkout_in_progress",
                                       "the cart is being checked out with another key"));
        }
        return answer(Result::conflict,
                      error_response(409, "already_checked_out",
                                     "the cart was checked out with another Idempotency-Key",
                                     {{"order_id", r->order_id}}));
      case K::expired:
        return answer(Result::expired, error_response(410, "cart_expired", "the cart has expired"));
      case K::unknown:
        return answer(Result::not_found, error_response(404, "cart_not_found", "no such cart"));
      case K::empty:
        return answer(Result::empty, error_response(422, "cart_empty", "the cart has no lines"));
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
    for (const CartLine& l : r->lines) {
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
          if (!placed) return self->answer(Result::error, db_unavailable(placed.error()));
          self->placed(std::move(*placed));
        });
  }

  void placed(db::PlacedOrder placed) {
    switch (placed.kind) {
      case Placed::created:
      case Placed::existing:
        break;
      case Placed::aborted:
        return answer(Result::aborted,
                      error_response(409, "checkout_aborted",
                                     "the checkout took too long and was given up; the cart is "
                                     "as it was, check out again"));
      case Placed::insufficient:
        return refuse_short(std::move(placed.rows));
    }
    if (ctx_.fault_after_checkout_step == 2) inject_fault(2);
    order_ = std::move(placed.order);
    created_ = placed.kind == Placed::created;
    ctx_.carts.checkout_finish(sid_, order_, placed.rows,
                               [self = shared_from_this()](auto r) { self->finished(r); });
  }

  void finished(const boost::system::result<bool>& r) {
    // The order is in the main DB: it stands even if Redis did not answer, and checkout
    // recovery (or a retry with the same key) settles Redis.
    if (!r) spdlog::warn("checkout {}: Redis not settled yet: {}", sid_, r.error().message());
    if (ctx_.fault_after_checkout_step == 3) inject_fault(3);
    Response response =
        http::json_response(created_ ? 201 : 200, order_json(order_, ctx_.currency));
    if (created_) response.headers.emplace_back("Location", "/v1/orders/" + order_.order_id);
    answer(created_ ? Result::created : Result::existing, std::move(response));
  }

  // The main DB has fewer units of a row than the cart held: the promise of the hold is
  // broken (the DB was changed behind cartd's back, or Redis lost a change). The DB has
  // fenced the attempt; unfreeze the cart so the shopper can change it, and correct the
  // row's mirror so that no one else is promised those units.
  void refuse_short(std::vector<db::OnHandVersion> rows) {
    if (ctx_.metrics != nullptr) ctx_.metrics->count_broken_promise();
    spdlog::error(
        "checkout {}: the main DB refused the order: {} has fewer units on hand than "
        "the cart held (a broken hold promise)",
        sid_, rows.empty() ? std::string("a row") : rows.front().inventory_id);
    std::string inv = rows.empty() ? "" : rows.front().inventory_id;
    ctx_.carts.checkout_abort(sid_, key_, attempt_, rows, [self = shared_from_this(), inv](auto r) {
      if (!r) return self->answer(Result::error, unavailable(r.error()));
      self->answer(Result::stock_unavailable,
                   error_response(409, "stock_unavailable",
                                  "the shop no longer has the units this cart held; change "
                                  "the cart and check out again",
                                  {{"inventory_id", inv}}));
    });
  }

  void answer_existing(const std::string& order_id) {
    ctx_.db.run<std::optional<db::Order>>(
        ctx_.loop, [order_id](db::Store& store) { return store.order(order_id); },
        [self = shared_from_this()](db::DbResult<std::optional<db::Order>> o) {
          if (!o) return self->answer(Result::error, db_unavailable(o.error()));
          if (!*o) {
            return self->answer(Result::error,
                                error_response(404, "order_not_found", "no such order"));
          }
          self->answer(Result::existing,
                       http::json_response(200, order_json(**o, self->ctx_.currency)));
        });
  }

  // Every answer of a checkout goes through here, so each is counted once by result.
  void answer(Result result, Response response) {
    if (ctx_.metrics != nullptr) ctx_.metrics->count_checkout(result);
    respond_(std::move(response));
  }

  ApiContext& ctx_;
  std::string sid_;
  std::string key_;
  std::string attempt_;
  Respond respond_;
  db::Order order_;
  bool created_ = false;
};

}  // namespace

Response reject(const Rejection& r) {
  return error_response(r.status, r.code, r.message);
}

bool is_valid_idempotency_key(std::string_view key) {
  if (key.empty() || key.size() > kMaxIdempotencyKey) return false;
  for (char c : key) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

json::object cart_json(const CartView& cart, std::string_view currency) {
  json::array lines;
  std::int64_t total = 0, items = 0;
  for (const CartLine& l : cart.lines) {
    std::int64_t line_total = l.quantity * l.unit_price_cents;
    lines.push_back(json::object{{"product_id", l.product_id},
                                 {"inventory_id", l.inventory_id},
                                 {"name", l.name},
                                 {"quantity", l.quantity},
                                 {"unit_price_cents", l.unit_price_cents},
                                 {"line_total_cents", line_total},
                                 {"currency", currency}});
    total += line_total;
    items += l.quantity;
  }
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  std::int64_t ttl = std::max<std::int64_t>(0, (cart.deadline_ms - now_ms + 999) / 1000);
  return json::object{{"id", cart.id},        {"lines", std::move(lines)},
                      {"total_cents", total}, {"currency", currency},
                      {"item_count", items},  {"expires_at", http::rfc3339(cart.deadline_ms)},
                      {"ttl_seconds", ttl}};
}

json::object order_json(const db::Order& order, std::string_view currency) {
  json::array lines;
  for (const db::OrderLine& l : order.lines) {
    lines.push_back(json::object{{"product_id", l.product_id},
                                 {"inventory_id", l.inventory_id},
                                 {"name", l.name},
                                 {"quantity", l.quantity},
                                 {"unit_price_cents", l.unit_price_cents},
                                 {"line_total_cents", l.line_total_cents()},
                                 {"currency", currency}});
  }
  return json::object{{"order_id", order.order_id}, {"cart_id", order.cart_id},
                      {"lines", std::move(lines)},  {"total_cents", order.total_cents},
                      {"currency", currency},       {"created_at", order.created_at}};
}

void add_cart_api_routes(http::Router& router, ApiContext& ctx) {
  const Limits& limits = ctx.carts.settings().limits;

  router.add(http::Verb::post, "/v1/carts",
             [&ctx](const Request&, const PathParams&, Respond respond) {
               std::string sid = new_session_id();
               ctx.carts.create_cart(sid, [&ctx, respond = std::move(respond), sid](auto cart) {
                 if (!cart) return respond(unavailable(cart.error()));
                 Response r = http::json_response(201, cart_json(*cart, ctx.currency));
                 r.headers.emplace_back("cart-session-id", sid);
                 r.headers.emplace_back("Location", "/v1/carts/" + sid);
                 respond(std::move(r));
               });
             });

  router.add(http::Verb::get, "/v1/carts/{id}",
             [&ctx](const Request&, const PathParams& p, Respond respond) {
               auto sid = cart_id(p[0], respond);
               if (!sid) return;
               ctx.carts.get_cart(*sid, [&ctx, respond = std::move(respond)](auto found) {
                 if (!found) return respond(unavailable(found.error()));
                 if (!found->cart) return respond(missing_cart(found->missing));
                 respond(http::json_response(200, cart_json(*found->cart, ctx.currency)));
               });
             });

  router.add(http::Verb::put, "/v1/carts/{id}/items/{product_id}",
             [&ctx, &limits](const Request& req, const PathParams& p, Respond respond) {
               auto sid = cart_id(p[0], respond);
               if (!sid) return;
               if (!is_valid_id(p[1])) {
                 return respond(error_response(400, "invalid_id", "product_id is not a valid id"));
               }
               auto line = parse_line_request(req.body(), limits, LineSpec{false, 0});
               if (!line) return respond(reject(line.error()));
               change_line(
                   ctx,
                   SetLineCall{*sid, "", p[1], line->inventory_id, line->quantity, LineMode::set},
                   std::move(respond));
             });

  router.add(http::Verb::post, "/v1/carts/{id}/items",
             [&ctx, &limits](const Request& req, const PathParams& p, Respond respond) {
               auto sid = cart_id(p[0], respond);
               if (!sid) return;
               auto line = parse_line_request(req.body(), limits);
               if (!line) return respond(reject(line.error()));
               change_line(ctx,
                           SetLineCall{*sid, "", line->product_id, line->inventory_id,
                                       line->quantity, LineMode::add},
                           std::move(respond));
             });

  router.add(
      http::Verb::delete_, "/v1/carts/{id}/items/{product_id}",
      [&ctx](const Request&, const PathParams& p, Respond respond) {
        auto sid = cart_id(p[0], respond);
        if (!sid) return;
        if (!is_valid_id(p[1])) {
          return respond(error_response(400, "invalid_id", "product_id is not a valid id"));
        }
        change_line(ctx, SetLineCall{*sid, "", p[1], "", 0, LineMode::set}, std::move(respond));
      });

  router.add(http::Verb::delete_, "/v1/carts/{id}",
             [&ctx](const Request&, const PathParams& p, Respond respond) {
               auto sid = cart_id(p[0], respond);
               if (!sid) return;
               ctx.carts.abandon(*sid, [&ctx, respond = std::move(respond)](auto r) {
                 using K = CartService::Abandoned::Kind;
                 if (!r) return respond(unavailable(r.error()));
                 if (r->kind == K::missing) return respond(missing_cart(r->missing));
                 if (r->kind == K::checkout_in_progress) {
                   return respond(error_response(409, "checkout_in_progress",
                                                 "the cart is being checked out"));
                 }
                 json::object body = cart_json(r->cart, ctx.currency);
                 body["status"] = "abandoned";
                 body["ttl_seconds"] = 0;
                 respond(http::json_response(200, body));
               });
             });

  router.add(
      http::Verb::post, "/v1/carts/{id}/checkout",
      [&ctx](const Request& req, const PathParams& p, Respond respond) {
        auto sid = cart_id(p[0], respond);
        if (!sid) return;
        auto key = req.find("Idempotency-Key");
        if (key == req.end()) {
          return respond(error_response(400, "missing_idempotency_key",
                                        "checkout needs an Idempotency-Key header"));
        }
        if (!is_valid_idempotency_key(key->value())) {
          return respond(error_response(400, "invalid_idempotency_key",
                                        "an Idempotency-Key is 1-128 printable ASCII characters"));
        }
        std::make_shared<Checkout>(ctx, *sid, std::string(key->value()), std::move(respond))
            ->start();
      });

  router.add(http::Verb::get, "/v1/orders/{order_id}",
             [&ctx](const Request&, const PathParams& p, Respond respond) {
               auto id = parse_session_id(p[0]);
               if (!id) return respond(error_response(404, "order_not_found", "no such order"));
               ctx.db.run<std::optional<db::Order>>(
                   ctx.loop, [id = *id](db::Store& store) { return store.order(id); },
                   [&ctx, respond = std::move(respond)](db::DbResult<std::optional<db::Order>> o) {
                     if (!o) return respond(db_unavailable(o.error()));
                     if (!*o)
                       return respond(error_response(404, "order_not_found", "no such order"));
                     respond(http::json_response(200, order_json(**o, ctx.currency)));
                   });
             });
}

}  // namespace cartd::cart
