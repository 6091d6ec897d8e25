#include "routes/v1.hpp"

#include <spdlog/spdlog.h>

#include <boost/json/array.hpp>
#include <memory>

#include "base/clock.hpp"
#include "base/session_id.hpp"
#include "checkout/saga.hpp"
#include "routes/classic.hpp"

namespace cartd::cart {

http::Response missing_cart(Missing m) {
  using http::error_response;
  if (m == Missing::expired) return error_response(404, "cart_expired", "the cart has expired");
  if (m == Missing::checked_out) {
    return error_response(410, "cart_checked_out", "the cart has been checked out");
  }
  return error_response(404, "cart_not_found", "no such cart");
}

namespace {

namespace json = boost::json;
using http::error_response;
using http::PathParams;
using http::Request;
using http::Respond;
using http::Response;
using Kind = SetLineOutcome::Kind;

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
    case Kind::limit_exceeded:
      return error_response(
          422, "limit_exceeded",
          "a cart may hold at most " + std::to_string(out.limit) + " units of this stock row",
          {{"limit", out.limit}, {"inventory_id", call.inventory_id}});
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

// The answer to POST /v1/carts/{id}/checkout (src/checkout/saga.hpp), counted once by
// result.
void answer_checkout(ApiContext& ctx, const checkout::Outcome& out, const Respond& respond) {
  using K = checkout::Outcome::Kind;
  using Result = metrics::CheckoutResult;
  auto answer = [&](Result result, Response response) {
    if (ctx.metrics != nullptr) ctx.metrics->count_checkout(result);
    respond(std::move(response));
  };
  switch (out.kind) {
    case K::placed: {
      Response response =
          http::json_response(out.created ? 201 : 200, order_json(out.order, ctx.currency));
      if (out.created) {
        response.headers.emplace_back("Location", "/v1/orders/" + out.order.order_id);
      }
      return answer(out.created ? Result::created : Result::existing, std::move(response));
    }
    case K::done:
      return answer(Result::existing,
                    http::json_response(200, order_json(out.order, ctx.currency)));
    case K::order_missing:
      return answer(Result::error, error_response(404, "order_not_found", "no such order"));
    case K::in_progress:
      return answer(Result::conflict,
                    error_response(409, "checkout_in_progress",
                                   "the cart is being checked out with another key"));
    case K::other_key:
      return answer(Result::conflict,
                    error_response(409, "already_checked_out",
                                   "the cart was checked out with another Idempotency-Key",
                                   {{"order_id", out.order_id}}));
    case K::expired:
      return answer(Result::expired, error_response(410, "cart_expired", "the cart has expired"));
    case K::unknown:
      return answer(Result::not_found, error_response(404, "cart_not_found", "no such cart"));
    case K::empty:
      return answer(Result::empty, error_response(422, "cart_empty", "the cart has no lines"));
    case K::aborted:
      return answer(Result::aborted,
                    error_response(409, "checkout_aborted",
                                   "the checkout took too long and was given up; the cart is "
                                   "as it was, check out again"));
    case K::stock_short:
      return answer(Result::stock_unavailable,
                    error_response(409, "stock_unavailable",
                                   "the shop no longer has the units this cart held; change "
                                   "the cart and check out again",
                                   {{"inventory_id", out.inventory_id}}));
    case K::redis_failed:
      return answer(Result::error, unavailable(out.error));
    case K::db_failed:
      return answer(Result::error, db_unavailable(out.why));
  }
}

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
  std::int64_t ttl = std::max<std::int64_t>(0, (cart.deadline_ms - epoch_ms() + 999) / 1000);
  json::array waitlist, offers;
  for (const WaitPlace& w : cart.waitlist) waitlist.push_back(wait_place_json(w));
  for (const Offer& o : cart.offers) offers.push_back(offer_json(o));
  return json::object{{"id", cart.id},
                      {"lines", std::move(lines)},
                      {"total_cents", total},
                      {"currency", currency},
                      {"item_count", items},
                      {"expires_at", http::rfc3339(cart.deadline_ms)},
                      {"ttl_seconds", ttl},
                      {"waitlist", std::move(waitlist)},
                      {"offers", std::move(offers)}};
}

json::object wait_place_json(const WaitPlace& w) {
  return json::object{{"inventory_id", w.inventory_id},
                      {"product_id", w.product_id},
                      {"quantity", w.quantity},
                      {"position", w.position}};
}

json::object offer_json(const Offer& o) {
  return json::object{{"inventory_id", o.inventory_id},
                      {"product_id", o.product_id},
                      {"quantity", o.quantity},
                      {"expires_at", http::rfc3339(o.expires_at_ms)}};
}

namespace {

// POST /v1/stock/{inventory_id}/waitlist {"cart_id", "quantity"}: while the row is sold
// out, the cart waits in line for it (201 with its position; 200 if it waited already,
// with the new quantity and its old place).
void join_waitlist(ApiContext& ctx, const Request& req, const std::string& inventory_id,
                   Respond respond) {
  if (!is_valid_id(inventory_id)) {
    return respond(error_response(400, "invalid_id", "inventory_id is not a valid id"));
  }
  auto body = parse_object(req.body());
  if (!body) return respond(reject(body.error()));
  const json::value* cart = body->if_contains("cart_id");
  std::optional<std::string> sid;
  if (cart && cart->is_string()) sid = parse_session_id(cart->get_string());
  if (!sid) return respond(error_response(400, "invalid_cart_id", "cart_id is a cart's UUID"));
  const Limits& limits = ctx.carts.settings().limits;
  auto quantity = integer_field(*body, "quantity", 1, limits.max_line_quantity, "invalid_quantity");
  if (!quantity) return respond(reject(quantity.error()));
  ctx.carts.wait(
      *sid, inventory_id, *quantity,
      [sid = *sid, inventory_id, quantity = *quantity, respond = std::move(respond)](auto w) {
        using K = CartService::Waited::Kind;
        if (!w) return respond(unavailable(w.error()));
        switch (w->kind) {
          case K::waiting:
            return respond(
                http::json_response(w->joined ? 201 : 200, {{"inventory_id", inventory_id},
                                                            {"cart_id", sid},
                                                            {"quantity", quantity},
                                                            {"position", w->position}}));
          case K::available:
            return respond(
                error_response(409, "stock_available", "units are available: add them to the cart",
                               {{"available", w->available}, {"inventory_id", inventory_id}}));
          case K::offered:
            return respond(
                error_response(409, "offer_pending",
                               "units are held for this cart: claim them by adding them to it",
                               {{"quantity", w->quantity},
                                {"expires_at", http::rfc3339(w->expires_at_ms)},
                                {"inventory_id", inventory_id}}));
          case K::unknown_inventory:
            return respond(error_response(404, "unknown_inventory", "Unknown inventory_id",
                                          {{"inventory_id", inventory_id}}));
          case K::quantity_limit:
            return respond(
                error_response(422, "quantity_limit",
                               "a line holds at most " + std::to_string(w->limit) + " units",
                               {{"limit", w->limit}}));
          case K::limit_exceeded:
            return respond(error_response(
                422, "limit_exceeded",
                "a cart may hold at most " + std::to_string(w->limit) + " units of this stock row",
                {{"limit", w->limit}, {"inventory_id", inventory_id}}));
          case K::too_many_waits:
            return respond(error_response(
                422, "too_many_waits",
                "a cart waits on at most " + std::to_string(w->limit) + " rows at once",
                {{"limit", w->limit}}));
          case K::no_cart:
            return respond(missing_cart(w->missing));
          case K::checkout_in_progress:
            return respond(
                error_response(409, "checkout_in_progress", "the cart is being checked out"));
        }
      });
}

// DELETE /v1/stock/{inventory_id}/waitlist/{cart_id}: the cart leaves the line, and gives
// up an offer it holds on the row (its units go to the next in line).
void leave_waitlist(ApiContext& ctx, const std::string& inventory_id, const std::string& cart,
                    Respond respond) {
  if (!is_valid_id(inventory_id)) {
    return respond(error_response(400, "invalid_id", "inventory_id is not a valid id"));
  }
  auto sid = cart_id(cart, respond);
  if (!sid) return;
  ctx.carts.leave(*sid, inventory_id, [respond = std::move(respond)](auto left) {
    if (!left) return respond(unavailable(left.error()));
    if (!*left) {
      return respond(error_response(404, "not_waiting", "the cart is not waiting on this row"));
    }
    respond(http::json_response(200, {{"left", true}, {"released", **left}}));
  });
}

}  // namespace

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
        checkout::Context saga{ctx.loop, ctx.carts, ctx.db, ctx.fault_after_checkout_step,
                               ctx.metrics};
        checkout::run(saga, *sid, std::string(key->value()),
                      [&ctx, respond = std::move(respond)](checkout::Outcome out) {
                        answer_checkout(ctx, out, respond);
                      });
      });

  router.add(http::Verb::post, "/v1/stock/{inventory_id}/waitlist",
             [&ctx](const Request& req, const PathParams& p, Respond respond) {
               join_waitlist(ctx, req, p[0], std::move(respond));
             });
  router.add(http::Verb::delete_, "/v1/stock/{inventory_id}/waitlist/{cart_id}",
             [&ctx](const Request&, const PathParams& p, Respond respond) {
               leave_waitlist(ctx, p[0], p[1], std::move(respond));
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
