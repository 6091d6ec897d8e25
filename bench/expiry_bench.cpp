// expiry_bench: how fast a mass expiry clears. 200 000 live carts, 20 000 of which
// expire in the same second; measures the time from that deadline until
//   - their units are available (logical expiry: expected 0),
//   - every one of those carts is deleted (by Redis itself, at its deadline),
//   - the main DB's reserved counts show it.
// Starts its own redis-server and cartd on loopback; prints a small table.
// Usage: expiry_bench [live_carts] [expiring_carts]
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "base/session_id.hpp"
#include "functions/keys.hpp"
#include "harness.hpp"

using namespace cartd;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kRows = 1000;
constexpr int kBatch = 2000;  // commands per pipelined round trip

std::string catalog() {
  std::string out = "[";
  for (int i = 0; i < kRows; ++i) {
    if (i) out += ",";
    out += R"({"inventory_id":"inv-)" + std::to_string(i) + R"(","product_id":"p-)" +
           std::to_string(i) + R"(","name":"Item","price_cents":100,"on_hand":1000000})";
  }
  return out + "]";
}

long long server_ms(redisContext* c) {
  auto* r = static_cast<redisReply*>(redisCommand(c, "TIME"));
  long long ms = std::stoll(r->element[0]->str) * 1000 + std::stoll(r->element[1]->str) / 1000;
  freeReplyObject(r);
  return ms;
}

// Creates `count` one-line carts holding 1 unit each, all with the deadline `deadline_ms`
// (server time), through the same function cartd calls, pipelined.
void create_carts(int port, int count, long long deadline_ms, int offset) {
  redisContext* c = redisConnect("127.0.0.1", port);
  for (int done = 0; done < count;) {
    int n = std::min(kBatch, count - done);
    std::string ttl = std::to_string(deadline_ms - server_ms(c));
    for (int i = 0; i < n; ++i) {
      int row = (offset + done + i) % kRows;
      std::string sid = cartd::new_session_id();
      std::string p = "p-" + std::to_string(row), inv = "inv-" + std::to_string(row);
      // A 1 ms quantum: every cart's deadline is exactly `deadline_ms` (give or take the
      // few ms between its batch's clock read and the call).
      std::string cart = keys::cart(sid), row_key = keys::stock(inv);
      const char* argv[] = {"FCALL",
                            "cartd_set_line",
                            "2",
                            cart.c_str(),
                            row_key.c_str(),
                            sid.c_str(),
                            "1",
                            p.c_str(),
                            inv.c_str(),
                            "1",
                            "set",
                            ttl.c_str(),
                            "86400000",
                            "100",
                            "100",
                            "",
                            "1"};
      redisAppendCommandArgv(c, 17, argv, nullptr);
    }
    for (int i = 0; i < n; ++i) {
      void* reply = nullptr;
      redisGetReply(c, &reply);
      freeReplyObject(reply);
    }
    done += n;
  }
  redisFree(c);
}

long long total_reserved_logical(test::RedisServer& redis) {
  long long sum = 0;
  for (int i = 0; i < kRows; ++i) {
    std::string inv = "inv-" + std::to_string(i);
    sum +=
        redis.command({"FCALL", "cartd_stock", "1", keys::stock(inv), inv}).int_at(2).value_or(0);
  }
  return sum;
}

}  // namespace

int run(int argc, char** argv) {
  int live = argc > 1 ? std::stoi(argv[1]) : 200000;
  int expiring = argc > 2 ? std::stoi(argv[2]) : 20000;
  test::RedisServer redis;
  test::Cartd cartd(redis, catalog(), {"--threads", "1", "--log-level", "warn"});

  redisContext* clock = redisConnect("127.0.0.1", redis.port());
  auto t0 = Clock::now();
  long long start = server_ms(clock);
  create_carts(redis.port(), live - expiring, start + 3600'000, 0);
  long long deadline = server_ms(clock) + 3000;  // every expiring cart's deadline
  create_carts(redis.port(), expiring, deadline, live - expiring);
  std::printf("created %d carts (%d expiring together) in %.1f s\n", live, expiring,
              std::chrono::duration<double>(Clock::now() - t0).count());

  // Each set_line reads the clock itself, a few ms after its batch's TTL was computed:
  // the deadlines spread over a few ms past `deadline`. Measure from 50 ms after it.
  while (server_ms(clock) <= deadline + 50) std::this_thread::sleep_for(1ms);
  auto at_deadline = Clock::now();
  long long reserved_now = total_reserved_logical(redis);
  double available_after = std::chrono::duration<double>(Clock::now() - at_deadline).count();
  bool logical_ok = reserved_now == live - expiring;

  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - at_deadline).count(); };
  double deleted_after = -1, db_after = -1;
  while (elapsed() < 120 && (deleted_after < 0 || db_after < 0)) {
    if (deleted_after < 0 &&
        static_cast<long long>(redis.command({"KEYS", "{c*}:*"}).elements.size()) ==
            live - expiring) {
      deleted_after = elapsed();
    }
    if (db_after < 0 && test::sqlite_int(cartd.db_path(), "SELECT SUM(reserved) FROM inventory") ==
                            live - expiring) {
      db_after = elapsed();
    }
    std::this_thread::sleep_for(10ms);
  }
  std::printf("\n| measure (from the shared deadline) | seconds |\n|---|---|\n");
  std::printf("| units available again (logical expiry; read of all %d rows took) | %.3f%s |\n",
              kRows, available_after, logical_ok ? "" : " (MISMATCH)");
  std::printf("| all %d expired carts deleted | %.3f |\n", expiring, deleted_after);
  std::printf("| main DB reserved counts show it | %.3f |\n", db_after);
  return logical_ok && deleted_after >= 0 && db_after >= 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "expiry_bench: %s\n", e.what());
    return 1;
  }
}
