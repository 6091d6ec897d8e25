// recovery: a checkout left unfinished (cartd died mid-way, or its DB transaction is
// stuck) is finished if its order is in the main DB, and otherwise fenced in the DB, then
// aborted (see src/lua/checkout.lua). The housekeeper runs it on stale attempts.
#pragma once

#include <string>

#include "cart/service.hpp"
#include "db/store.hpp"

namespace cartd::checkout {

// Settles one stale attempt. Blocks the calling thread on the main DB (at most
// --db-timeout-ms); logs what it did. A failure is left to the next round.
void recover(cart::CartService& carts, db::Store& store, const std::string& session_id,
             const std::string& key, const std::string& attempt_id);

}  // namespace cartd::checkout
