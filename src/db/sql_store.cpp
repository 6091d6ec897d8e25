#include "db/sql_store.hpp"

namespace cartd::db {
namespace {

constexpr const char* kRowColumns =
    "SELECT inventory_id, product_id, name, price_cents, on_hand, reserved, version, "
    "max_per_cart FROM inventory";

StockRow to_stock_row(const SqlRow& r) {
  return StockRow{r[0],
                  r[1],
                  r[2],
                  std::stoll(r[3]),
                  std::stoll(r[4]),
                  std::stoll(r[5]),
                  std::stoll(r[6]),
                  std::stoll(r[7])};
}

class SqlStore final : public Store {
 public:
  SqlStore(std::unique_ptr<SqlConnection> c, SqlDialect d) : db_(std::move(c)), dialect_(d) {}

  std::size_t add_missing(std::span<const StockRow> rows) override {
    Transaction tx(*this);
    std::size_t added = 0;
    for (const StockRow& r : rows) added += static_cast<std::size_t>(insert_row(r));
    tx.commit();
    return added;
  }

  std::vector<StockRow> stock_rows() override { return rows_where("1 = 1", {}); }

  void set_reserved(std::span<const ReservedCount> counts) override {
    Transaction tx(*this);
    for (const ReservedCount& c : counts) {
      db_->execute(std::string("UPDATE inventory SET reserved = ?, updated_at = ") + dialect_.now +
                       " WHERE inventory_id = ? AND reserved <> ?",
                   {c.reserved, c.inventory_id, c.reserved});
    }
    tx.commit();
  }

  void heartbeat() override {
    db_->execute(std::string("INSERT INTO cartd_heartbeat (id, at) VALUES (1, ") + dialect_.now +
                     ") ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                 {});
  }

  PlacedOrder place_order(const Order& draft, std::string_view attempt_id) override {
    using Kind = PlacedOrder::Kind;
    {
      Transaction tx(*this);
      if (auto existing = order_where("cart_id", draft.cart_id)) {
        auto rows = versions(*existing);
        tx.commit();
        return {Kind::existing, std::move(*existing), std::move(rows)};
      }
      // The fence: this attempt's outcome is 'ordered' only if recovery has not recorded
      // it as 'aborted' first. A concurrent recovery waits on this row's key until we end.
      if (record_attempt(attempt_id, draft.cart_id, "ordered") == 0) {
        // The attempt has its outcome: aborted, or ordered by a retry with the same key
        // that committed while this transaction waited for its row.
        if (attempt_outcome(attempt_id) != "ordered") return {Kind::aborted, {}, {}};
        auto existing = order_where("cart_id", draft.cart_id);
        if (!existing) throw StoreError("order of cart " + draft.cart_id + " vanished");
        auto rows = versions(*existing);
        tx.commit();
        return {Kind::existing, std::move(*existing), std::move(rows)};
      }
      std::int64_t inserted = db_->execute(
          std::string("INSERT INTO orders (order_id, cart_id, idempotency_key, total_cents, "
                      "created_at) VALUES (?, ?, ?, ?, ") +
              dialect_.now + ") ON CONFLICT (cart_id) DO NOTHING",
          {draft.order_id, draft.cart_id, draft.idempotency_key, draft.total_cents});
      if (inserted == 1) {
        std::optional<std::string> short_row;
        for (const OrderLine& l : draft.lines) {
          db_->execute(
              "INSERT INTO order_lines (order_id, product_id, inventory_id, name, quantity, "
              "unit_price_cents, line_total_cents) VALUES (?, ?, ?, ?, ?, ?, ?)",
              {draft.order_id, l.product_id, l.inventory_id, l.name, l.quantity, l.unit_price_cents,
               l.line_total_cents()});
          if (!move_on_hand(l.inventory_id, -l.quantity, "sale", draft.order_id)) {
            short_row = l.inventory_id;
            break;
          }
        }
        if (!short_row) {
          auto placed = order_where("order_id", draft.order_id);
          auto rows = versions(*placed);
          tx.commit();
          return {Kind::created, std::move(*placed), std::move(rows)};
        }
        tx.rollback();
        // The units the cart held are not in the main DB (it changed behind cartd's back,
        // or a Redis failover lost a change): the attempt ends here, the cart lives on.
        Transaction abort(*this);
        record_attempt(attempt_id, draft.cart_id, "aborted");
        auto row = rows_where("inventory_id = ?", {*short_row});
        abort.commit();
        PlacedOrder out{Kind::insufficient, {}, {}};
        if (!row.empty()) out.rows.push_back(version_of(row.front()));
        return out;
      }
    }
    // Another attempt of this cart made its order while we waited: that order stands.
    auto existing = order_where("cart_id", draft.cart_id);
    if (!existing) throw StoreError("order of cart " + draft.cart_id + " vanished");
    return {Kind::existing, *existing, versions(*existing)};
  }

  SettledCheckout settle_checkout(std::string_view cart_id, std::string_view attempt_id) override {
    Transaction tx(*this);
    auto order = order_where("cart_id", cart_id);
    if (!order && record_attempt(attempt_id, cart_id, "aborted") == 0) {
      // The attempt has an outcome already: 'aborted' (nothing to find) or 'ordered' by a
      // transaction that committed while we waited for its key.
      order = order_where("cart_id", cart_id);
    }
    SettledCheckout out{order, order ? versions(*order) : std::vector<OnHandVersion>{}};
    tx.commit();
    return out;
  }

  std::optional<Order> order(std::string_view order_id) override {
    return order_where("order_id", order_id);
  }

  std::optional<Order> order_for_cart(std::string_view cart_id) override {
    return order_where("cart_id", cart_id);
  }

  bool insert_stock_row(const StockRow& r) override {
    Transaction tx(*this);
    bool inserted = insert_row(r) == 1;
    tx.commit();
    return inserted;
  }

  bool set_max_per_cart(std::string_view inventory_id, std::int64_t max_per_cart) override {
    return db_->execute("UPDATE inventory SET max_per_cart = ? WHERE inventory_id = ?",
                        {max_per_cart, std::string(inventory_id)}) == 1;
  }

  std::optional<StockRow> stock_row(std::string_view inventory_id) override {
    auto found = rows_where("inventory_id = ?", {std::string(inventory_id)});
    if (found.empty()) return std::nullopt;
    return found.front();
  }

  OnHandResult change_on_hand(const OnHandRequest& req) override {
    Transaction tx(*this);
    if (db_->execute(std::string("INSERT INTO admin_requests (request_key, inventory_id, "
                                 "request, created_at) VALUES (?, ?, ?, ") +
                         dialect_.now + ") ON CONFLICT (request_key) DO NOTHING",
                     {req.request_key, req.inventory_id, req.request}) == 0) {
      auto earlier =
          db_->query("SELECT inventory_id, request FROM admin_requests WHERE request_key = ?",
                     {req.request_key});
      tx.commit();
      if (earlier.empty() || earlier.front()[0] != req.inventory_id ||
          earlier.front()[1] != req.request) {
        return {OnHandChange::key_reused, {}};
      }
      return {OnHandChange::replayed, *stock_row(req.inventory_id)};
    }
    auto rows = rows_where("inventory_id = ?", {req.inventory_id}, dialect_.for_update);
    if (rows.empty()) return {OnHandChange::unknown_inventory, {}};
    if (req.expected_version && rows.front().version != *req.expected_version) {
      return {OnHandChange::version_changed, {}};
    }
    if (!move_on_hand(req.inventory_id, req.delta, req.reason, req.request_key)) {
      return {OnHandChange::negative, {}};
    }
    auto row = stock_row(req.inventory_id);
    tx.commit();
    return {OnHandChange::ok, *row};
  }

  bool admin_request_applied(std::string_view request_key) override {
    return !db_->query("SELECT 1 FROM admin_requests WHERE request_key = ?",
                       {std::string(request_key)})
                .empty();
  }

  std::vector<StockRow> products_after(std::string_view after, std::size_t limit) override {
    return rows_where(
        "product_id IN (SELECT DISTINCT product_id FROM inventory WHERE product_id > ? "
        "ORDER BY product_id LIMIT ?)",
        {std::string(after), static_cast<std::int64_t>(limit)});
  }

  std::vector<StockRow> product(std::string_view product_id) override {
    return rows_where("product_id = ?", {std::string(product_id)});
  }

  std::vector<std::string> audit() override {
    std::vector<std::string> out;
    for (const SqlRow& r : db_->query(
             "SELECT i.inventory_id, i.on_hand, COALESCE((SELECT SUM(m.delta) FROM "
             "inventory_movements m WHERE m.inventory_id = i.inventory_id), 0) FROM inventory i "
             "ORDER BY i.inventory_id",
             {})) {
      if (r[1] != r[2]) {
        out.push_back(r[0] + ": on_hand " + r[1] + " but its ledger sums to " + r[2]);
      }
    }
    for (const SqlRow& r : db_->query(
             "SELECT s.inventory_id, s.units, COALESCE(l.units, 0) FROM (SELECT inventory_id, "
             "-SUM(delta) AS units FROM inventory_movements WHERE reason = 'sale' GROUP BY "
             "inventory_id) s LEFT JOIN (SELECT inventory_id, SUM(quantity) AS units FROM "
             "order_lines GROUP BY inventory_id) l ON l.inventory_id = s.inventory_id "
             "UNION SELECT l.inventory_id, 0, l.units FROM (SELECT inventory_id, SUM(quantity) AS "
             "units FROM order_lines GROUP BY inventory_id) l WHERE NOT EXISTS (SELECT 1 FROM "
             "inventory_movements m WHERE m.inventory_id = l.inventory_id AND m.reason = 'sale')",
             {})) {
      if (r[1] != r[2]) {
        out.push_back(r[0] + ": the ledger records " + r[1] + " units sold, orders hold " + r[2]);
      }
    }
    for (const SqlRow& r : db_->query("SELECT o.order_id FROM orders o WHERE NOT EXISTS (SELECT "
                                      "1 FROM order_lines l WHERE l.order_id = o.order_id)",
                                      {})) {
      out.push_back("order " + r[0] + " has no lines");
    }
    return out;
  }

 private:
  class Transaction {
   public:
    explicit Transaction(SqlStore& s) : s_(s) { s_.db_->execute(s_.dialect_.begin, {}); }
    ~Transaction() {
      if (done_) return;
      try {
        s_.db_->execute("ROLLBACK", {});
      } catch (const StoreError&) {
        // The connection is gone; so is the transaction.
      }
    }
    void commit() {
      s_.db_->execute("COMMIT", {});
      done_ = true;
    }
    void rollback() {
      done_ = true;
      s_.db_->execute("ROLLBACK", {});
    }

   private:
    SqlStore& s_;
    bool done_ = false;
  };

  // Inside a transaction: inserts a row, its on_hand entering the ledger as `initial`.
  std::int64_t insert_row(const StockRow& r) {
    std::int64_t inserted = db_->execute(
        "INSERT INTO inventory (inventory_id, product_id, name, price_cents, on_hand, "
        "max_per_cart) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (inventory_id) DO NOTHING",
        {r.inventory_id, r.product_id, r.name, r.price_cents, r.on_hand, r.max_per_cart});
    if (inserted == 1) record_movement(r.inventory_id, r.on_hand, "initial", "");
    return inserted;
  }

  // Inside a transaction: changes on_hand by `delta` unless that makes it negative, bumps
  // the row's version and writes the ledger row. False if refused (nothing changed).
  bool move_on_hand(const std::string& inventory_id, std::int64_t delta, const std::string& reason,
                    const std::string& reference) {
    std::int64_t changed = db_->execute(
        std::string("UPDATE inventory SET on_hand = on_hand + ?, version = version + 1, "
                    "updated_at = ") +
            dialect_.now + " WHERE inventory_id = ? AND on_hand + ? >= 0",
        {delta, inventory_id, delta});
    if (changed != 1) return false;
    record_movement(inventory_id, delta, reason, reference);
    return true;
  }

  void record_movement(const std::string& inventory_id, std::int64_t delta,
                       const std::string& reason, const std::string& reference) {
    db_->execute(std::string("INSERT INTO inventory_movements (inventory_id, delta, reason, "
                             "reference, on_hand_after, created_at) SELECT inventory_id, ?, ?, ?, "
                             "on_hand, ") +
                     dialect_.now + " FROM inventory WHERE inventory_id = ?",
                 {delta, reason, reference, inventory_id});
  }

  // Records a checkout attempt's outcome unless it has one; returns 1 if recorded.
  std::int64_t record_attempt(std::string_view attempt_id, std::string_view cart_id,
                              const char* outcome) {
    return db_->execute(std::string("INSERT INTO checkout_attempts (attempt_id, cart_id, outcome, "
                                    "created_at) VALUES (?, ?, ?, ") +
                            dialect_.now + ") ON CONFLICT (attempt_id) DO NOTHING",
                        {std::string(attempt_id), std::string(cart_id), std::string(outcome)});
  }

  std::string attempt_outcome(std::string_view attempt_id) {
    auto r = db_->query("SELECT outcome FROM checkout_attempts WHERE attempt_id = ?",
                        {std::string(attempt_id)});
    return r.empty() ? "" : r.front()[0];
  }

  static OnHandVersion version_of(const StockRow& r) {
    return {r.inventory_id, r.on_hand, r.version};
  }

  std::vector<OnHandVersion> versions(const Order& order) {
    std::vector<OnHandVersion> out;
    for (const OrderLine& l : order.lines) {
      if (auto row = stock_row(l.inventory_id)) out.push_back(version_of(*row));
    }
    return out;
  }

  std::vector<StockRow> rows_where(const std::string& condition, std::vector<SqlParam> params,
                                   const char* suffix = "") {
    std::vector<StockRow> out;
    for (const SqlRow& r : db_->query(std::string(kRowColumns) + " WHERE " + condition +
                                          " ORDER BY product_id, inventory_id" + suffix,
                                      params)) {
      out.push_back(to_stock_row(r));
    }
    return out;
  }

  std::optional<Order> order_where(const char* column, std::string_view value) {
    auto head = db_->query(std::string("SELECT order_id, cart_id, idempotency_key, total_cents, ") +
                               dialect_.created_at + " FROM orders WHERE " + column + " = ?",
                           {std::string(value)});
    if (head.empty()) return std::nullopt;
    const SqlRow& h = head.front();
    Order o{h[0], h[1], h[2], {}, std::stoll(h[3]), h[4]};
    for (const SqlRow& l : db_->query("SELECT product_id, inventory_id, name, quantity, "
                                      "unit_price_cents FROM order_lines WHERE order_id = ? "
                                      "ORDER BY product_id",
                                      {o.order_id})) {
      o.lines.push_back(OrderLine{l[0], l[1], l[2], std::stoll(l[3]), std::stoll(l[4])});
    }
    return o;
  }

  std::unique_ptr<SqlConnection> db_;
  SqlDialect dialect_;
};

}  // namespace

std::string shared_schema(const char* serial, const char* integer, const char* time,
                          const char* now) {
  // reason: opening, initial, sale, admin_set, admin_adjust; reference: the order id or
  // the admin request's key.
  std::string schema = R"sql(
CREATE TABLE IF NOT EXISTS inventory_movements (
  movement_id   $SERIAL PRIMARY KEY,
  inventory_id  TEXT NOT NULL,
  delta         $INTEGER NOT NULL,
  reason        TEXT NOT NULL,
  reference     TEXT NOT NULL,
  on_hand_after $INTEGER NOT NULL,
  created_at    $TIME NOT NULL
);
CREATE INDEX IF NOT EXISTS inventory_movements_row ON inventory_movements (inventory_id);
CREATE TABLE IF NOT EXISTS checkout_attempts (
  attempt_id TEXT PRIMARY KEY,
  cart_id    TEXT NOT NULL,
  outcome    TEXT NOT NULL CHECK (outcome IN ('ordered', 'aborted')),
  created_at $TIME NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_requests (
  request_key  TEXT PRIMARY KEY,
  inventory_id TEXT NOT NULL,
  request      TEXT NOT NULL,
  created_at   $TIME NOT NULL
);
-- A main DB from before the ledger: each row's on_hand opens its ledger.
INSERT INTO inventory_movements (inventory_id, delta, reason, reference, on_hand_after, created_at)
  SELECT inventory_id, on_hand, 'opening', '', on_hand, $NOW FROM inventory i
  WHERE NOT EXISTS (SELECT 1 FROM inventory_movements m WHERE m.inventory_id = i.inventory_id);
-- Last: its presence says the schema is complete (kSchemaMarker).
CREATE TABLE IF NOT EXISTS cartd_heartbeat (id $INTEGER PRIMARY KEY, at $TIME NOT NULL);
)sql";
  auto replace_all = [&schema](std::string_view token, std::string_view value) {
    for (auto at = schema.find(token); at != std::string::npos; at = schema.find(token, at)) {
      schema.replace(at, token.size(), value);
      at += value.size();
    }
  };
  replace_all("$SERIAL", serial);
  replace_all("$INTEGER", integer);
  replace_all("$TIME", time);
  replace_all("$NOW", now);
  return schema;
}

std::unique_ptr<Store> make_sql_store(std::unique_ptr<SqlConnection> connection,
                                      SqlDialect dialect) {
  return std::make_unique<SqlStore>(std::move(connection), dialect);
}

std::unique_ptr<Store> open_store(std::string_view url, int statement_timeout_ms) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (url.starts_with(kSqlite)) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty()) throw StoreError("sqlite: the URL names no file");
    return open_sqlite_store(path, statement_timeout_ms);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return open_postgres_store(std::string(url), statement_timeout_ms);
  }
  // The scheme only: the rest of a URL may carry a password.
  throw StoreError("unsupported database URL scheme '" + std::string(url.substr(0, url.find(':'))) +
                   "' (expected sqlite:PATH or postgresql://...)");
}

}  // namespace cartd::db
