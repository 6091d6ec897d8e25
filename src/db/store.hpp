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

struct PlacedOrder {
  Order order;
  bool created = false;  // false: the cart already had this order
};

// Why an on-hand change was refused.
enum class OnHandChange { ok, unknown_inventory, negative };

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
  // Throws unless the database answers.
  virtual void ping() = 0;

  // Writes `draft` (its created_at is set here) and lowers on_hand by its units, in one
  // transaction. A cart makes at most one order: if `draft.cart_id` has one already,
  // that order is returned with created = false and nothing changes.
  virtual PlacedOrder place_order(const Order& draft) = 0;
  virtual std::optional<Order> order(std::string_view order_id) = 0;
  virtual std::optional<Order> order_for_cart(std::string_view cart_id) = 0;

  // Inserts one stock row; false if its inventory_id exists.
  virtual bool insert_stock_row(const StockRow& row) = 0;
  virtual std::optional<StockRow> stock_row(std::string_view inventory_id) = 0;
  // Sets on_hand (absolute) or changes it by delta; `row` receives the row after it.
  virtual OnHandChange set_on_hand(std::string_view inventory_id, std::int64_t on_hand,
                                   StockRow& row) = 0;
  virtual OnHandChange adjust_on_hand(std::string_view inventory_id, std::int64_t delta,
                                      StockRow& row) = 0;
  // Stock rows of the first `limit` products whose product_id sorts after `after`.
  virtual std::vector<StockRow> products_after(std::string_view after, std::size_t limit) = 0;
  virtual std::vector<StockRow> product(std::string_view product_id) = 0;
};

// Opens the store a URL names: "sqlite:PATH" or "postgresql://user@host:port/db" (libpq
// URL; "postgres://" too). Creates the schema if it is missing.
std::unique_ptr<Store> open_store(std::string_view url);

}  // namespace cartd::db
