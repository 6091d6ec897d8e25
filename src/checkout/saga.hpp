// saga: checkout, a cart made into an order in three steps: the cart is frozen in Redis,
// the order written to the main DB, then Redis settled (src/lua/checkout.lua says why a
// crash between any two is safe). It answers with an outcome, not HTTP: the /v1 route
// words it, and checkout recovery (recovery.hpp) ends a stale attempt with its last step.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cart/service.hpp"
#include "db/executor.hpp"
#include "db/store.hpp"
#include "metrics/metrics.hpp"

namespace cartd::checkout {

struct Context {
  boost::asio::io_context& loop;  // where DB results come back to
  cart::CartService& carts;
  db::Executor& db;
  // Test-only fault injection: the process exits at once after this checkout step
  // (1 begun in Redis, 2 order in the DB, 3 finished in Redis); 0 never.
  int fault_after_checkout_step = 0;
  metrics::Shard* metrics = nullptr;  // counts broken hold promises; none: not counted
};

struct Outcome {
  enum class Kind {
    placed,         // the order is in the main DB (`created`: by this call); `order`
    done,           // the cart was checked out with this key before; `order`
    order_missing,  // ... but the main DB has no such order
    in_progress,    // the cart is being checked out with another key
    other_key,      // the cart was checked out with another key: `order_id`
    expired,
    unknown,
    empty,
    aborted,       // the attempt took too long and was given up; the cart is as it was
    stock_short,   // the main DB has fewer units of `inventory_id` than the cart held
    redis_failed,  // `error`
    db_failed,     // `why`
  };
  Kind kind = Kind::placed;
  bool created = false;
  db::Order order;
  std::string order_id;
  std::string inventory_id;
  boost::system::error_code error;
  std::string why;
};

// Checks cart `session_id` out under idempotency key `key`.
void run(const Context& ctx, std::string session_id, std::string key,
         std::function<void(Outcome)> done);

// The last step: makes Redis agree with what the main DB decided about an attempt, its
// order (finished) or none (aborted; `rows` correct the mirror). True if this call did.
void settle(cart::CartService& carts, const std::string& session_id, const std::string& key,
            const std::string& attempt_id, const std::optional<db::Order>& order,
            const std::vector<db::OnHandVersion>& rows, cart::Callback<bool> done);

}  // namespace cartd::checkout
