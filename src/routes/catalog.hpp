// catalog: the catalog (GET /v1/products..., GET /v1/stock/{id}) and the admin stock
// routes.
//
// Products are read from the main DB and their counts from Redis, so `reserved` and
// `available` are live. Admin routes need `Authorization: Bearer <--admin-token>` (401
// without, 403 with another token) and do not exist when no token is set. An on-hand
// change is a delta applied once in the main DB (with a ledger row, and once per
// Idempotency-Key), its removed units held in Redis first; the mirror takes the result
// by version (see AdminChange in catalog.cpp).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <string>
#include <string_view>

#include "cart/rules.hpp"
#include "db/executor.hpp"
#include "http/server.hpp"
#include "stock/service.hpp"

namespace cartd::stock {

struct CatalogContext {
  boost::asio::io_context& loop;
  StockService& stock;
  db::Executor& db;
  std::string admin_token;  // empty: no admin routes
  // How long an admin change holds the units it removes (longer than a DB statement may
  // wait, so the hold outlasts the change; it frees itself if cartd dies meanwhile).
  std::chrono::milliseconds admin_hold{60'000};
  std::string currency = "USD";  // ISO 4217, named beside every price (--currency)
};

inline constexpr std::size_t kDefaultPageSize = 20;
inline constexpr std::size_t kMaxPageSize = 100;

// What GET /v1/products?limit=&cursor= asks for: a page of `limit` products after the
// product id `cursor` ("": from the first).
struct PageQuery {
  std::size_t limit = kDefaultPageSize;
  std::string cursor;
};
// Reads the query of a request target; a limit outside 1..kMaxPageSize or a cursor that
// is not an id is a 400 (invalid_limit, invalid_cursor).
[[nodiscard]] boost::system::result<PageQuery, cart::Rejection> parse_page_query(
    std::string_view target);

void add_catalog_routes(http::Router& router, CatalogContext& ctx);

}  // namespace cartd::stock
