// sqlite_store: the main DB in an SQLite file, in WAL mode, so readers (a shop's reports,
// `sqlite3 cartd.db`) never block cartd's writer and the writer never blocks them.
#include <sqlite3.h>

#include "db/sql_store.hpp"

namespace cartd::db {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS inventory (
  inventory_id TEXT PRIMARY KEY,
  product_id   TEXT NOT NULL,
  name         TEXT NOT NULL,
  price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
  on_hand      INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  available    INTEGER GENERATED ALWAYS AS (on_hand - reserved) VIRTUAL,
  version      INTEGER NOT NULL DEFAULT 0,
  max_per_cart INTEGER NOT NULL DEFAULT 0 CHECK (max_per_cart >= 0),
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

// BEGIN IMMEDIATE takes the write lock at once, so no row lock is needed after it.
constexpr const char* kNow = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
constexpr SqlDialect kDialect{"BEGIN IMMEDIATE", kNow, "created_at", ""};

class SqliteConnection final : public SqlConnection {
 public:
  SqliteConnection(const std::string& path, int statement_timeout_ms) {
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string why = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw StoreError("sqlite: cannot open " + path + ": " + why);
    }
    // A statement waits at most this long for another writer's lock, then fails.
    sqlite3_busy_timeout(db_, statement_timeout_ms);
    script("PRAGMA synchronous=NORMAL");
    if (!query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
               {std::string(kSchemaMarker)})
             .empty()) {
      add_max_per_cart();  // a main DB from before it
      return;              // the schema is complete (and the file in WAL mode)
    }
    script("PRAGMA journal_mode=WAL");
    script(kSchema);
    // A main DB from before row versions gets the column.
    if (query("SELECT COUNT(*) FROM pragma_table_info('inventory') WHERE name = 'version'", {})
            .front()[0] == "0") {
      script("ALTER TABLE inventory ADD COLUMN version INTEGER NOT NULL DEFAULT 0");
    }
    add_max_per_cart();
    script(shared_schema("INTEGER", "INTEGER", "TEXT", kNow).c_str());
  }

  // A main DB from before per-cart limits gets the column (once: SQLite has no ADD
  // COLUMN IF NOT EXISTS, and two instances may start together, so a lost race is fine).
  void add_max_per_cart() {
    if (query("SELECT COUNT(*) FROM pragma_table_info('inventory') WHERE name = 'max_per_cart'", {})
            .front()[0] != "0") {
      return;
    }
    try {
      script(
          "ALTER TABLE inventory ADD COLUMN max_per_cart INTEGER NOT NULL DEFAULT 0 "
          "CHECK (max_per_cart >= 0)");
    } catch (const StoreError&) {
      if (query("SELECT COUNT(*) FROM pragma_table_info('inventory') WHERE name = "
                "'max_per_cart'",
                {})
              .front()[0] == "0") {
        throw;
      }
    }
  }
  ~SqliteConnection() override { sqlite3_close(db_); }

  std::vector<SqlRow> query(const std::string& sql, const std::vector<SqlParam>& params) override {
    Statement st(*this, sql, params);
    std::vector<SqlRow> rows;
    while (st.step()) {
      SqlRow row;
      for (int c = 0; c < sqlite3_column_count(st.get()); ++c) {
        auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), c));
        row.emplace_back(text ? text : "");
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  std::int64_t execute(const std::string& sql, const std::vector<SqlParam>& params) override {
    Statement st(*this, sql, params);
    while (st.step()) {
    }
    return sqlite3_changes(db_);
  }

 private:
  class Statement {
   public:
    Statement(SqliteConnection& c, const std::string& sql, const std::vector<SqlParam>& params)
        : c_(c) {
      if (sqlite3_prepare_v2(c_.db_, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) c_.fail();
      for (std::size_t i = 0; i < params.size(); ++i) {
        int at = static_cast<int>(i + 1);
        int rc = std::holds_alternative<std::int64_t>(params[i])
                     ? sqlite3_bind_int64(stmt_, at, std::get<std::int64_t>(params[i]))
                     : sqlite3_bind_text(stmt_, at, std::get<std::string>(params[i]).c_str(), -1,
                                         SQLITE_TRANSIENT);
        if (rc != SQLITE_OK) c_.fail();
      }
    }
    ~Statement() { sqlite3_finalize(stmt_); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    sqlite3_stmt* get() const { return stmt_; }
    // True while there is a row to read.
    bool step() {
      int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc != SQLITE_DONE) c_.fail();
      return false;
    }

   private:
    SqliteConnection& c_;
    sqlite3_stmt* stmt_ = nullptr;
  };

  [[noreturn]] void fail() { throw StoreError(std::string("sqlite: ") + sqlite3_errmsg(db_)); }

  void script(const char* sql) {
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

std::unique_ptr<Store> open_sqlite_store(const std::string& path, int statement_timeout_ms) {
  return make_sql_store(std::make_unique<SqliteConnection>(path, statement_timeout_ms), kDialect);
}

}  // namespace cartd::db
