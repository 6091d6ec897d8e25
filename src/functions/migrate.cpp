#include "functions/migrate.hpp"

#include <set>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "functions/keys.hpp"
#include "redis/sync.hpp"

namespace cartd::functions {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kLock = "cartd:migrating";
constexpr auto kLockTtl = 10min;
constexpr std::size_t kPipeline = 200;  // calls sent before their answers are read
// Client names of an older cartd's connections (this build's start with "cartd2-").
constexpr std::string_view kOldClientPrefix = "name=cartd-";

// The id in a layout-1 key "x:{id}".
std::string id_in(const std::string& key) {
  auto open = key.find('{');
  return key.substr(open + 1, key.size() - open - 2);
}

// Sends one FCALL per id, pipelined, and reads every answer; an error reply throws.
void call_each(redisContext* c, std::string_view function, const std::set<std::string>& ids) {
  std::vector<std::vector<std::string>> batch;
  auto flush = [&] {
    for (const redis::Reply& r : redis::sync_pipeline(c, batch)) {
      if (r.is_error()) throw std::runtime_error("redis: " + std::string(function) + ": " + r.str);
    }
    batch.clear();
  };
  for (const std::string& id : ids) {
    batch.push_back({"FCALL", std::string(function), "0", id});
    if (batch.size() == kPipeline) flush();
  }
  flush();
}

bool is_current(redisContext* c) {
  return redis::sync_run(c, {"FCALL", "cartd_layout", "0"}).str == keys::kLayout;
}

void migrate(redisContext* c, std::ostream& out) {
  // Every layout-1 key names its cart or row in braces after a prefix.
  std::set<std::string> carts, rows;
  std::string cursor = "0";
  do {
    auto r = redis::sync_run(c, {"SCAN", cursor, "MATCH", "*:{*}", "COUNT", "1000"});
    cursor = r.elements[0].str;
    for (const auto& key : r.elements[1].elements) {
      const std::string& k = key.str;
      std::string prefix = k.substr(0, k.find(':'));
      if (prefix == "s" || prefix == "c" || prefix == "co" || prefix == "ck" || prefix == "g") {
        carts.insert(id_in(k));
      } else if (prefix == "st" || prefix == "h" || prefix == "pd") {
        rows.insert(id_in(k));
      }
    }
  } while (cursor != "0");
  out << "migrate: " << carts.size() << " carts and " << rows.size() << " stock rows in layout 1\n";
  // Carts first: their holds leave the old rows with them.
  call_each(c, "cartd_migrate_cart", carts);
  call_each(c, "cartd_migrate_row", rows);
  // The old indexes hold nothing the new layout needs; the old event stream stays for
  // its consumers to finish reading (cart-events; new events go to {c<n>}#events).
  redis::sync_run(c, {"DEL", "dl", "dirty", "checkouts"});
  redis::sync_run(c, {"SET", std::string(keys::kLayoutKey), std::string(keys::kLayout)});
  out << "migrate: done; Redis holds layout " << keys::kLayout << "\n";
}

}  // namespace

LayoutResult ensure_layout(const redis::Endpoint& endpoint, std::string_view library,
                           std::chrono::milliseconds wait, std::ostream& out) {
  auto c = redis::sync_connect(endpoint, 5s);
  redis::sync_run(c.get(), {"CLIENT", "SETNAME", "cartd2-migrate"});
  // An older library defines the same function names: it must go before ours loads.
  // Its instances cannot load it again while ours is there (the names clash).
  auto libraries = redis::sync_run(c.get(), {"FUNCTION", "LIST", "LIBRARYNAME", "cartd"});
  bool old_library = false;
  for (const auto& lib : libraries.elements) {
    if (lib.elements.size() > 1 && lib.elements[1].str == "cartd") old_library = true;
  }
  if (!old_library) {
    redis::sync_run(c.get(), {"FUNCTION", "LOAD", "REPLACE", std::string(library)});
    if (is_current(c.get())) return LayoutResult::current;
  }
  auto clients = redis::sync_run(c.get(), {"CLIENT", "LIST"}).str;
  if (clients.find(kOldClientPrefix) != std::string::npos) {
    out << "migrate: an older cartd is connected to this Redis (client names cartd-...): stop "
           "every older instance first; nothing was changed\n";
    return LayoutResult::refused;
  }
  if (old_library) {
    redis::sync_run(c.get(), {"FUNCTION", "DELETE", "cartd"});
    redis::sync_run(c.get(), {"FUNCTION", "LOAD", "REPLACE", std::string(library)});
    if (is_current(c.get())) return LayoutResult::current;
  }
  // One instance migrates; the others wait for the layout mark.
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (redis::sync_run(c.get(), {"SET", std::string(kLock), "1", "NX", "PX",
                                   std::to_string(std::chrono::milliseconds(kLockTtl).count())})
             .is_nil()) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("another cartd's migration did not finish in time");
    }
    std::this_thread::sleep_for(200ms);
    if (is_current(c.get())) return LayoutResult::current;
  }
  try {
    if (is_current(c.get())) {
      redis::sync_run(c.get(), {"DEL", std::string(kLock)});
      return LayoutResult::current;
    }
    migrate(c.get(), out);
  } catch (...) {
    redis::sync_command(c.get(), {"DEL", std::string(kLock)});
    throw;
  }
  redis::sync_run(c.get(), {"DEL", std::string(kLock)});
  return LayoutResult::migrated;
}

redis::SetupStep check_layout_then(redis::SetupStep next) {
  return [next = std::move(next)](redis::Client& client, std::function<void(bool)> done) {
    client.setup_command({"FCALL", "cartd_layout", "0"}, [&client, next, done](redis::Result r) {
      if (!r || r->is_error()) return done(false);
      if (r->str != keys::kLayout) {
        spdlog::error(
            "redis: holds the data of an older cartd: run `cartd migrate` (stop every "
            "older cartd first), or restart this one");
        return done(false);
      }
      next(client, done);
    });
  };
}

}  // namespace cartd::functions
