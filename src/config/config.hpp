// config: every setting of cartd, from flags or CARTD_<NAME> environment variables.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "cart/rules.hpp"
#include "http/limits.hpp"

namespace cartd {

struct Config {
  std::string listen = "127.0.0.1:8080";
  std::string redis_url = "redis://127.0.0.1:6379/0";
  std::string db_url = "sqlite:cartd.db";
  std::string catalog;  // empty: no catalog import
  int cart_ttl_seconds = 900;
  int cart_max_lifetime_seconds = 7200;
  unsigned threads = 0;  // 0: one per core
  std::string log_level = "info";
  std::string log_format = "text";  // text or json (one object per line)
  bool access_log = false;          // request lines at info instead of debug
  cart::Limits cart_limits;
  http::ServerLimits http_limits;
  int redis_timeout_ms = 2000;
  int sweep_interval_ms = 500;       // 0 turns the sweeper off (tests of logical expiry)
  bool keyspace_events = true;       // --no-keyspace-events turns the listener off
  int db_sync_interval_ms = 200;     // how often reserved counts are written to the main DB
  int sweep_batch = 500;             // stock rows per key group and sweeper call
  std::string admin_token;           // empty: no admin routes
  std::string web_root;              // empty: serve the storefront built into the binary
  std::string currency = "USD";      // ISO 4217: the one currency of every price in /v1
  int checkout_grace_seconds = 120;  // units stay held at least this long into a checkout
  int checkout_recovery_ms = 30000;  // a checkout this old is settled by recovery
  // Before a checkout writes its order, its Redis writes wait for this many replicas
  // (WAIT, at most checkout_wait_ms); 0: they do not wait.
  int checkout_wait_replicas = 0;
  int checkout_wait_ms = 100;
  int sold_out_memory_ms = 100;    // an event loop remembers a sold-out row this long
  int offer_window_seconds = 120;  // units offered to a waiting cart are held this long
  bool metrics = true;  // --no-metrics: the event loops count nothing (to measure the cost)
  // Live availability (GET /v1/stock/stream): how often watched rows are read, how often
  // idle streams hear a heartbeat, streams per instance, rows per stream.
  int stream_poll_ms = 250;
  int stream_heartbeat_ms = 15000;
  int max_streams = 20000;
  int stream_max_rows = 100;
  int db_threads = 2;
  int db_timeout_ms = 5000;           // a main-DB statement waits for a lock at most this long
  int mirror_sync_ms = 5000;          // how often on_hand is compared with the main DB
  int admin_hold_ms = 60000;          // how long an admin change holds the units it removes
  int db_heartbeat_ms = 1000;         // how often /healthz's DB write probe runs
  int shutdown_grace_ms = 5000;       // SIGTERM: how long requests under way may take to finish
  int fault_after_checkout_step = 0;  // tests only: exit after this checkout step
  // Said at start, once the log is set up (and in its format): settings that work but
  // probably do not do what was meant.
  std::vector<std::string> warnings;

  std::string listen_host() const;
  unsigned short listen_port() const;
};

// Parses flags and environment. Returns nullopt and the exit code when the program
// should stop (--help, or an error already printed).
struct ParsedConfig {
  std::optional<Config> config;
  int exit_code = 0;
  bool check = false;    // `cartd check`: verify the invariants and exit
  bool migrate = false;  // `cartd migrate`: migrate Redis data to this layout and exit
};
ParsedConfig parse_config(int argc, char** argv);

}  // namespace cartd
