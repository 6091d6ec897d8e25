// split_line: the line change as steps of one slot each (src/lua/split.lua), for a Redis
// Cluster, where a cart and its stock rows live on different nodes. CartService uses it
// when CartSettings::split_lines is set; a standalone Redis does the same change in one
// atomic call (cartd_set_line).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cart/service.hpp"

namespace cartd::cart {

// Runs one line change on cart `session_id` (made anew if it is not live and `create`):
// lock the cart, hold on the line's row, move the holds of the other lines when the
// deadline moves, then write the line and unlock. `done` runs once, on the loop of
// `redis`. A change whose cart is locked by another change of the same cart is retried
// after short pauses for as long as a lease, then fails with Errc::unavailable (503,
// safe to retry).
void split_set_line(redis::Commands& redis, const CartSettings& settings, const SetLineCall& call,
                    const std::string& session_id, bool create, Callback<SetLineOutcome> done);

// Checkout's Redis steps, each split between the cart's slot and its rows' (split.lua);
// the same contracts as CartService's checkout_begin, checkout_finish, checkout_abort.
void split_checkout_begin(redis::Commands& redis, const CartSettings& settings,
                          const std::string& session_id, const std::string& key,
                          const std::string& attempt_id, Callback<CheckoutStart> done);
// `units` (may be null) gets the held units the rows dropped.
void split_checkout_finish(redis::Commands& redis, const std::string& session_id,
                           const db::Order& order, const std::vector<db::OnHandVersion>& rows,
                           Callback<bool> done, std::shared_ptr<std::int64_t> units = nullptr);
void split_checkout_abort(redis::Commands& redis, const std::string& session_id,
                          const std::string& key, const std::string& attempt_id,
                          const std::vector<db::OnHandVersion>& rows, Callback<bool> done);
// The cart ends, then its rows hold nothing for it.
void split_abandon(redis::Commands& redis, std::chrono::milliseconds lease,
                   const std::string& session_id, Callback<CartService::Abandoned> done);

// A live cart with its lines' names and prices: the cart's slot, then its rows' (in
// parallel). No waitlist places or offers: a cluster has no waitlist yet.
void split_get_cart(redis::Commands& redis, const std::string& session_id,
                    Callback<CartLookup> done);

}  // namespace cartd::cart
