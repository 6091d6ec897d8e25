#include "checkout/recovery.hpp"

#include <spdlog/spdlog.h>

#include <exception>

#include "checkout/saga.hpp"

namespace cartd::checkout {

void recover(cart::CartService& carts, db::Store& store, const std::string& sid,
             const std::string& key, const std::string& attempt) {
  db::SettledCheckout settled;
  try {
    // Blocks this thread while the DB waits for a lock (at most --db-timeout-ms): the
    // fence must be in before Redis lets the cart change.
    settled = store.settle_checkout(sid, attempt);
  } catch (const std::exception& e) {
    spdlog::error("recovery: cannot settle the checkout of cart {}: {}", sid, e.what());
    return;  // the next round tries again
  }
  if (!settled.order) {
    settle(carts, sid, key, attempt, std::nullopt, {}, [sid](auto r) {
      if (r && *r) {
        spdlog::warn("recovery: checkout of cart {} made no order; aborted, the cart lives on",
                     sid);
      }
    });
    return;
  }
  settle(carts, sid, key, attempt, settled.order, settled.rows,
         [sid, id = settled.order->order_id](auto done) {
           if (done) {
             spdlog::warn("recovery: finished checkout of cart {} (order {})", sid, id);
           }
         });
}

}  // namespace cartd::checkout
