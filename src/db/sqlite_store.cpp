// sqlite_store: the Store on an SQLite file in WAL mode, so readers (a shop's reports,
// `sqlite3 cartd.db`) never block cartd's writer and the writer never blocks them.
#include <sqlite3.h>

#include <chrono>

#include "db/store.hpp"

namespace cartd::db {
namespace {

constexpr int kBusyTimeoutMs = 5000;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS inventory (
  inventory_id TEXT PRIMARY KEY,
  product_id   TEXT NOT NULL,
  name         TEXT NOT NULL,
  price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
  on_hand      INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  available    INTEGER GENERATED ALWAYS AS (on_hand - reserved) VIRTUAL,
  updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS inventory_product ON inventory (product_id);
CREATE TABLE IF NOT EXISTS orders (
  order_id        TEXT PRIMARY KEY,
  cart_id         TEXT NOT NULL UNIQUE,
  idempotency_key TEXT NOT NULL,
  total_cents     INTEGER NOT NULL,
  created_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines (
  order_id         TEXT NOT NULL REFERENCES orders (order_id),
  product_id       TEXT NOT NULL,
  inventory_id     TEXT NOT NULL,
  name             TEXT NOT NULL,
  quantity         INTEGER NOT NULL CHECK (quantity > 0),
  unit_price_cents INTEGER NOT NULL,
  line_total_cents INTEGER NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
)sql";

constexpr const char* kNow = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw StoreError(std::string("sqlite: ") + sqlite3_errmsg(db));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, std::string_view text) {
    check(
        sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  // True while there is a row to read.
  bool step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw StoreError(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  std::string text(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col))) : "";
  }
  std::int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw StoreError(std::string("sqlite: ") + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const std::string& path) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw StoreError("sqlite: cannot open " + path + ": " + why);
    }
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec(kSchema);
  }
  ~SqliteStore() override { sqlite3_close(db_); }

  std::size_t add_missing(std::span<const StockRow> rows) override {
    Transaction tx(*this);
    Statement insert(db_,
                     "INSERT OR IGNORE INTO inventory (inventory_id, product_id, name, "
                     "price_cents, on_hand) VALUES (?, ?, ?, ?, ?)");
    std::size_t added = 0;
    for (const StockRow& r : rows) {
      insert.bind(1, r.inventory_id).bind(2, r.product_id).bind(3, r.name);
      insert.bind(4, r.price_cents).bind(5, r.on_hand);
      insert.step();
      added += static_cast<std::size_t>(sqlite3_changes(db_));
      insert.reset();
    }
    tx.commit();
    return added;
  }

  std::vector<StockRow> stock_rows() override {
    Statement select(db_, (std::string(kRowColumns) + " ORDER BY inventory_id").c_str());
    return read_rows(select);
  }

  void set_reserved(std::span<const ReservedCount> counts) override {
    Transaction tx(*this);
    Statement update(db_,
                     "UPDATE inventory SET reserved = ?, "
                     "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                     "WHERE inventory_id = ? AND reserved <> ?");
    for (const ReservedCount& c : counts) {
      update.bind(1, c.reserved).bind(2, c.inventory_id).bind(3, c.reserved);
      update.step();
      update.reset();
    }
    tx.commit();
  }

  void ping() override {
    Statement one(db_, "SELECT 1");
    one.step();
  }

  PlacedOrder place_order(const Order& draft) override {
    Transaction tx(*this);
    if (auto existing = order_where("cart_id", draft.cart_id)) return {std::move(*existing), false};
    Statement insert(db_, (std::string("INSERT INTO orders (order_id, cart_id, idempotency_key, "
                                       "total_cents, created_at) VALUES (?, ?, ?, ?, ") +
                           kNow + ")")
                              .c_str());
    insert.bind(1, draft.order_id).bind(2, draft.cart_id).bind(3, draft.idempotency_key);
    insert.bind(4, draft.total_cents);
    insert.step();
    Statement line(db_,
                   "INSERT INTO order_lines (order_id, product_id, inventory_id, name, quantity, "
                   "unit_price_cents, line_total_cents) VALUES (?, ?, ?, ?, ?, ?, ?)");
    Statement sell(db_, (std::string("UPDATE inventory SET on_hand = on_hand - ?, updated_at = ") +
                         kNow + " WHERE inventory_id = ? AND on_hand >= ?")
                            .c_str());
    for (const OrderLine& l : draft.lines) {
      line.bind(1, draft.order_id).bind(2, l.product_id).bind(3, l.inventory_id).bind(4, l.name);
      line.bind(5, l.quantity).bind(6, l.unit_price_cents).bind(7, l.line_total_cents());
      line.step();
      line.reset();
      sell.bind(1, l.quantity).bind(2, l.inventory_id).bind(3, l.quantity);
      sell.step();
      sell.reset();
      if (sqlite3_changes(db_) != 1) {
        throw StoreError("inventory " + l.inventory_id + " has fewer than " +
                         std::to_string(l.quantity) + " units on hand");
      }
    }
    auto placed = order_where("order_id", draft.order_id);
    tx.commit();
    return {std::move(*placed), true};
  }

  std::optional<Order> order(std::string_view order_id) override {
    return order_where("order_id", order_id);
  }

  std::optional<Order> order_for_cart(std::string_view cart_id) override {
    return order_where("cart_id", cart_id);
  }

  bool insert_stock_row(const StockRow& r) override {
    Statement insert(db_,
                     "INSERT OR IGNORE INTO inventory (inventory_id, product_id, name, "
                     "price_cents, on_hand) VALUES (?, ?, ?, ?, ?)");
    insert.bind(1, r.inventory_id).bind(2, r.product_id).bind(3, r.name);
    insert.bind(4, r.price_cents).bind(5, r.on_hand);
    insert.step();
    return sqlite3_changes(db_) == 1;
  }

  std::optional<StockRow> stock_row(std::string_view inventory_id) override {
    auto rows = rows_where("inventory_id = ?", inventory_id);
    if (rows.empty()) return std::nullopt;
    return rows.front();
  }

  OnHandChange set_on_hand(std::string_view inventory_id, std::int64_t on_hand,
                           StockRow& row) override {
    return change_on_hand("?", inventory_id, on_hand, row);
  }

  OnHandChange adjust_on_hand(std::string_view inventory_id, std::int64_t delta,
                              StockRow& row) override {
    return change_on_hand("on_hand + ?", inventory_id, delta, row);
  }

  std::vector<StockRow> products_after(std::string_view after, std::size_t limit) override {
    Statement select(db_, (std::string(kRowColumns) +
                           " WHERE product_id IN (SELECT DISTINCT product_id FROM inventory "
                           "WHERE product_id > ? ORDER BY product_id LIMIT ?) "
                           "ORDER BY product_id, inventory_id")
                              .c_str());
    select.bind(1, after).bind(2, static_cast<std::int64_t>(limit));
    return read_rows(select);
  }

  std::vector<StockRow> product(std::string_view product_id) override {
    return rows_where("product_id = ?", product_id);
  }

 private:
  static constexpr const char* kRowColumns =
      "SELECT inventory_id, product_id, name, price_cents, on_hand, reserved FROM inventory";

  static std::vector<StockRow> read_rows(Statement& select) {
    std::vector<StockRow> rows;
    while (select.step()) {
      rows.push_back(StockRow{select.text(0), select.text(1), select.text(2), select.integer(3),
                              select.integer(4), select.integer(5)});
    }
    return rows;
  }

  std::vector<StockRow> rows_where(const char* condition, std::string_view value) {
    Statement select(
        db_, (std::string(kRowColumns) + " WHERE " + condition + " ORDER BY inventory_id").c_str());
    select.bind(1, value);
    return read_rows(select);
  }

  // Sets on_hand to `expression` (with ? bound to value) unless it would be negative.
  OnHandChange change_on_hand(const char* expression, std::string_view inventory_id,
                              std::int64_t value, StockRow& row) {
    Transaction tx(*this);
    auto current = stock_row(inventory_id);
    if (!current) return OnHandChange::unknown_inventory;
    Statement update(
        db_, (std::string("UPDATE inventory SET on_hand = ") + expression +
              ", updated_at = " + kNow + " WHERE inventory_id = ? AND " + expression + " >= 0")
                 .c_str());
    update.bind(1, value).bind(2, inventory_id).bind(3, value);
    update.step();
    if (sqlite3_changes(db_) != 1) return OnHandChange::negative;
    row = *stock_row(inventory_id);
    tx.commit();
    return OnHandChange::ok;
  }

  std::optional<Order> order_where(const char* column, std::string_view value) {
    Statement select(db_, (std::string("SELECT order_id, cart_id, idempotency_key, total_cents, "
                                       "created_at FROM orders WHERE ") +
                           column + " = ?")
                              .c_str());
    select.bind(1, value);
    if (!select.step()) return std::nullopt;
    Order o{select.text(0), select.text(1), select.text(2), {}, select.integer(3), select.text(4)};
    Statement lines(db_,
                    "SELECT product_id, inventory_id, name, quantity, unit_price_cents "
                    "FROM order_lines WHERE order_id = ? ORDER BY product_id");
    lines.bind(1, o.order_id);
    while (lines.step()) {
      o.lines.push_back(OrderLine{lines.text(0), lines.text(1), lines.text(2), lines.integer(3),
                                  lines.integer(4)});
    }
    return o;
  }

  class Transaction {
   public:
    explicit Transaction(SqliteStore& s) : s_(s) { s_.exec("BEGIN IMMEDIATE"); }
    ~Transaction() {
      if (!done_) sqlite3_exec(s_.db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    void commit() {
      s_.exec("COMMIT");
      done_ = true;
    }

   private:
    SqliteStore& s_;
    bool done_ = false;
  };

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string why = err ? err : "unknown error";
      sqlite3_free(err);
      throw StoreError("sqlite: " + why);
    }
  }

  sqlite3* db_ = nullptr;
};

}  // namespace

std::unique_ptr<Store> open_postgres_store(const std::string& url);

std::unique_ptr<Store> open_store(std::string_view url) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (url.starts_with(kSqlite)) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty()) throw StoreError("sqlite: the URL names no file");
    return std::make_unique<SqliteStore>(path);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return open_postgres_store(std::string(url));
  }
  throw StoreError("unsupported database URL (expected sqlite:PATH or postgresql://...): " +
                   std::string(url));
}

}  // namespace cartd::db
