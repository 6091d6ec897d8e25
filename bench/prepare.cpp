// prepare: fills a Redis that cartd has set up (library loaded, stock mirrored) with a
// pool of carts for the load tests, through the same function cartd calls, pipelined,
// and reports the memory they take.
// Usage: prepare PORT CARTS LINES_PER_CART ROWS IDS_FILE
//   writes one cart id per line to IDS_FILE; prints {"carts", "lines", "bytes_per_cart"}.
#include <hiredis/hiredis.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cart/session_id.hpp"

namespace {

constexpr int kBatch = 2000;  // commands per pipelined round trip
constexpr const char* kTtlMs = "3600000";

long long used_memory(redisContext* c) {
  auto* r = static_cast<redisReply*>(redisCommand(c, "MEMORY STATS"));
  long long bytes = -1;
  for (std::size_t i = 0; r && i + 1 < r->elements; i += 2) {
    if (std::string(r->element[i]->str) == "total.allocated") bytes = r->element[i + 1]->integer;
  }
  if (r) freeReplyObject(r);
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: prepare PORT CARTS LINES_PER_CART ROWS IDS_FILE\n");
    return 2;
  }
  int port = std::stoi(argv[1]), carts = std::stoi(argv[2]), lines = std::stoi(argv[3]);
  int rows = std::stoi(argv[4]);
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) {
    std::fprintf(stderr, "prepare: cannot connect to Redis on port %d\n", port);
    return 1;
  }
  std::ofstream ids(argv[5]);
  long long before = used_memory(c);
  int pending = 0, errors = 0;
  auto drain = [&] {
    for (; pending > 0; --pending) {
      void* reply = nullptr;
      redisGetReply(c, &reply);
      auto* r = static_cast<redisReply*>(reply);
      if (!r || r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY ||
          std::string(r->element[0]->str) != "ok") {
        ++errors;
      }
      if (r) freeReplyObject(r);
    }
  };
  for (int i = 0; i < carts; ++i) {
    std::string sid = cartd::cart::new_session_id();
    ids << sid << "\n";
    for (int l = 0; l < lines; ++l) {
      int row = (i * lines + l) % rows;
      std::string p = "p" + std::to_string(row), inv = "inv" + std::to_string(row);
      const char* argv_[] = {"FCALL",     "cartd_set_line", "0",         l == 0 ? "" : sid.c_str(),
                             sid.c_str(), p.c_str(),        inv.c_str(), "1",
                             "set",       kTtlMs,           "7200000",   "100",
                             "100"};
      redisAppendCommandArgv(c, 13, argv_, nullptr);
      if (++pending == kBatch) drain();
    }
  }
  drain();
  long long after = used_memory(c);
  std::printf("{\"carts\": %d, \"lines\": %d, \"errors\": %d, \"bytes_per_cart\": %.1f}\n", carts,
              lines, errors, carts ? static_cast<double>(after - before) / carts : 0.0);
  redisFree(c);
  return errors == 0 ? 0 : 1;
}
