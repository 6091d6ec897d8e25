// pg_store: the main DB on PostgreSQL, for several cartd instances sharing it. One
// connection per Store (the DB executor keeps one per thread); a lost connection is reset
// before the next statement. Schema creation is serialized across instances by an
// advisory lock.
#include <libpq-fe.h>

#include "db/sql_store.hpp"

namespace cartd::db {
namespace {

constexpr std::int64_t kSchemaLock = 0x63617274;  // "cart": serializes CREATE TABLE

constexpr const char* kPgSchema = R"sql(
CREATE TABLE IF NOT EXISTS inventory (
  inventory_id TEXT PRIMARY KEY,
  product_id   TEXT NOT NULL,
  name         TEXT NOT NULL,
  price_cents  BIGINT NOT NULL CHECK (price_cents >= 0),
  on_hand      BIGINT NOT NULL CHECK (on_hand >= 0),
  reserved     BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  available    BIGINT GENERATED ALWAYS AS (on_hand - reserved) STORED,
  updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE inventory ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE inventory ADD COLUMN IF NOT EXISTS max_per_cart BIGINT NOT NULL DEFAULT 0
  CHECK (max_per_cart >= 0);
CREATE INDEX IF NOT EXISTS inventory_product ON inventory (product_id);
CREATE TABLE IF NOT EXISTS orders (
  order_id        TEXT PRIMARY KEY,
  cart_id         TEXT NOT NULL UNIQUE,
  idempotency_key TEXT NOT NULL,
  total_cents     BIGINT NOT NULL,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS order_lines (
  order_id         TEXT NOT NULL REFERENCES orders (order_id),
  product_id       TEXT NOT NULL,
  inventory_id     TEXT NOT NULL,
  name             TEXT NOT NULL,
  quantity         BIGINT NOT NULL CHECK (quantity > 0),
  unit_price_cents BIGINT NOT NULL,
  line_total_cents BIGINT NOT NULL,
  PRIMARY KEY (order_id, product_id)
);
)sql";

constexpr SqlDialect kPgDialect{
    "BEGIN", "now()", "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
    " FOR UPDATE"};

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

// `?` placeholders as PostgreSQL's $1, $2, ... (the SQL here has no ? in literals).
std::string numbered(const std::string& sql) {
  std::string out;
  int n = 0;
  for (char c : sql) {
    if (c == '?') {
      out += "$" + std::to_string(++n);
    } else {
      out += c;
    }
  }
  return out;
}

class PgConnection final : public SqlConnection {
 public:
  PgConnection(const std::string& url, int statement_timeout_ms)
      : conn_(PQconnectdb(url.c_str())), statement_timeout_ms_(statement_timeout_ms) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string why = PQerrorMessage(conn_);
      PQfinish(conn_);
      throw StoreError("postgresql: cannot connect: " + why);
    }
    apply_timeouts();
    if (schema_complete() && has_max_per_cart()) return;
    execute("SELECT pg_advisory_lock(?)", {kSchemaLock});
    std::string schema =
        std::string(kPgSchema) + shared_schema("BIGSERIAL", "BIGINT", "TIMESTAMPTZ", "now()");
    check(Result(PQexec(conn_, schema.c_str()), PQclear));  // several statements: no parameters
    execute("SELECT pg_advisory_unlock(?)", {kSchemaLock});
  }
  ~PgConnection() override { PQfinish(conn_); }

  std::vector<SqlRow> query(const std::string& sql, const std::vector<SqlParam>& params) override {
    Result res = run(sql, params);
    std::vector<SqlRow> rows;
    for (int i = 0; i < PQntuples(res.get()); ++i) {
      SqlRow row;
      for (int c = 0; c < PQnfields(res.get()); ++c) row.emplace_back(PQgetvalue(res.get(), i, c));
      rows.push_back(std::move(row));
    }
    return rows;
  }

  std::int64_t execute(const std::string& sql, const std::vector<SqlParam>& params) override {
    Result res = run(sql, params);
    std::string changed = PQcmdTuples(res.get());
    return changed.empty() ? 0 : std::stoll(changed);
  }

 private:
  // A main DB from before per-cart limits lacks the column: the schema script adds it.
  bool has_max_per_cart() {
    return query(
               "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = "
               "'inventory' AND column_name = 'max_per_cart'",
               {})
               .front()[0] != "0";
  }

  bool schema_complete() {
    return query("SELECT to_regclass(?) IS NOT NULL", {std::string(kSchemaMarker)}).front()[0] ==
           "t";
  }

  // No statement waits for a row lock, or runs, longer than the timeout: a checkout's
  // transaction ends before checkout recovery judges it. Session settings: set again
  // after every reset.
  void apply_timeouts() {
    std::string ms = std::to_string(statement_timeout_ms_);
    std::string sql = "SET statement_timeout = " + ms + "; SET lock_timeout = " + ms;
    check(Result(PQexec(conn_, sql.c_str()), PQclear));
  }

  // A broken connection is reset first, so a restarted PostgreSQL is used again.
  Result run(const std::string& sql, const std::vector<SqlParam>& params) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      PQreset(conn_);
      if (PQstatus(conn_) == CONNECTION_OK) apply_timeouts();
    }
    std::vector<std::string> text;
    for (const SqlParam& p : params) {
      text.push_back(std::holds_alternative<std::string>(p)
                         ? std::get<std::string>(p)
                         : std::to_string(std::get<std::int64_t>(p)));
    }
    std::vector<const char*> values;
    for (const auto& t : text) values.push_back(t.c_str());
    return check(Result(PQexecParams(conn_, numbered(sql).c_str(), static_cast<int>(values.size()),
                                     nullptr, values.data(), nullptr, nullptr, 0),
                        PQclear));
  }

  Result check(Result res) {
    auto status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw StoreError(std::string("postgresql: ") + PQerrorMessage(conn_));
    }
    return res;
  }

  PGconn* conn_;
  int statement_timeout_ms_;
};

}  // namespace

std::unique_ptr<Store> open_postgres_store(const std::string& url, int statement_timeout_ms) {
  return make_sql_store(std::make_unique<PgConnection>(url, statement_timeout_ms), kPgDialect);
}

}  // namespace cartd::db
