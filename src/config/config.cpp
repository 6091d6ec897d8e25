#include "config/config.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

namespace cartd {
namespace {

// CARTD_ + the flag's name in upper case with '-' as '_': --cart-ttl -> CARTD_CART_TTL.
std::string env_name(std::string flag) {
  std::transform(flag.begin(), flag.end(), flag.begin(), [](char c) {
    return c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  });
  return "CARTD_" + flag;
}

template <typename T>
CLI::Option* option(CLI::App& app, const std::string& flag, T& value, const std::string& help) {
  return app.add_option("--" + flag, value, help)
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // the last one given wins
}

// The arguments as CLI11 parses them: each CARTD_<NAME> of the environment as a flag,
// then the command line. Flags given later win, and a config file only fills what is
// still unset, so the order of precedence is: command line, environment, config file,
// defaults. (CLI11's own envname() would rank the config file above the environment.)
std::vector<std::string> with_environment(const CLI::App& app, int argc, char** argv) {
  std::vector<std::string> args{argv[0]};
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_lnames().empty()) continue;
    const std::string& name = opt->get_lnames().front();
    if (name == "help" || name == "version" || name == "config") continue;
    const char* value = std::getenv(env_name(name).c_str());
    if (value == nullptr || *value == '\0') continue;
    if (opt->get_type_size() == 0) {  // a flag: set by any value but false/0
      std::string v(value);
      if (v != "0" && v != "false") args.push_back("--" + name);
    } else {
      args.push_back("--" + name + "=" + value);
    }
  }
  args.insert(args.end(), argv + 1, argv + argc);
  return args;
}

}  // namespace

std::string Config::listen_host() const {
  return listen.substr(0, listen.rfind(':'));
}

unsigned short Config::listen_port() const {
  return static_cast<unsigned short>(std::stoi(listen.substr(listen.rfind(':') + 1)));
}

ParsedConfig parse_config(int argc, char** argv) {
  Config c;
  CLI::App app{"cartd: carts and stock holds for online shops"};
  app.footer(
      "Every flag can also be set as CARTD_<NAME> (--cart-ttl: CARTD_CART_TTL) or in the "
      "--config file (cart-ttl = 900). The command line wins over the environment, which "
      "wins over the file.");
  app.set_version_flag(
      "--version", std::string("cartd ") + CARTD_VERSION + " (commit " + CARTD_GIT_COMMIT + ")");
  app.set_config("--config", "", "read flags from this TOML file (names as the flags')");
  // A misspelt name in the file would otherwise be ignored and its default used unseen.
  app.allow_config_extras(CLI::config_extras_mode::error);
  option(app, "listen", c.listen, "HOST:PORT to serve HTTP on");
  option(app, "redis", c.redis_url, "redis://[user:password@]host:port[/db]");
  option(app, "db", c.db_url,
         "main database: sqlite:PATH, or postgresql://user:password@host:port/dbname when "
         "several instances share it");
  option(app, "catalog", c.catalog, "JSON catalog of stock rows to add to the database at start");
  option(app, "cart-ttl", c.cart_ttl_seconds, "seconds a cart holds stock after its last change")
      ->check(CLI::Range(1, 86400 * 30));
  option(app, "cart-max-lifetime", c.cart_max_lifetime_seconds,
         "seconds a cart may hold stock in all")
      ->check(CLI::Range(1, 86400 * 365));
  option(app, "threads", c.threads, "event loops (0: one per core)")->check(CLI::Range(0, 256));
  option(app, "log-level", c.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  option(app, "log-format", c.log_format,
         "text (one line per event) or json (one JSON object per line, for log shippers)")
      ->check(CLI::IsMember({"text", "json"}));
  // A flag, not on by default: a line per request costs a write to stderr under a lock
  // shared by every event loop, at tens of thousands of requests a second.
  app.add_flag("--access-log", c.access_log,
               "log every answered request at info level (without it, at debug)");
  option(app, "sold-out-memory-ms", c.sold_out_memory_ms,
         "milliseconds an event loop remembers a row that had nothing available, refusing adds "
         "to it without asking Redis (0: off)")
      ->check(CLI::Range(0, 10000));
  option(app, "offer-window", c.offer_window_seconds,
         "seconds units that come back to a sold-out row stay held for the cart first in its "
         "waitlist, before they pass to the next")
      ->check(CLI::Range(1, 86400));
  option(app, "stream-poll-ms", c.stream_poll_ms,
         "milliseconds between reads of the stock rows open streams watch (a row's changes "
         "reach its pages at most this often)")
      ->check(CLI::Range(20, 10000));
  option(app, "stream-heartbeat-ms", c.stream_heartbeat_ms,
         "milliseconds between heartbeat comments on idle streams, so proxies keep them open")
      ->check(CLI::Range(1000, 300000));
  option(app, "max-streams", c.max_streams,
         "open availability streams per instance (each is a connection: see --max-connections)")
      ->check(CLI::Range(0, 1000000));
  option(app, "stream-max-rows", c.stream_max_rows, "stock rows one stream may watch")
      ->check(CLI::Range(1, 10000));
  option(app, "max-line-quantity", c.cart_limits.max_line_quantity, "units per cart line")
      ->check(CLI::Range(1, 1000000));
  option(app, "max-lines", c.cart_limits.max_lines, "lines per cart")->check(CLI::Range(1, 10000));
  option(app, "max-body-bytes", c.http_limits.max_body_bytes, "largest request body (413)")
      ->check(CLI::Range(64, 1 << 24));
  option(app, "max-header-bytes", c.http_limits.max_header_bytes, "largest request head (431)")
      ->check(CLI::Range(256, 1 << 20));
  int idle = static_cast<int>(c.http_limits.idle_timeout.count());
  option(app, "idle-timeout", idle, "seconds an idle keep-alive connection stays open")
      ->check(CLI::Range(1, 3600));
  int first_request_ms = static_cast<int>(c.http_limits.first_request_timeout.count());
  option(app, "first-request-timeout-ms", first_request_ms,
         "milliseconds a new connection has to send its whole first request")
      ->check(CLI::Range(100, 3600000));
  option(app, "max-connections", c.http_limits.max_connections,
         "open connections in all; at the cap the longest-idle one is closed for a new one "
         "(0: the open-file limit minus a reserve)")
      ->check(CLI::Range(0, 10000000));
  option(app, "redis-timeout-ms", c.redis_timeout_ms,
         "milliseconds before an unanswered Redis command fails (503)")
      ->check(CLI::Range(10, 600000));
  option(app, "sweep-interval-ms", c.sweep_interval_ms,
         "milliseconds between sweeps that drop expired holds on rows no request touches (0: no "
         "sweeper)")
      ->check(CLI::Range(0, 3600000));
  option(app, "sweep-batch", c.sweep_batch, "stock rows per key group and sweep call")
      ->check(CLI::Range(1, 100000));
  option(app, "db-sync-interval-ms", c.db_sync_interval_ms,
         "milliseconds between writes of reserved counts to the main DB")
      ->check(CLI::Range(10, 600000));
  option(app, "admin-token", c.admin_token,
         "bearer token for the admin stock routes (unset: no admin routes)");
  app.add_option("--cors-origin", c.http_limits.cors_origins,
                 "an origin (https://shop.example) whose pages may call the API from a "
                 "browser; repeat it, or * for any")
      ->delimiter(',');
  option(app, "currency", c.currency,
         "ISO 4217 code of the shop's currency, named beside every price and total in /v1")
      ->check(CLI::Validator(
          [](const std::string& code) -> std::string {
            bool ok = code.size() == 3 && std::all_of(code.begin(), code.end(), [](char ch) {
                        return ch >= 'A' && ch <= 'Z';
                      });
            return ok ? "" : "a currency is 3 upper-case letters (ISO 4217), not " + code;
          },
          "AAA"));
  option(app, "web-root", c.web_root,
         "serve the storefront from this folder (unset: the copy built into cartd)");
  option(app, "checkout-grace", c.checkout_grace_seconds,
         "seconds a checkout keeps its units held while it writes the order")
      ->check(CLI::Range(5, 86400));
  option(app, "checkout-wait-replicas", c.checkout_wait_replicas,
         "replicas a checkout's Redis writes wait for (WAIT) before the order is written; 0: none")
      ->check(CLI::Range(0, 16));
  option(app, "checkout-wait-ms", c.checkout_wait_ms,
         "milliseconds a checkout waits at most for --checkout-wait-replicas")
      ->check(CLI::Range(1, 10000));
  option(app, "checkout-recovery-ms", c.checkout_recovery_ms,
         "milliseconds after which an unfinished checkout is settled by recovery")
      ->check(CLI::Range(100, 3600000));
  option(app, "db-threads", c.db_threads, "threads that run main-DB work for requests")
      ->check(CLI::Range(1, 64));
  option(app, "db-timeout-ms", c.db_timeout_ms,
         "milliseconds a main-DB statement may wait for a lock (or run) before it fails")
      ->check(CLI::Range(10, 600000));
  option(app, "mirror-sync-ms", c.mirror_sync_ms,
         "milliseconds between comparisons of each row's on_hand and reserved count in Redis with "
         "the main DB")
      ->check(CLI::Range(100, 3600000));
  option(app, "admin-hold-ms", c.admin_hold_ms,
         "milliseconds an admin change that lowers on_hand holds the units it removes")
      ->check(CLI::Range(1000, 3600000));
  option(app, "db-heartbeat-ms", c.db_heartbeat_ms,
         "milliseconds between write probes of the main DB (what /healthz reports)")
      ->check(CLI::Range(100, 600000));
  option(app, "shutdown-grace-ms", c.shutdown_grace_ms,
         "on SIGTERM, milliseconds requests under way may take to finish")
      ->check(CLI::Range(0, 600000));
  option(app, "fault-after-checkout-step", c.fault_after_checkout_step,
         "tests only: exit the process right after checkout step 1, 2 or 3")
      ->check(CLI::Range(0, 3))
      ->group("");  // hidden from --help
  bool no_metrics = false;
  app.add_flag("--no-metrics", no_metrics,
               "event loops count nothing for GET /metrics (to measure what counting costs)");
  bool no_events = false;
  app.add_flag("--no-keyspace-events", no_events,
               "do not listen for expired-cart events (no tombstones or 'expired' cart events; "
               "holds still end)");

  auto* check = app.add_subcommand(
      "check",
      "verify the invariants on the live Redis and main DB (uses --redis and --db), then exit");
  check->fallthrough();  // cartd check --redis URL --db URL
  auto* migrate = app.add_subcommand(
      "migrate",
      "bring Redis data of an older cartd to this version's layout (cartd also does it at start), "
      "then exit");
  migrate->fallthrough();

  try {
    std::vector<std::string> args = with_environment(app, argc, argv);
    std::vector<char*> pointers;
    for (std::string& a : args) pointers.push_back(a.data());
    app.parse(static_cast<int>(pointers.size()), pointers.data());
  } catch (const CLI::ParseError& e) {
    return ParsedConfig{std::nullopt, app.exit(e)};
  }
  c.http_limits.idle_timeout = std::chrono::seconds(idle);
  c.http_limits.first_request_timeout = std::chrono::milliseconds(first_request_ms);
  if (c.checkout_recovery_ms >= c.checkout_grace_seconds * 1000) {
    std::fprintf(stderr, "--checkout-recovery-ms must be shorter than --checkout-grace\n");
    return ParsedConfig{std::nullopt, 2};
  }
  if (c.admin_hold_ms <= c.db_timeout_ms) {
    std::fprintf(stderr, "--admin-hold-ms must be longer than --db-timeout-ms\n");
    return ParsedConfig{std::nullopt, 2};
  }
  // Not an error: the checkout fence keeps orders right either way, but a checkout whose
  // transaction outlives the recovery age is given up and answered 409.
  if (c.db_timeout_ms >= c.checkout_recovery_ms) {
    c.warnings.push_back("--db-timeout-ms (" + std::to_string(c.db_timeout_ms) +
                         ") is not shorter than --checkout-recovery-ms (" +
                         std::to_string(c.checkout_recovery_ms) +
                         "): slow checkouts will be given up by recovery");
  }
  c.keyspace_events = !no_events;
  c.metrics = !no_metrics;
  if (c.threads == 0) c.threads = std::max(1u, std::thread::hardware_concurrency());
  auto colon = c.listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    std::fprintf(stderr, "--listen must be HOST:PORT, not %s\n", c.listen.c_str());
    return ParsedConfig{std::nullopt, 2};
  }
  try {
    int port = std::stoi(c.listen.substr(colon + 1));
    if (port < 1 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    std::fprintf(stderr, "--listen has a bad port: %s\n", c.listen.c_str());
    return ParsedConfig{std::nullopt, 2};
  }
  return ParsedConfig{c, 0, check->parsed(), migrate->parsed()};
}

}  // namespace cartd
