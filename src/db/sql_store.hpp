// sql_store: the Store once, in SQL that SQLite and PostgreSQL both run; each engine
// supplies a connection (how to run a statement) and a dialect (its schema and the few
// expressions that differ). Placeholders are written `?`; a connection that wants
// `$1, $2, ...` rewrites them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "db/store.hpp"

namespace cartd::db {

using SqlParam = std::variant<std::string, std::int64_t>;
using SqlRow = std::vector<std::string>;  // a row as text; NULL reads as ""

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual std::vector<SqlRow> query(const std::string& sql,
                                    const std::vector<SqlParam>& params) = 0;
  // Runs a statement that returns no rows; returns how many rows it changed.
  virtual std::int64_t execute(const std::string& sql, const std::vector<SqlParam>& params) = 0;
};

struct SqlDialect {
  const char* begin;       // starts a write transaction
  const char* now;         // the current time, for updated_at and created_at
  const char* created_at;  // orders.created_at as RFC 3339 UTC with milliseconds
  const char* for_update;  // locks a row read inside a transaction ("" where BEGIN does)
};

std::unique_ptr<Store> make_sql_store(std::unique_ptr<SqlConnection> connection,
                                      SqlDialect dialect);

// The engines (sqlite_store.cpp, pg_store.cpp): each opens a connection and makes sure
// its schema exists.
// Every statement fails after waiting `statement_timeout_ms` for a lock (or running so
// long, where the engine can stop it).
std::unique_ptr<Store> open_sqlite_store(const std::string& path, int statement_timeout_ms);
std::unique_ptr<Store> open_postgres_store(const std::string& url, int statement_timeout_ms);

// The tables both engines share beyond inventory and orders: the ledger of on_hand, the
// checkout fence, admin requests applied, and the health heartbeat. `serial` is the
// engine's auto-increment key type, `integer` its 64-bit integer, `time` its time column,
// `now` its current time. Run after the engine's own schema.
std::string shared_schema(const char* serial, const char* integer, const char* time,
                          const char* now);
// The table shared_schema creates last. When it exists the schema is complete, and an
// engine runs no DDL at all: DDL on a live table takes locks that queue every reader
// behind any writer's row lock (PostgreSQL), or the write lock (SQLite).
inline constexpr const char* kSchemaMarker = "cartd_heartbeat";

}  // namespace cartd::db
