// store: the shop's main database, where stock and orders are the truth.
//
// cartd reads stock rows from it at start (and when Redis lost its data), and writes
// back the reserved counts that holds in Redis produce, so the inventory table shows
// what is reserved and available. SQLite is the default; PostgreSQL serves several
// cartd instances sharing one main DB. Errors are thrown as StoreError: no store call
// sits on a hot path.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cartd::db {

struct StockRow {
  std::string inventory_id;
  std::string product_id;
  std::string name;
  std::int64_t price_cents = 0;
  std::int64_t on_hand = 0;
  std::int64_t reserved = 0;
  // Counts every change of on_hand; the Redis mirror takes a row's on_hand only with a
  // version at least as new as the one it has, so late or repeated writes cannot undo
  // newer ones.
  std::int64_t version = 0;
  // Units of this row one cart may hold; 0: no limit beyond --max-line-quantity.
  std::int64_t max_per_cart = 0;
};

// A row's on_hand at one version, as the Redis mirror takes it.
struct OnHandVersion {
  std::string inventory_id;
  std::int64_t on_hand = 0;
  std::int64_t version = 0;
};

struct ReservedCount {
  std::string inventory_id;
  std::int64_t reserved = 0;
};

struct OrderLine {
  std::string product_id;
  std::string inventory_id;
  std::string name;
  std::int64_t quantity = 0;
  std::int64_t unit_price_cents = 0;
  std::int64_t line_total_cents() const { return quantity * unit_price_cents; }
};

struct Order {
  std::string order_id;
  std::string cart_id;
  std::string idempotency_key;
  std::vector<OrderLine> lines;
  std::int64_t total_cents = 0;
  std::string created_at;  // RFC 3339 UTC
};

// What place_order did.
struct PlacedOrder {
  enum class Kind {
    created,       // the order is in, its units sold
    existing,      // the cart had this order already; nothing changed
    aborted,       // recovery gave this checkout attempt up first: no order, ever
    insufficient,  // a row has fewer units on hand than the order needs: no order,
                   // and the attempt is recorded as aborted
  };
  Kind kind = Kind::created;
  Order order;                      // created, existing
  std::vector<OnHandVersion> rows;  // the order's rows after it (created, existing), or
                                    // the short row (insufficient)
};

// What settle_checkout found: the cart's order (finish the checkout) or none (the
// attempt is now recorded as aborted; abort it in Redis).
struct SettledCheckout {
  std::optional<Order> order;
  std::vector<OnHandVersion> rows;  // with an order: its rows now
};

// An admin change of on_hand, by a delta. `expected_version` makes it conditional on
// the row not having changed since it was read (PUT of an absolute value).
struct OnHandRequest {
  std::string inventory_id;
  std::int64_t delta = 0;
  std::optional<std::int64_t> expected_version;
  std::string request_key;  // unique per request: the ledger's reference and the
                            // idempotency record
  std::string request;      // what was asked ("admin_set 50"): a key reused for another
                            // request is refused
  std::string reason;       // the ledger's reason: admin_set, admin_adjust
};

enum class OnHandChange {
  ok,
  unknown_inventory,
  negative,         // on_hand would fall below 0
  version_changed,  // the row changed since expected_version
  replayed,         // request_key was applied before: nothing changed now
  key_reused,       // request_key was used for another request
};

struct OnHandResult {
  OnHandChange result = OnHandChange::ok;
  StockRow row;  // the row after (ok, replayed)
};

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Store {
 public:
  virtual ~Store() = default;
  // Inserts the rows the table lacks; rows already there are left as they are.
  // Returns how many were inserted.
  virtual std::size_t add_missing(std::span<const StockRow> rows) = 0;
  virtual std::vector<StockRow> stock_rows() = 0;
  // Stores reserved counts as absolute values, in one transaction.
  virtual void set_reserved(std::span<const ReservedCount> counts) = 0;
  // Throws unless the database can write (a read-only disk, a full disk or a lock held
  // too long all fail it): what /healthz reports.
  virtual void heartbeat() = 0;

  // Writes `draft` (its created_at is set here), lowers on_hand by its units and records
  // each as a sale in the ledger, in one transaction, unless checkout attempt
  // `attempt_id` was aborted (the fence: recovery that gave the attempt up wins, even
  // while this transaction waited for a lock). A cart makes at most one order: if
  // `draft.cart_id` has one already, it is returned as existing and nothing changes.
  virtual PlacedOrder place_order(const Order& draft, std::string_view attempt_id) = 0;
  // Recovery: the cart's order if it has one; otherwise records `attempt_id` as aborted,
  // so that no transaction of that attempt can place an order afterwards.
  virtual SettledCheckout settle_checkout(std::string_view cart_id,
                                          std::string_view attempt_id) = 0;
  virtual std::optional<Order> order(std::string_view order_id) = 0;
  virtual std::optional<Order> order_for_cart(std::string_view cart_id) = 0;

  // Inserts one stock row (its on_hand enters the ledger as `initial`); false if its
  // inventory_id exists.
  virtual bool insert_stock_row(const StockRow& row) = 0;
  virtual std::optional<StockRow> stock_row(std::string_view inventory_id) = 0;
  // Sets a row's max_per_cart (0: none). False: no such row.
  virtual bool set_max_per_cart(std::string_view inventory_id, std::int64_t max_per_cart) = 0;
  // Changes on_hand by request.delta with a ledger row, once per request_key.
  virtual OnHandResult change_on_hand(const OnHandRequest& request) = 0;
  // Whether an admin request with this key was applied (for an answer that was lost).
  virtual bool admin_request_applied(std::string_view request_key) = 0;
  // Stock rows of the first `limit` products whose product_id sorts after `after`.
  virtual std::vector<StockRow> products_after(std::string_view after, std::size_t limit) = 0;
  virtual std::vector<StockRow> product(std::string_view product_id) = 0;

  // The ledger's audit: every row's on_hand equals the sum of its movements, every
  // order's units are its rows' sales, every order has lines. One line per violation.
  virtual std::vector<std::string> audit() = 0;
};

// How long one statement may wait for a lock or run before it fails. Shorter than the
// checkout recovery age by default, so a checkout's transaction ends before recovery
// judges it (the fence in place_order keeps it right even when it does not).
constexpr int kDefaultStatementTimeoutMs = 5000;

// Opens the store a URL names: "sqlite:PATH" or "postgresql://user@host:port/db" (libpq
// URL; "postgres://" too). Creates the schema if it is missing.
std::unique_ptr<Store> open_store(std::string_view url,
                                  int statement_timeout_ms = kDefaultStatementTimeoutMs);

}  // namespace cartd::db
