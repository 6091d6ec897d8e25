#include "app/check.hpp"

#include <hiredis/hiredis.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "db/store.hpp"
#include "functions/keys.hpp"
#include "redis/connect.hpp"
#include "redis/sync.hpp"
#include "redis/url.hpp"
#include "stock/service.hpp"

namespace cartd::stock {
namespace {

constexpr const char* kScanBatch = "1000";

// One command; an error reply ends the check.
redis::Reply run(redisContext* c, const std::vector<std::string>& args) {
  return redis::sync_run(c, args);
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

// The id of a data key "{tag}:<id>".
std::string id_of(const std::string& key) {
  return key.substr(key.find("}:") + 2);
}

// Units per bucket deadline.
using Buckets = std::map<std::int64_t, std::int64_t>;

}  // namespace

int check_invariants(const Config& config, std::ostream& out) {
  auto seeds = redis::parse_urls(config.redis_url);
  if (!seeds) {
    out << "error: --redis: " << seeds.error() << "\n";
    return -1;
  }
  // Every node that holds data: the standalone Redis, or each primary of a cluster (a
  // key is read on the node that SCAN found it on, which owns its slot, and so the
  // keys that share its tag).
  auto timeout = std::chrono::milliseconds(config.redis_timeout_ms);
  std::vector<redis::SyncContext> nodes;
  try {
    if (redis::detect_mode(*seeds, timeout) == redis::Mode::cluster) {
      for (const redis::Shard& shard : redis::sync_shards(*seeds, timeout)) {
        redis::Endpoint e = seeds->front();
        e.host = shard.primary.host;
        e.port = shard.primary.port;
        nodes.push_back(redis::sync_connect(e, timeout));
      }
    } else {
      nodes.push_back(redis::sync_connect(seeds->front(), timeout));
    }
  } catch (const std::exception&) {
    nodes.clear();
  }
  if (nodes.empty()) {
    out << "error: cannot connect to Redis at " << redis::redact_password(config.redis_url) << "\n";
    return -1;
  }
  int violations = 0, warnings = 0;
  auto fail = [&](const std::string& what) {
    out << "FAIL " << what << "\n";
    ++violations;
  };
  try {
    auto time = run(nodes.front().get(), {"TIME"});
    std::int64_t now =
        std::stoll(time.elements[0].str) * 1000 + std::stoll(time.elements[1].str) / 1000;

    std::map<std::string, db::StockRow> db_rows;
    auto store = db::open_store(config.db_url, config.db_timeout_ms);
    for (auto& row : store->stock_rows()) db_rows[row.inventory_id] = row;
    // The ledger: drift that Redis and the DB would agree on shows here.
    for (const std::string& violation : store->audit()) fail("ledger: " + violation);

    // What the holds must be: every live cart's lines in the bucket of its deadline, every
    // admin change's hold (its pending mark) in the bucket of its own, and every live
    // offer to a cart that waited in the bucket of the offer's deadline.
    std::map<std::string, Buckets> expected;
    std::size_t carts = 0;
    for (auto& node : nodes) {
      redisContext* c = node.get();
      for (const std::string& key : scan(c, "{c*}:*")) {
        std::string sid = id_of(key);
        auto deadline = run(c, {"PEXPIRETIME", key}).integer;
        if (deadline == -1) {
          fail("cart " + sid + ": no deadline: Redis would never delete it");
          continue;
        }
        if (deadline < now) continue;  // expired: Redis deletes it; its holds have ended
        ++carts;
        auto fields = run(c, {"HGETALL", key});
        for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
          const std::string& field = fields.elements[i].str;
          if (field == "@" || field == "!" || field == "~" || field.starts_with('?')) continue;
          const std::string& line = fields.elements[i + 1].str;
          auto space = line.find(' ');
          expected[line.substr(0, space)][deadline] += std::stoll(line.substr(space + 1));
        }
      }
    }

    std::size_t rows = 0;
    for (auto& node : nodes) {
      redisContext* c = node.get();
      for (const std::string& key : scan(c, "{s*}:*")) {
        ++rows;
        std::string inv = id_of(key);
        auto pending = run(c, {"ZRANGE", keys::pending(inv), std::to_string(now), "+inf", "BYSCORE",
                               "WITHSCORES"});
        for (std::size_t i = 0; i + 1 < pending.elements.size(); i += 2) {
          const std::string& member = pending.elements[i].str;
          if (!member.starts_with(kAdminHoldPrefix)) continue;  // a checkout: its cart holds
          expected[inv][std::stoll(pending.elements[i + 1].str)] +=
              std::stoll(member.substr(member.rfind(':') + 1));
        }
        auto offers = run(c, {"HGETALL", keys::offers(inv)});
        for (std::size_t i = 0; i + 1 < offers.elements.size(); i += 2) {
          const std::string& offer = offers.elements[i + 1].str;  // "quantity deadline"
          auto space = offer.find(' ');
          std::int64_t deadline = std::stoll(offer.substr(space + 1));
          if (deadline >= now) expected[inv][deadline] += std::stoll(offer.substr(0, space));
        }
        auto fields = run(c, {"HGETALL", key});
        std::int64_t on_hand = 0, reserved = 0, all = 0, live = 0;
        Buckets buckets;
        for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
          const std::string& field = fields.elements[i].str;
          std::string value = fields.elements[i + 1].str;
          if (field == "oh") on_hand = std::stoll(value);
          if (field == "r") reserved = std::stoll(value);
          if (field.starts_with('t')) {
            std::int64_t deadline = std::stoll(field.substr(1)), units = std::stoll(value);
            all += units;
            if (deadline >= now) {
              live += units;
              buckets[deadline] = units;
            }
          }
        }
        if (reserved != all) {
          fail(inv + ": reserved " + std::to_string(reserved) + " but the buckets sum to " +
               std::to_string(all));
        }
        if (buckets != expected[inv]) {
          std::int64_t held = 0;
          for (auto& [deadline, units] : expected[inv]) held += units;
          fail(inv + ": the live buckets hold " + std::to_string(live) + " units, the carts and " +
               "admin changes that hold them " + std::to_string(held) + " (or at other deadlines)");
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
          if (!pending.elements.empty()) {
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
    }
    for (auto& [inv, row] : db_rows) fail(inv + ": in the main DB but not mirrored in Redis");
    out << (violations == 0 ? "ok" : "FAILED") << ": " << rows << " stock rows, " << carts
        << " carts, " << violations << " violations, " << warnings << " warnings\n";
  } catch (const std::exception& e) {
    out << "error: " << e.what() << "\n";
    return -1;
  }
  return violations;
}

}  // namespace cartd::stock
