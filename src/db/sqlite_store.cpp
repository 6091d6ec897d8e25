// sqlite_store: the main DB in an SQLite file, in WAL mode, so readers (a shop's reports,
// `sqlite3 cartd.db`) never block cartd's writer and the writer never blocks them.
#include <sqlite3.h>

#include <chrono>
#include <thread>
#include <unordered_map>

#include "db/sql_store.hpp"

namespace cartd::db {
namespace {

constexpr const char* kSqliteSchema = R"sql(
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
constexpr SqlDialect kSqliteDialect{"BEGIN IMMEDIATE", kNow, "created_at", ""};

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
    if (has_schema()) {
      // A main DB from before per-cart limits.
      if (!has_column("max_per_cart")) {
        write_transaction([&] {
          if (!has_column("max_per_cart")) add_max_per_cart();
        });
      }
      return;  // the schema is complete (and the file in WAL mode)
    }
    // Instances started together may all find a new file. SQLite answers "database is
    // locked" at once, without the busy timeout, where waiting could deadlock (changing
    // the journal mode while another connection reads, or a statement that read the schema
    // and then wants to write while another writes), so the mode change is retried and
    // the schema is made in one transaction that holds the write lock from its start.
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(statement_timeout_ms);
    for (;;) {
      try {
        script("PRAGMA journal_mode=WAL");
        break;
      } catch (const StoreError&) {
        if (sqlite3_errcode(db_) != SQLITE_BUSY || std::chrono::steady_clock::now() >= deadline) {
          throw;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
    write_transaction([&] {
      if (has_schema()) return;
      script(kSqliteSchema);
      // A main DB from before row versions or per-cart limits gets the columns.
      if (!has_column("version")) {
        script("ALTER TABLE inventory ADD COLUMN version INTEGER NOT NULL DEFAULT 0");
      }
      if (!has_column("max_per_cart")) add_max_per_cart();
      script(shared_schema("INTEGER", "INTEGER", "TEXT", kNow).c_str());
    });
  }

  bool has_schema() {
    return !query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                  {std::string(kSchemaMarker)})
                .empty();
  }

  // A main DB from before per-cart limits gets the column (inside a write transaction:
  // SQLite has no ADD COLUMN IF NOT EXISTS).
  void add_max_per_cart() {
    script(
        "ALTER TABLE inventory ADD COLUMN max_per_cart INTEGER NOT NULL DEFAULT 0 "
        "CHECK (max_per_cart >= 0)");
  }
  bool has_column(const char* name) {
    return query("SELECT COUNT(*) FROM pragma_table_info('inventory') WHERE name = ?",
                 {std::string(name)})
               .front()[0] != "0";
  }
  // Runs `body` holding the write lock from the start (BEGIN IMMEDIATE waits with the busy
  // timeout), so what it reads stays true until it commits.
  template <typename Body>
  void write_transaction(Body body) {
    script("BEGIN IMMEDIATE");
    try {
      body();
      script("COMMIT");
    } catch (const StoreError&) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
  ~SqliteConnection() override {
    forget_statements();
    sqlite3_close(db_);
  }

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
  // A statement of the connection's cache (prepared once per SQL text: cartd's texts are
  // a few dozen, and the DB writer runs the same UPDATE for every row it mirrors), bound
  // to `params`; reset for its next use when it goes.
  class Statement {
   public:
    Statement(SqliteConnection& c, const std::string& sql, const std::vector<SqlParam>& params)
        : c_(c), stmt_(c.prepared(sql)) {
      for (std::size_t i = 0; i < params.size(); ++i) {
        int at = static_cast<int>(i + 1);
        int rc = std::holds_alternative<std::int64_t>(params[i])
                     ? sqlite3_bind_int64(stmt_, at, std::get<std::int64_t>(params[i]))
                     : sqlite3_bind_text(stmt_, at, std::get<std::string>(params[i]).c_str(), -1,
                                         SQLITE_TRANSIENT);
        if (rc != SQLITE_OK) c_.fail();
      }
    }
    ~Statement() {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
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

  // The prepared statement of `sql`, from the cache (emptied when it holds more texts
  // than cartd has: a bound, should a caller ever build its SQL from values).
  sqlite3_stmt* prepared(const std::string& sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    if (statements_.size() >= kMostStatements) forget_statements();
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) fail();
    statements_.emplace(sql, stmt);
    return stmt;
  }
  void forget_statements() {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    statements_.clear();
  }
  static constexpr std::size_t kMostStatements = 256;

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
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(const std::string& path, int statement_timeout_ms) {
  return make_sql_store(std::make_unique<SqliteConnection>(path, statement_timeout_ms),
                        kSqliteDialect);
}

}  // namespace cartd::db
