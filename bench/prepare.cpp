// prepare: fills a Redis with carts through the same function cartd calls, pipelined, and
// reports the memory they take (used_memory after - before, per cart: every key and
// index included).
// Usage: prepare PORT CARTS LINES_PER_CART ROWS IDS_FILE [--load-and-mirror] [--spread]
//   writes one cart id per line to IDS_FILE (or nowhere if it is "-");
//   --load-and-mirror: loads cartd's library and mirrors ROWS rows first (inv<i>, p<i>),
//     for a Redis no cartd has set up;
//   --spread: cart deadlines spread evenly over the TTL (as a shop's carts are after a
//     while), rather than all made now;
//   prints {"carts", "lines", "rows", "errors", "bytes_per_cart"}.
#include <hiredis/hiredis.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "base/session_id.hpp"
#include "cart/service.hpp"
#include "functions/keys.hpp"
#include "lua/library.hpp"
#include "redis/sync.hpp"

namespace {

constexpr std::size_t kBatch = 2000;  // commands per pipelined round trip
constexpr long long kTtlMs = 900000;
constexpr int kSpreadSteps = 100;

long long used_memory(redisContext* c) {
  auto* r = static_cast<redisReply*>(redisCommand(c, "INFO memory"));
  long long bytes = -1;
  if (r && r->type == REDIS_REPLY_STRING) {
    const char* at = std::strstr(r->str, "used_memory:");
    if (at) bytes = std::atoll(at + std::strlen("used_memory:"));
  }
  if (r) freeReplyObject(r);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: prepare PORT CARTS LINES_PER_CART ROWS IDS_FILE [--load-and-mirror] "
                 "[--spread]\n");
    return 2;
  }
  int port = std::stoi(argv[1]), carts = std::stoi(argv[2]), lines = std::stoi(argv[3]);
  int rows = std::stoi(argv[4]);
  bool load = false, spread = false;
  for (int i = 6; i < argc; ++i) {
    load = load || std::string(argv[i]) == "--load-and-mirror";
    spread = spread || std::string(argv[i]) == "--spread";
  }
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) {
    std::fprintf(stderr, "prepare: cannot connect to Redis on port %d\n", port);
    return 1;
  }
  int errors = 0;
  std::vector<std::vector<std::string>> pending;
  auto drain = [&] {
    for (const cartd::redis::Reply& r : cartd::redis::sync_pipeline(c, pending)) {
      if (r.is_error() || (r.type == cartd::redis::Reply::Type::array && r.text_at(0) != "ok")) {
        ++errors;
      }
    }
    pending.clear();
  };
  auto send = [&](std::vector<std::string> args) {
    pending.push_back(std::move(args));
    if (pending.size() == kBatch) drain();
  };
  if (load) {
    send({"FUNCTION", "LOAD", "REPLACE", std::string(cartd::scripts::library)});
    for (int row = 0; row < rows; ++row) {
      std::string inv = "inv" + std::to_string(row);
      send({"FCALL", "cartd_mirror", "1", cartd::keys::stock(inv), inv, "p" + std::to_string(row),
            "1000000000", "1", "Item " + std::to_string(row), "1000", "0"});
    }
    drain();
  }

  std::ofstream ids;
  if (std::string(argv[5]) != "-") ids.open(argv[5]);
  long long before = used_memory(c);
  cartd::cart::CartSettings settings;  // the default TTL and its quantum
  std::string quantum = std::to_string(settings.deadline_quantum().count());
  for (int i = 0; i < carts; ++i) {
    std::string sid = cartd::new_session_id();
    if (ids.is_open()) ids << sid << "\n";
    long long ttl = spread ? kTtlMs * (1 + i % kSpreadSteps) / kSpreadSteps : kTtlMs;
    for (int l = 0; l < lines; ++l) {
      int row = (i * lines + l) % rows;
      std::string p = "p" + std::to_string(row), inv = "inv" + std::to_string(row);
      send({"FCALL", "cartd_set_line", "2", cartd::keys::cart(sid), cartd::keys::stock(inv), sid,
            l == 0 ? "1" : "0", p, inv, "1", "set", std::to_string(ttl), "7200000", "100", "100",
            "", quantum});
    }
  }
  drain();
  long long after = used_memory(c);
  std::printf(
      "{\"carts\": %d, \"lines\": %d, \"rows\": %d, \"spread\": %s, \"errors\": %d, "
      "\"bytes_per_cart\": %.1f}\n",
      carts, lines, rows, spread ? "true" : "false", errors,
      carts ? static_cast<double>(after - before) / carts : 0.0);
  redisFree(c);
  return errors == 0 ? 0 : 1;
}
