// classic: the classic cart routes. The pair, POST /add-to-cart and
// GET /get-cart, keep the shapes of the original design: {"message": ...} errors and
// the session id in the cart-session-id header.
#pragma once

#include "cart/service.hpp"
#include "http/server.hpp"

namespace cartd::cart {

void add_classic_routes(http::Router& router, CartService& carts);

// The answer to a request that Redis could not serve: 503, and nothing was changed.
http::Response unavailable(const boost::system::error_code& ec);
// The same when the main DB failed; `why` goes to the log, not to the client.
http::Response db_unavailable(const std::string& why);

}  // namespace cartd::cart
