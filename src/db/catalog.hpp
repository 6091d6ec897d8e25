// catalog: the JSON file of stock rows a shop starts from (see data/catalog.json).
#pragma once

#include <string>
#include <vector>

#include "db/store.hpp"

namespace cartd::db {

// Reads and checks a catalog file: a JSON array of
// {"inventory_id", "product_id", "name", "price_cents", "on_hand"}. Throws
// std::runtime_error naming the file, the row and the problem.
std::vector<StockRow> load_catalog(const std::string& path);

}  // namespace cartd::db
