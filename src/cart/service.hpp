// service: cart operations as calls of the cartd Redis Functions (src/lua), one round
// trip each, with their replies decoded into plain structs.
#pragma once

#include <algorithm>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/errors.hpp"
#include "base/lease.hpp"
#include "cart/line_hints.hpp"
#include "cart/rules.hpp"
#include "cart/sold_out.hpp"
#include "db/store.hpp"
#include "metrics/metrics.hpp"

// Redis stays below the services: their users never see it.
namespace cartd::redis {
class Commands;
struct Reply;
}  // namespace cartd::redis

namespace cartd::cart {

struct CartSettings {
  std::chrono::milliseconds ttl{900'000};
  std::chrono::milliseconds max_lifetime{7'200'000};
  std::chrono::milliseconds checkout_grace{120'000};
  Limits limits;
  // How long an event loop remembers a row that had nothing available (0: not at all).
  std::chrono::milliseconds sold_out_memory{100};
  // How long units offered to a cart that waited stay held for it (--offer-window).
  std::chrono::milliseconds offer_window{120'000};
  // Before a checkout writes its order, its Redis writes wait for this many replicas
  // (WAIT on the connection of each node it wrote to, for checkout_wait at most).
  int checkout_wait_replicas = 0;
  std::chrono::milliseconds checkout_wait{100};
  // Deadlines are rounded up to a multiple of this (a hundredth of the TTL), so a stock
  // row has about a hundred hold buckets (src/lua/holds.lua).
  std::chrono::milliseconds deadline_quantum() const {
    return std::max(std::chrono::milliseconds(1), ttl / kBucketsPerTtl);
  }
  static constexpr int kBucketsPerTtl = 100;
  // Line changes and cart views in steps of one slot each (split.hpp): a Redis
  // Cluster, where a cart and its rows live on different nodes.
  bool split_lines = false;
  // How long a split line change keeps its cart locked: longer than its steps can take
  // (each ends within the Redis command timeout).
  std::chrono::milliseconds line_lease{10'000};
};

enum class LineMode { set, add };

struct SetLineCall {
  std::string session_id;      // "" when the request names no cart
  std::string new_session_id;  // used if session_id is not a live cart; "" forbids a new cart
  std::string product_id;
  std::string inventory_id;
  std::int64_t quantity = 0;
  LineMode mode = LineMode::set;
  bool want_cart = true;  // answer with the whole cart (false: id and deadline only)
};

struct CartLine {
  std::string product_id;
  std::string inventory_id;
  std::int64_t quantity = 0;
  std::string name;
  std::int64_t unit_price_cents = 0;
};

// A cart's place in a sold-out row's waitlist (1 = next to be offered units).
struct WaitPlace {
  std::string inventory_id;
  std::string product_id;
  std::int64_t quantity = 0;
  std::int64_t position = 0;
};

// Units that came back to a row, held for this cart (it waited) until `expires_at_ms`.
struct Offer {
  std::string inventory_id;
  std::string product_id;
  std::int64_t quantity = 0;
  std::int64_t expires_at_ms = 0;
};

struct CartView {
  std::string id;
  std::int64_t deadline_ms = 0;
  std::vector<CartLine> lines;  // sorted by product_id
  std::vector<WaitPlace> waitlist;
  std::vector<Offer> offers;
};

// Why a cart is not there: it never was (or is long gone), it ended recently, or it
// became an order.
enum class Missing { unknown, expired, checked_out };

struct SetLineOutcome {
  enum class Kind {
    ok,
    insufficient,  // `available` units are free
    unknown_inventory,
    product_mismatch,  // the row holds `product_id`
    too_many_lines,    // `limit`
    quantity_limit,    // `limit`
    limit_exceeded,    // `limit`: the row's max_per_cart
    no_cart,           // `missing`
    checkout_in_progress,
  };
  Kind kind = Kind::ok;
  bool created = false;
  CartView cart;  // with ok: its lines only if the call wanted the cart
  std::int64_t available = 0;
  std::int64_t limit = 0;
  std::string product_id;
  Missing missing = Missing::unknown;
  std::int64_t dropped = 0;  // ok, insufficient: units of expired holds dropped (logical expiry)
  bool waitlisted = false;   // insufficient: carts wait on the row (some may hold offers)
};

// A cart, or why there is none.
struct CartLookup {
  std::optional<CartView> cart;
  Missing missing = Missing::unknown;
};

struct CheckoutStart {
  // short_of: a row could not hold the cart's units for the checkout (possible on a Redis
  // Cluster only: its hold lapsed and the units went to others, a broken hold promise;
  // or the checkout resumed after a finish cut short had released its rows already);
  // the checkout is begun, and the main DB settles it (its order finished, or aborted).
  enum class Kind { begun, resume, done, conflict, expired, unknown, empty, short_of };
  Kind kind = Kind::begun;
  std::string inventory_id;     // short_of: the row
  std::vector<CartLine> lines;  // begun, resume: the frozen lines
  std::string attempt_id;       // begun, resume: the attempt the order must be fenced by
  std::string order_id;         // done, conflict (may be empty: a checkout in progress)
};

template <typename T>
using Callback = std::function<void(boost::system::result<T>)>;

class CartService {
 public:
  // `metrics`, when given, counts line changes and released units; it belongs to the
  // thread of `redis`'s loop and must outlive this service.
  CartService(redis::Commands& redis, CartSettings settings, metrics::Shard* metrics = nullptr);

  const CartSettings& settings() const { return settings_; }

  void create_cart(const std::string& session_id, Callback<CartView> done);
  void set_line(const SetLineCall& call, Callback<SetLineOutcome> done);
  void get_cart(const std::string& session_id, Callback<CartLookup> done);
  // The cart's lines without names and prices (what GET /get-cart shows), read with one
  // plain HGETALL instead of a function call: the hot read path. A cart that is missing
  // or expired comes back without a cart (missing = unknown) and without a deadline.
  void get_lines(const std::string& session_id, Callback<CartLookup> done);
  struct Abandoned {
    enum class Kind { abandoned, checkout_in_progress, missing };
    Kind kind = Kind::abandoned;
    CartView cart;  // as it was before its units returned
    Missing missing = Missing::unknown;
  };
  void abandon(const std::string& session_id, Callback<Abandoned> done);

  // The waitlist of a sold-out row (src/lua/waitlist.lua).
  struct Waited {
    enum class Kind {
      waiting,    // `position` (1: next), `joined` (false: it waited already)
      available,  // `available` units are free: add them instead
      offered,    // the cart holds an offer of `quantity` until `expires_at_ms`: claim it
      unknown_inventory,
      quantity_limit,  // `limit`
      limit_exceeded,  // `limit`: the row's max_per_cart
      too_many_waits,  // `limit`: the cart waits on that many rows already (--max-lines)
      no_cart,         // `missing`
      checkout_in_progress,
    };
    Kind kind = Kind::waiting;
    std::int64_t position = 0;
    bool joined = false;
    std::int64_t available = 0;
    std::int64_t quantity = 0;
    std::int64_t expires_at_ms = 0;
    std::int64_t limit = 0;
    Missing missing = Missing::unknown;
  };
  void wait(const std::string& session_id, const std::string& inventory_id, std::int64_t quantity,
            Callback<Waited> done);
  // Leaves a row's waitlist, giving up an offer there. nullopt: the cart was not waiting;
  // else the offered units it gave up (they go to the next in line).
  void leave(const std::string& session_id, const std::string& inventory_id,
             Callback<std::optional<std::int64_t>> done);

  // `attempt_id` names the attempt if this call begins one (a new id per call).
  void checkout_begin(const std::string& session_id, const std::string& key,
                      const std::string& attempt_id, Callback<CheckoutStart> done);
  // Makes Redis agree with an order written to the main DB (idempotent); `rows` are the
  // order's stock rows as the DB has them (versioned, so a late call undoes nothing).
  void checkout_finish(const std::string& session_id, const db::Order& order,
                       const std::vector<db::OnHandVersion>& rows, Callback<bool> done);
  // Gives up a checkout attempt that made no order (the DB has fenced it); the cart
  // lives on. `rows` are stock rows whose on_hand the mirror takes in the same step
  // (versioned). True if the attempt was in progress.
  void checkout_abort(const std::string& session_id, const std::string& key,
                      const std::string& attempt_id, const std::vector<db::OnHandVersion>& rows,
                      Callback<bool> done);

  // Records that Redis deleted an expired cart (a keyspace event): its tombstone and one
  // 'expired' event, once however many instances heard of it. True if this call did.
  void expired(const std::string& session_id, Callback<bool> done);
  // Checkouts of some cart groups begun more than `age` ago (at most `batch` per group),
  // for recovery.
  struct StaleCheckout {
    std::string session_id, key, attempt_id;
  };
  void checkouts_stale(const std::vector<std::uint32_t>& groups, std::chrono::milliseconds age,
                       std::size_t batch, Callback<std::vector<StaleCheckout>> each,
                       std::function<void()> finished, const GroupLease& lease = {});

 private:
  // Counts a line change's final outcome and updates the sold-out memory.
  void note_outcome(const std::string& inventory_id,
                    const boost::system::result<SetLineOutcome>& outcome);
  void call_set_line(const SetLineCall& call, const std::string& session_id, bool create,
                     Callback<SetLineOutcome> done);
  // After a checkout's first step: its writes (the cart's node and its rows') wait for
  // the replicas (checkout_wait_replicas), then `done` gets `start`.
  void wait_for_replicas(const std::string& session_id, boost::system::result<CheckoutStart> start,
                         const Callback<CheckoutStart>& done);

  redis::Commands& redis_;
  CartSettings settings_;
  metrics::Shard* metrics_;
  SoldOutMemory sold_out_;
  LineHints hints_;  // split line changes only
  // The settings as the functions take them, written out once rather than per call.
  std::string ttl_ms_, max_lifetime_ms_, checkout_grace_ms_, max_lines_, max_line_quantity_,
      quantum_ms_, offer_window_ms_;
};

// Decoders of the functions' replies (src/lua), kept apart to be tested on their own.
boost::system::result<SetLineOutcome> decode_set_line(const redis::Reply& r);
boost::system::result<CartLookup> decode_cart(const std::string& id, const redis::Reply& r);
boost::system::result<CheckoutStart> decode_checkout_start(const redis::Reply& r);
// One place or offer of a cart (wait_state in holds.lua) into `cart`.
boost::system::result<void> decode_wait(const redis::Reply& w, CartView& cart);
// get_lines' read: the cart hash from HGETALL (product_id -> "inventory_id quantity",
// besides the birth and checkout fields); empty when there is no live cart.
boost::system::result<CartLookup> decode_lines(const std::string& id, const redis::Reply& hash);

}  // namespace cartd::cart
