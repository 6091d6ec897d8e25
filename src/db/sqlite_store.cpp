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
)sql";

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
    Statement select(db_,
                     "SELECT inventory_id, product_id, name, price_cents, on_hand, reserved "
                     "FROM inventory ORDER BY inventory_id");
    std::vector<StockRow> rows;
    while (select.step()) {
      rows.push_back(StockRow{select.text(0), select.text(1), select.text(2), select.integer(3),
                              select.integer(4), select.integer(5)});
    }
    return rows;
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

 private:
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

std::unique_ptr<Store> open_store(std::string_view url) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (url.starts_with(kSqlite)) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty()) throw StoreError("sqlite: the URL names no file");
    return std::make_unique<SqliteStore>(path);
  }
  throw StoreError("unsupported database URL (expected sqlite:PATH): " + std::string(url));
}

}  // namespace cartd::db
