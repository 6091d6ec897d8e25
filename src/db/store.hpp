// store: the shop's main database, where stock and orders are the truth.
//
// cartd reads stock rows from it at start (and when Redis lost its data), and writes
// back the reserved counts that holds in Redis produce, so the inventory table shows
// what is reserved and available. SQLite is the default; the interface leaves room
// for PostgreSQL. Errors are thrown as StoreError: no store call sits on a hot path.
#pragma once

#include <cstdint>
#include <memory>
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
};

// Opens the store a URL names: "sqlite:PATH". Creates the schema if it is missing.
std::unique_ptr<Store> open_store(std::string_view url);

}  // namespace cartd::db
