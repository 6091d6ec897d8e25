#include "db/catalog.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "base/ids.hpp"

namespace cartd::db {
namespace {

namespace json = boost::json;

std::string id(const json::object& row, std::string_view key, const std::string& where) {
  const json::value* v = row.if_contains(key);
  if (!v || !v->is_string() || !is_valid_id(v->get_string())) {
    throw std::runtime_error(where + ": " + std::string(key) +
                             " must be 1-64 characters of [A-Za-z0-9._-]");
  }
  return std::string(v->get_string());
}

std::int64_t count(const json::object& row, std::string_view key, const std::string& where) {
  const json::value* v = row.if_contains(key);
  if (!v || !v->is_int64() || v->get_int64() < 0) {
    throw std::runtime_error(where + ": " + std::string(key) + " must be a whole number >= 0");
  }
  return v->get_int64();
}

}  // namespace

std::vector<StockRow> load_catalog(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("catalog " + path + ": cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  boost::system::error_code ec;
  json::value doc = json::parse(text.str(), ec);
  if (ec) throw std::runtime_error("catalog " + path + ": not valid JSON: " + ec.message());
  if (!doc.is_array()) throw std::runtime_error("catalog " + path + ": must be a JSON array");

  std::vector<StockRow> rows;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < doc.get_array().size(); ++i) {
    std::string where = "catalog " + path + " row " + std::to_string(i);
    const json::value& v = doc.get_array()[i];
    if (!v.is_object()) throw std::runtime_error(where + ": must be an object");
    const json::object& o = v.get_object();
    StockRow row;
    row.inventory_id = id(o, "inventory_id", where);
    row.product_id = id(o, "product_id", where);
    const json::value* name = o.if_contains("name");
    if (!name || !name->is_string() || name->get_string().empty()) {
      throw std::runtime_error(where + ": name must be a non-empty string");
    }
    row.name = std::string(name->get_string());
    row.price_cents = count(o, "price_cents", where);
    row.on_hand = count(o, "on_hand", where);
    // Optional: units of the row one cart may hold (absent or 0: no limit of its own).
    if (o.contains("max_per_cart")) row.max_per_cart = count(o, "max_per_cart", where);
    if (!seen.insert(row.inventory_id).second) {
      throw std::runtime_error(where + ": inventory_id " + row.inventory_id + " appears twice");
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace cartd::db
