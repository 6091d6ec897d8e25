#include "stock/check.hpp"

#include <hiredis/hiredis.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "cart/keys.hpp"
#include "db/store.hpp"
#include "redis/sync.hpp"
#include "redis/url.hpp"
#include "stock/service.hpp"

namespace cartd::stock {
namespace {

constexpr const char* kScanBatch = "1000";

using Context = std::unique_ptr<redisContext, decltype(&redisFree)>;

// One command; an error reply ends the check.
redis::Reply run(redisContext* c, const std::vector<std::string>& args) {
  redis::Reply r = redis::sync_command(c, args);
  if (r.is_error()) throw std::runtime_error("redis: " + r.str);
  return r;
}

// Every key matching `pattern`, by SCAN (never KEYS: a shop's Redis stays responsive).
std::vector<std::string> scan(redisContext* c, const std::string& pattern) {
  std::vector<std::string> keys;
  std::string cursor = "0";
  do {
    auto r = run(c, {"SCAN", cursor, "MATCH", pattern, "COUNT", kScanBatch});
    cursor = r.elements[0].str;
    for (const auto& key : r.elements[1].elements) keys.push_back(key.str);
  } while (cursor != "0");
  return keys;
}

// The id inside a key "x:{id}".
std::string id_of(const std::string& key) {
  auto open = key.find('{');
  return key.substr(open + 1, key.size() - open - 2);
}

}  // namespace

int check_invariants(const Config& config, std::ostream& out) {
  auto endpoint = redis::parse_url(config.redis_url);
  if (!endpoint) {
    out << "error: --redis: " << endpoint.error() << "\n";
    return -1;
  }
  Context c(redisConnect(endpoint->host.c_str(), endpoint->port), redisFree);
  if (!c || c->err) {
    out << "error: cannot connect to Redis at " << redis::redact_password(config.redis_url) << "\n";
    return -1;
  }
  int violations = 0, warnings = 0;
  auto fail = [&](const std::string& what) {
    out << "FAIL " << what << "\n";
    ++violations;
  };
  try {
    if (!endpoint->password.empty()) {
      if (endpoint->user.empty()) {
        run(c.get(), {"AUTH", endpoint->password});
      } else {
        run(c.get(), {"AUTH", endpoint->user, endpoint->password});
      }
    }
    run(c.get(), {"SELECT", std::to_string(endpoint->db)});
    auto time = run(c.get(), {"TIME"});
    std::int64_t now =
        std::stoll(time.elements[0].str) * 1000 + std::stoll(time.elements[1].str) / 1000;

    std::map<std::string, db::StockRow> db_rows;
    auto store = db::open_store(config.db_url, config.db_timeout_ms);
    for (auto& row : store->stock_rows()) db_rows[row.inventory_id] = row;
    // The ledger: drift that Redis and the DB would agree on shows here.
    for (const std::string& violation : store->audit()) fail("ledger: " + violation);

    // Stock rows and their holds.
    std::set<std::string> carts_with_holds;
    std::size_t rows = 0;
    for (const std::string& key : scan(c.get(), "st:{*}")) {
      ++rows;
      std::string inv = id_of(key);
      auto st = run(c.get(), {"HMGET", key, "oh", "r"});
      std::int64_t on_hand = st.int_at(0).value_or(0);
      std::int64_t reserved = st.int_at(1).value_or(0);
      auto holds = run(c.get(), {"ZRANGE", "h:{" + inv + "}", "0", "-1", "WITHSCORES"});
      std::int64_t all = 0, live = 0;
      for (std::size_t i = 0; i + 1 < holds.elements.size(); i += 2) {
        const std::string& member = holds.elements[i].str;
        auto colon = member.rfind(':');
        std::int64_t qty = std::stoll(member.substr(colon + 1));
        bool alive = std::stoll(holds.elements[i + 1].str) >= now;
        all += qty;
        if (alive) {
          live += qty;
          std::string sid = member.substr(0, colon);
          // An admin change's hold has no cart; it ends with the change or at its deadline.
          if (sid.starts_with(kAdminHoldPrefix)) continue;
          carts_with_holds.insert(sid);
          if (run(c.get(), {"EXISTS", cart::cart_key(sid)}).integer == 0) {
            out << "warn " << inv << ": a live hold of " << qty << " for cart " << sid
                << " whose cart is gone (it frees itself at its deadline)\n";
            ++warnings;
          }
        }
      }
      if (reserved != all) {
        fail(inv + ": reserved " + std::to_string(reserved) + " but the holds sum to " +
             std::to_string(all));
      }
      if (on_hand - live < 0) {
        fail(inv + ": oversold: " + std::to_string(live) + " units held, " +
             std::to_string(on_hand) + " on hand");
      }
      auto db = db_rows.find(inv);
      if (db == db_rows.end()) {
        fail(inv + ": in Redis but not in the main DB");
        continue;
      }
      if (db->second.on_hand != on_hand) {
        std::string what = inv + ": on_hand " + std::to_string(on_hand) + " in Redis, " +
                           std::to_string(db->second.on_hand) + " in the main DB";
        // A checkout or admin change under way (its Redis step still to run, or waiting
        // for recovery) leaves the mirror behind on purpose: see mirror_on_hand.
        if (run(c.get(), {"ZCOUNT", "pd:{" + inv + "}", std::to_string(now), "+inf"}).integer > 0) {
          out << "warn " << what << " (a change under way; its own step will settle it)\n";
          ++warnings;
        } else {
          fail(what);
        }
      }
      if (db->second.reserved != live) {
        out << "warn " << inv << ": reserved " << live << " in Redis, " << db->second.reserved
            << " in the main DB (the DB writer catches up within a second of quiet)\n";
        ++warnings;
      }
      db_rows.erase(db);
    }
    for (auto& [inv, row] : db_rows) fail(inv + ": in the main DB but not mirrored in Redis");

    // Carts: each must have a live session or an index entry, or nothing releases it.
    std::size_t carts = 0;
    for (const std::string& key : scan(c.get(), "c:{*}")) {
      ++carts;
      std::string sid = id_of(key);
      bool live = run(c.get(), {"EXISTS", cart::session_key(sid)}).integer == 1;
      bool indexed = !run(c.get(), {"ZSCORE", "dl", sid}).is_nil();
      if (!live && !indexed)
        fail("cart " + sid + ": no session and no deadline entry: it would never be released");
    }
    out << (violations == 0 ? "ok" : "FAILED") << ": " << rows << " stock rows, " << carts
        << " carts, " << violations << " violations, " << warnings << " warnings\n";
  } catch (const std::exception& e) {
    out << "error: " << e.what() << "\n";
    return -1;
  }
  return violations;
}

}  // namespace cartd::stock
