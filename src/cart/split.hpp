// split_line: the line change as steps of one slot each (src/lua/split.lua), for a Redis
// Cluster, where a cart and its stock rows live on different nodes. CartService uses it
// when CartSettings::split_lines is set; a standalone Redis does the same change in one
// atomic call (cartd_set_line).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cart/service.hpp"
#include "redis/commands.hpp"

namespace cartd::cart {

// Runs one line change on cart `session_id` (made anew if it is not live and `create`):
// lock the cart, hold on the line's row, move the holds of the other lines when the
// deadline moves, then write the line and unlock. `done` runs once, on the loop of
// `redis`. A change whose cart is locked by another change of the same cart is retried
// after short pauses for as long as a lease, then fails with Errc::unavailable (503,
// safe to retry).
// A grow (an add, or a set above the line as `hints` last saw it) goes to its row first,
// then writes the line if nothing changed it meanwhile (else it takes the steps above).
void split_set_line(redis::Commands& redis, const CartSettings& settings, LineHints& hints,
                    const SetLineCall& call, const std::string& session_id, bool create,
                    Callback<SetLineOutcome> done);

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

// A live cart with its lines' names and prices, and its places and offers in waitlists:
// the cart's slot, then its rows' (in parallel).
void split_get_cart(redis::Commands& redis, const std::string& session_id,
                    Callback<CartLookup> done);

// The waitlist's steps (waitlist.lua): a wait marks the cart, then takes a place on the
// row (and unmarks the cart if the row refused it); `row_args` are cartd_wait_row's
// quantity, offer window and line limit. A leave leaves the row, then unmarks the cart.
// `done` gets a reply shaped as cartd_wait's (cartd_leave's).
struct WaitLimits {
  std::string max_waits;        // rows one cart may wait on (--max-lines)
  std::string max_lifetime_ms;  // the cart's longest life (its waits are kept that long)
};
void split_wait(redis::Commands& redis, const std::string& session_id,
                const std::string& inventory_id, std::vector<std::string> row_args,
                const WaitLimits& limits, redis::ReplyHandler done);
// Leaves the lines of rows a cart waited on (it ended: abandoned, checked out or
// expired), at once; then `after`. A row that does not answer keeps the place until pour
// reaches it, and the offer it then makes lapses after its window.
void leave_rows(redis::Commands& redis, const std::string& sid,
                const std::vector<std::string>& rows, std::function<void()> after);
void split_leave(redis::Commands& redis, const std::string& session_id,
                 const std::string& inventory_id, redis::ReplyHandler done);

}  // namespace cartd::cart
