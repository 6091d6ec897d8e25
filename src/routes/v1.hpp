// v1: the /v1 cart routes: carts, their lines, checkout into orders, and orders.
// Every error answers {"error": {"code", "message", ...}} with a stable code (docs/API.md).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>

#include "cart/service.hpp"
#include "db/executor.hpp"
#include "http/server.hpp"
#include "metrics/metrics.hpp"

namespace cartd::cart {

struct ApiContext {
  boost::asio::io_context& loop;  // where DB results come back to
  CartService& carts;
  db::Executor& db;
  // Test-only fault injection: the process exits at once after this checkout step
  // (1 begun in Redis, 2 order in the DB, 3 finished in Redis); 0 never.
  int fault_after_checkout_step = 0;
  metrics::Shard* metrics = nullptr;  // the loop's counts (checkout results); none: not counted
  std::string currency = "USD";       // ISO 4217, named beside every price (--currency)
};

void add_cart_api_routes(http::Router& router, ApiContext& ctx);

// Why there is no cart: 404 cart_not_found or cart_expired, 410 cart_checked_out.
http::Response missing_cart(Missing missing);
// {"error": {...}} for a rejected request.
http::Response reject(const Rejection& r);
// The cart as every /v1 cart route answers it; its prices are in `currency`.
boost::json::object cart_json(const CartView& cart, std::string_view currency);
// A cart's place in a line as the cart and its stream show it:
// {inventory_id, product_id, quantity, position}.
boost::json::object wait_place_json(const WaitPlace& place);
// An offer as a cart and its stream show it: {inventory_id, product_id, quantity, expires_at}.
boost::json::object offer_json(const Offer& offer);
// An order as checkout and GET /v1/orders/{id} answer it; its prices are in `currency`.
boost::json::object order_json(const db::Order& order, std::string_view currency);

// Idempotency-Key: 1-128 printable ASCII characters.
inline constexpr std::size_t kMaxIdempotencyKey = 128;
[[nodiscard]] bool is_valid_idempotency_key(std::string_view key);

}  // namespace cartd::cart
