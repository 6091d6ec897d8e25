#include "routes/classic.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include "base/session_id.hpp"

#include <spdlog/spdlog.h>

namespace cartd::cart {
namespace {

namespace json = boost::json;
using http::message_response;
using http::Request;
using http::Response;
using Kind = SetLineOutcome::Kind;

constexpr std::string_view kSessionHeader = "cart-session-id";

Response data_response(unsigned status, std::string_view message, json::array data) {
  json::object body{{"message", message}, {"data", std::move(data)}};
  return http::json_response(status, body);
}

void add_to_cart(CartService& carts, const Request& req, http::Respond respond) {
  SetLineCall call;
  auto header = req.find(kSessionHeader);
  if (header != req.end()) {
    auto sid = parse_session_id(header->value());
    if (!sid) return respond(message_response(400, "cart-session-id must be a UUID"));
    call.session_id = std::move(*sid);
  }
  auto line = parse_line_request(req.body(), carts.settings().limits);
  if (!line) return respond(message_response(line.error().status, line.error().message));
  call.new_session_id = new_session_id();
  call.product_id = std::move(line->product_id);
  call.inventory_id = std::move(line->inventory_id);
  call.quantity = line->quantity;
  call.want_cart = false;  // the classic answer names the cart only

  carts.set_line(call, [respond = std::move(respond), call](auto result) {
    if (!result) return respond(unavailable(result.error()));
    const SetLineOutcome& out = *result;
    switch (out.kind) {
      case Kind::ok: {
        Response r = http::json_response(200, {{"message", "Product added to cart successfully"},
                                               {"cartSessionId", out.cart.id}});
        r.headers.emplace_back(kSessionHeader, out.cart.id);
        return respond(std::move(r));
      }
      case Kind::insufficient:
        return respond(http::json_response(
            409, {{"message", "Insufficient stock"}, {"available", out.available}}));
      case Kind::unknown_inventory:
        return respond(message_response(404, "Unknown inventory_id"));
      case Kind::product_mismatch:
        return respond(message_response(422, "inventory_id " + call.inventory_id +
                                                 " does not belong to product_id " +
                                                 call.product_id));
      case Kind::too_many_lines:
        return respond(
            message_response(422, "a cart holds at most " + std::to_string(out.limit) + " lines"));
      case Kind::checkout_in_progress:
        return respond(message_response(409, "the cart is being checked out"));
      case Kind::limit_exceeded:
        return respond(http::json_response(
            422, {{"message",
                   "a cart may hold at most " + std::to_string(out.limit) + " units of this item"},
                  {"limit", out.limit}}));
      case Kind::quantity_limit:
      case Kind::no_cart:
        break;  // not asked for by this route
    }
    respond(unavailable(ReplyErrc::unexpected_reply));
  });
}

void get_cart(CartService& carts, const Request& req, http::Respond respond) {
  auto header = req.find(kSessionHeader);
  if (header == req.end()) {
    return respond(data_response(400, "the cart-session-id header is required", {}));
  }
  auto sid = parse_session_id(header->value());
  if (!sid) return respond(data_response(400, "cart-session-id must be a UUID", {}));
  carts.get_lines(*sid, [respond = std::move(respond)](auto result) {
    if (!result) return respond(unavailable(result.error()));
    if (!result->cart || result->cart->lines.empty()) {
      return respond(data_response(404, "Cart is empty", {}));
    }
    json::array data;
    for (const CartLine& l : result->cart->lines) {
      data.push_back(json::object{{"product_id", l.product_id},
                                  {"inventory_id", l.inventory_id},
                                  {"quantity", l.quantity}});
    }
    respond(data_response(200, "Cart retrieved successfully", std::move(data)));
  });
}

}  // namespace

Response unavailable(const boost::system::error_code& ec) {
  Response r =
      http::json_response(503, {{"message", "Service unavailable: " + ec.message()},
                                {"error", {{"code", "unavailable"}, {"message", ec.message()}}}});
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

Response db_unavailable(const std::string& why) {
  spdlog::error("db: {}", why);
  Response r = http::error_response(503, "unavailable", "the main DB is unavailable");
  r.headers.emplace_back("Retry-After", "1");
  return r;
}

void add_classic_routes(http::Router& router, CartService& carts) {
  router.add(http::Verb::post, "/add-to-cart",
             [&carts](const Request& req, const http::PathParams&, http::Respond respond) {
               add_to_cart(carts, req, std::move(respond));
             });
  router.add(http::Verb::get, "/get-cart",
             [&carts](const Request& req, const http::PathParams&, http::Respond respond) {
               get_cart(carts, req, std::move(respond));
             });
}

}  // namespace cartd::cart
