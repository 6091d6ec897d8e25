#include "db/sql_store.hpp"

namespace cartd::db {
namespace {

constexpr const char* kRowColumns =
    "SELECT inventory_id, product_id, name, price_cents, on_hand, reserved FROM inventory";

StockRow to_stock_row(const SqlRow& r) {
  return StockRow{r[0], r[1], r[2], std::stoll(r[3]), std::stoll(r[4]), std::stoll(r[5])};
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

  void ping() override { db_->query("SELECT 1", {}); }

  PlacedOrder place_order(const Order& draft) override {
    Transaction tx(*this);
    std::int64_t inserted = db_->execute(
        std::string("INSERT INTO orders (order_id, cart_id, idempotency_key, total_cents, "
                    "created_at) VALUES (?, ?, ?, ?, ") +
            dialect_.now + ") ON CONFLICT (cart_id) DO NOTHING",
        {draft.order_id, draft.cart_id, draft.idempotency_key, draft.total_cents});
    if (inserted == 0) {  // the cart has its order already
      auto existing = order_where("cart_id", draft.cart_id);
      tx.commit();
      return {std::move(*existing), false};
    }
    for (const OrderLine& l : draft.lines) {
      db_->execute(
          "INSERT INTO order_lines (order_id, product_id, inventory_id, name, quantity, "
          "unit_price_cents, line_total_cents) VALUES (?, ?, ?, ?, ?, ?, ?)",
          {draft.order_id, l.product_id, l.inventory_id, l.name, l.quantity, l.unit_price_cents,
           l.line_total_cents()});
      std::int64_t sold =
          db_->execute(std::string("UPDATE inventory SET on_hand = on_hand - ?, updated_at = ") +
                           dialect_.now + " WHERE inventory_id = ? AND on_hand >= ?",
                       {l.quantity, l.inventory_id, l.quantity});
      if (sold != 1) {
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

  bool insert_stock_row(const StockRow& r) override { return insert_row(r) == 1; }

  std::optional<StockRow> stock_row(std::string_view inventory_id) override {
    auto found = rows_where("inventory_id = ?", {std::string(inventory_id)});
    if (found.empty()) return std::nullopt;
    return found.front();
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
    return rows_where(
        "product_id IN (SELECT DISTINCT product_id FROM inventory WHERE product_id > ? "
        "ORDER BY product_id LIMIT ?)",
        {std::string(after), static_cast<std::int64_t>(limit)});
  }

  std::vector<StockRow> product(std::string_view product_id) override {
    return rows_where("product_id = ?", {std::string(product_id)});
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

   private:
    SqlStore& s_;
    bool done_ = false;
  };

  std::int64_t insert_row(const StockRow& r) {
    return db_->execute(
        "INSERT INTO inventory (inventory_id, product_id, name, price_cents, on_hand) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (inventory_id) DO NOTHING",
        {r.inventory_id, r.product_id, r.name, r.price_cents, r.on_hand});
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

  // Sets on_hand to `expression` (its ? is `value`) unless that would be negative.
  OnHandChange change_on_hand(const std::string& expression, std::string_view inventory_id,
                              std::int64_t value, StockRow& row) {
    Transaction tx(*this);
    if (rows_where("inventory_id = ?", {std::string(inventory_id)}, dialect_.for_update).empty()) {
      return OnHandChange::unknown_inventory;
    }
    std::int64_t changed = db_->execute("UPDATE inventory SET on_hand = " + expression +
                                            ", updated_at = " + dialect_.now +
                                            " WHERE inventory_id = ? AND " + expression + " >= 0",
                                        {value, std::string(inventory_id), value});
    if (changed != 1) return OnHandChange::negative;
    row = *stock_row(inventory_id);
    tx.commit();
    return OnHandChange::ok;
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

std::unique_ptr<Store> make_sql_store(std::unique_ptr<SqlConnection> connection,
                                      SqlDialect dialect) {
  return std::make_unique<SqlStore>(std::move(connection), dialect);
}

std::unique_ptr<Store> open_store(std::string_view url) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (url.starts_with(kSqlite)) {
    std::string path(url.substr(kSqlite.size()));
    if (path.empty()) throw StoreError("sqlite: the URL names no file");
    return open_sqlite_store(path);
  }
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    return open_postgres_store(std::string(url));
  }
  throw StoreError("unsupported database URL (expected sqlite:PATH or postgresql://...): " +
                   std::string(url));
}

}  // namespace cartd::db
