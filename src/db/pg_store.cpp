// pg_store: the Store on PostgreSQL, for several cartd instances sharing one main DB.
// One connection per Store (the DB executor keeps one per thread); a lost connection is
// reset before the next call. Schema creation is serialized across instances by an
// advisory lock.
#include <libpq-fe.h>

#include <memory>

#include "db/store.hpp"

namespace cartd::db {
namespace {

constexpr std::int64_t kSchemaLock = 0x63617274;  // "cart": serializes CREATE TABLE

constexpr const char* kSchema = R"sql(
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

constexpr const char* kRowColumns =
    "SELECT inventory_id, product_id, name, price_cents, on_hand, reserved FROM inventory";

using Result = std::unique_ptr<PGresult, decltype(&PQclear)>;

class PgStore final : public Store {
 public:
  explicit PgStore(std::string url) : url_(std::move(url)), conn_(PQconnectdb(url_.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) {
      std::string why = PQerrorMessage(conn_);
      PQfinish(conn_);
      throw StoreError("postgresql: cannot connect: " + why);
    }
    exec("SELECT pg_advisory_lock($1)", {std::to_string(kSchemaLock)});
    exec_script(kSchema);
    exec("SELECT pg_advisory_unlock($1)", {std::to_string(kSchemaLock)});
  }
  ~PgStore() override { PQfinish(conn_); }

  std::size_t add_missing(std::span<const StockRow> rows) override {
    Transaction tx(*this);
    std::size_t added = 0;
    for (const StockRow& r : rows) {
      auto res = exec(
          "INSERT INTO inventory (inventory_id, product_id, name, price_cents, on_hand) "
          "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (inventory_id) DO NOTHING",
          {r.inventory_id, r.product_id, r.name, std::to_string(r.price_cents),
           std::to_string(r.on_hand)});
      added += std::stoul(PQcmdTuples(res.get()));
    }
    tx.commit();
    return added;
  }

  std::vector<StockRow> stock_rows() override {
    return rows(exec(std::string(kRowColumns) + " ORDER BY inventory_id", {}));
  }

  void set_reserved(std::span<const ReservedCount> counts) override {
    Transaction tx(*this);
    for (const ReservedCount& c : counts) {
      exec(
          "UPDATE inventory SET reserved = $1, updated_at = now() "
          "WHERE inventory_id = $2 AND reserved <> $1",
          {std::to_string(c.reserved), c.inventory_id});
    }
    tx.commit();
  }

  void ping() override { exec("SELECT 1", {}); }

  PlacedOrder place_order(const Order& draft) override {
    Transaction tx(*this);
    auto inserted = exec(
        "INSERT INTO orders (order_id, cart_id, idempotency_key, total_cents) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (cart_id) DO NOTHING",
        {draft.order_id, draft.cart_id, draft.idempotency_key, std::to_string(draft.total_cents)});
    if (std::string(PQcmdTuples(inserted.get())) == "0") {
      auto existing = order_where("cart_id", draft.cart_id);
      tx.commit();
      return {std::move(*existing), false};
    }
    for (const OrderLine& l : draft.lines) {
      exec(
          "INSERT INTO order_lines (order_id, product_id, inventory_id, name, quantity, "
          "unit_price_cents, line_total_cents) VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {draft.order_id, l.product_id, l.inventory_id, l.name, std::to_string(l.quantity),
           std::to_string(l.unit_price_cents), std::to_string(l.line_total_cents())});
      auto sold = exec(
          "UPDATE inventory SET on_hand = on_hand - $1, updated_at = now() "
          "WHERE inventory_id = $2 AND on_hand >= $1",
          {std::to_string(l.quantity), l.inventory_id});
      if (std::string(PQcmdTuples(sold.get())) != "1") {
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
    auto res = exec(
        "INSERT INTO inventory (inventory_id, product_id, name, price_cents, on_hand) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (inventory_id) DO NOTHING",
        {r.inventory_id, r.product_id, r.name, std::to_string(r.price_cents),
         std::to_string(r.on_hand)});
    return std::string(PQcmdTuples(res.get())) == "1";
  }

  std::optional<StockRow> stock_row(std::string_view inventory_id) override {
    auto found = rows(
        exec(std::string(kRowColumns) + " WHERE inventory_id = $1", {std::string(inventory_id)}));
    if (found.empty()) return std::nullopt;
    return found.front();
  }

  OnHandChange set_on_hand(std::string_view inventory_id, std::int64_t on_hand,
                           StockRow& row) override {
    return change_on_hand("$1::bigint", inventory_id, on_hand, row);
  }

  OnHandChange adjust_on_hand(std::string_view inventory_id, std::int64_t delta,
                              StockRow& row) override {
    return change_on_hand("on_hand + $1::bigint", inventory_id, delta, row);
  }

  std::vector<StockRow> products_after(std::string_view after, std::size_t limit) override {
    return rows(exec(std::string(kRowColumns) +
                         " WHERE product_id IN (SELECT DISTINCT product_id FROM inventory "
                         "WHERE product_id > $1 ORDER BY product_id LIMIT $2) "
                         "ORDER BY product_id, inventory_id",
                     {std::string(after), std::to_string(limit)}));
  }

  std::vector<StockRow> product(std::string_view product_id) override {
    return rows(exec(std::string(kRowColumns) + " WHERE product_id = $1 ORDER BY inventory_id",
                     {std::string(product_id)}));
  }

 private:
  class Transaction {
   public:
    explicit Transaction(PgStore& s) : s_(s) { s_.exec("BEGIN", {}); }
    ~Transaction() {
      if (!done_) PQclear(PQexec(s_.conn_, "ROLLBACK"));
    }
    void commit() {
      s_.exec("COMMIT", {});
      done_ = true;
    }

   private:
    PgStore& s_;
    bool done_ = false;
  };

  // Runs one statement with text parameters; throws StoreError on failure. A broken
  // connection is reset first, so a restarted PostgreSQL is used again.
  Result exec(const std::string& sql, const std::vector<std::string>& params) {
    if (PQstatus(conn_) != CONNECTION_OK) PQreset(conn_);
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    Result res(PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr,
                            values.data(), nullptr, nullptr, 0),
               PQclear);
    auto status = PQresultStatus(res.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw StoreError(std::string("postgresql: ") + PQerrorMessage(conn_));
    }
    return res;
  }

  // Runs several statements at once (no parameters), as the schema needs.
  void exec_script(const char* sql) {
    Result res(PQexec(conn_, sql), PQclear);
    if (PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
      throw StoreError(std::string("postgresql: ") + PQerrorMessage(conn_));
    }
  }

  static std::vector<StockRow> rows(const Result& res) {
    std::vector<StockRow> out;
    for (int i = 0; i < PQntuples(res.get()); ++i) {
      out.push_back(StockRow{PQgetvalue(res.get(), i, 0), PQgetvalue(res.get(), i, 1),
                             PQgetvalue(res.get(), i, 2), std::stoll(PQgetvalue(res.get(), i, 3)),
                             std::stoll(PQgetvalue(res.get(), i, 4)),
                             std::stoll(PQgetvalue(res.get(), i, 5))});
    }
    return out;
  }

  OnHandChange change_on_hand(const char* expression, std::string_view inventory_id,
                              std::int64_t value, StockRow& row) {
    Transaction tx(*this);
    auto current = rows(exec(std::string(kRowColumns) + " WHERE inventory_id = $1 FOR UPDATE",
                             {std::string(inventory_id)}));
    if (current.empty()) return OnHandChange::unknown_inventory;
    auto changed =
        exec(std::string("UPDATE inventory SET on_hand = ") + expression +
                 ", updated_at = now() WHERE inventory_id = $2 AND " + expression + " >= 0",
             {std::to_string(value), std::string(inventory_id)});
    if (std::string(PQcmdTuples(changed.get())) != "1") return OnHandChange::negative;
    row = *stock_row(inventory_id);
    tx.commit();
    return OnHandChange::ok;
  }

  std::optional<Order> order_where(const char* column, std::string_view value) {
    auto head = exec(std::string("SELECT order_id, cart_id, idempotency_key, total_cents, "
                                 "to_char(created_at AT TIME ZONE 'UTC', "
                                 "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM orders WHERE ") +
                         column + " = $1",
                     {std::string(value)});
    if (PQntuples(head.get()) == 0) return std::nullopt;
    Order o{PQgetvalue(head.get(), 0, 0),
            PQgetvalue(head.get(), 0, 1),
            PQgetvalue(head.get(), 0, 2),
            {},
            std::stoll(PQgetvalue(head.get(), 0, 3)),
            PQgetvalue(head.get(), 0, 4)};
    auto lines = exec(
        "SELECT product_id, inventory_id, name, quantity, unit_price_cents FROM order_lines "
        "WHERE order_id = $1 ORDER BY product_id",
        {o.order_id});
    for (int i = 0; i < PQntuples(lines.get()); ++i) {
      o.lines.push_back(OrderLine{PQgetvalue(lines.get(), i, 0), PQgetvalue(lines.get(), i, 1),
                                  PQgetvalue(lines.get(), i, 2),
                                  std::stoll(PQgetvalue(lines.get(), i, 3)),
                                  std::stoll(PQgetvalue(lines.get(), i, 4))});
    }
    return o;
  }

  std::string url_;
  PGconn* conn_;
};

}  // namespace

std::unique_ptr<Store> open_postgres_store(const std::string& url) {
  return std::make_unique<PgStore>(url);
}

}  // namespace cartd::db
