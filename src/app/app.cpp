#include "app/app.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <list>
#include <optional>
#include <sstream>
#include <thread>

#include "app/housekeeper.hpp"
#include "cart/service.hpp"
#include "db/catalog.hpp"
#include "db/executor.hpp"
#include "functions/migrate.hpp"
#include "http/server.hpp"
#include "http/static_files.hpp"
#include "logging/logging.hpp"
#include "lua/library.hpp"
#include "metrics/metrics.hpp"
#include "redis/client.hpp"
#include "redis/connect.hpp"
#include "redis/sync.hpp"
#include "redis/url.hpp"
#include "routes/catalog.hpp"
#include "routes/classic.hpp"
#include "routes/stream.hpp"
#include "routes/v1.hpp"
#include "stock/live.hpp"
#include "stock/mirror.hpp"
#include "stock/service.hpp"

namespace cartd {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Descriptors kept out of the connection cap for what is not a client connection: the
// process itself (stdio, logs, the housekeeper's loop, Redis and DB connections, SQLite
// files with their WAL), each event loop (epoll, eventfd, timerfd, acceptor, Redis), and
// each DB thread (a SQLite file with WAL and shared memory, or a PostgreSQL socket). A
// cartd with 2 loops uses about 30; these leave room to spare.
constexpr std::size_t kReservedFds = 64;
constexpr std::size_t kReservedFdsPerLoop = 8;
constexpr std::size_t kReservedFdsPerDbThread = 4;
// The soft limit to ask for when the hard one is unlimited (Linux's default fs.nr_open).
constexpr rlim_t kOpenFilesWhenUnlimited = 1 << 20;

// How the event loops and the housekeeper reach Redis.
struct RedisSetup {
  redis::Mode mode = redis::Mode::standalone;
  std::vector<redis::Endpoint> seeds;
  // Each connection's step after it loads the library (standalone: the layout check and
  // the stock mirror; a cluster's node connections have none).
  stock::SetupStep setup;
};

cart::CartSettings cart_settings(const Config& config, redis::Mode mode) {
  cart::CartSettings s{std::chrono::seconds(config.cart_ttl_seconds),
                       std::chrono::seconds(config.cart_max_lifetime_seconds),
                       std::chrono::seconds(config.checkout_grace_seconds),
                       config.cart_limits,
                       std::chrono::milliseconds(config.sold_out_memory_ms),
                       std::chrono::seconds(config.offer_window_seconds)};
  s.split_lines = mode == redis::Mode::cluster;
  s.checkout_wait_replicas = config.checkout_wait_replicas;
  s.checkout_wait = std::chrono::milliseconds(config.checkout_wait_ms);
  // Outlasts the three steps a change may still take once it holds the lock.
  s.line_lease = 4 * std::chrono::milliseconds(config.redis_timeout_ms);
  return s;
}

// Everything one event loop owns. Nothing in it is touched from another thread.
struct Loop {
  // `shard` is this loop's metrics; it outlives the loop (see run()). With --no-metrics
  // the loop counts nothing into it.
  Loop(const Config& config, const RedisSetup& r, int index, db::Executor& db,
       metrics::Shard& shard, stock::LiveStock& live)
      : metrics(shard),
        counting(config.metrics ? &shard : nullptr),
        redis(redis::make_commands(
            io, r.mode, r.seeds,
            redis::Client::Options{{},
                                   scripts::library,
                                   std::chrono::milliseconds(config.redis_timeout_ms),
                                   2000ms,
                                   "cartd2-loop-" + std::to_string(index),
                                   r.setup,
                                   config.metrics ? &shard.redis_latency() : nullptr})),
        carts(*redis, cart_settings(config, r.mode), counting),
        stock(*redis, r.mode == redis::Mode::cluster),
        api{io, carts, db, config.fault_after_checkout_step, counting, config.currency},
        catalog{io,
                stock,
                db,
                config.admin_token,
                std::chrono::milliseconds(config.admin_hold_ms),
                config.currency},
        streams(live, stock, carts, static_cast<std::size_t>(config.stream_max_rows)) {}

  metrics::Shard& metrics;
  metrics::Shard* counting;  // &metrics, or nullptr with --no-metrics
  asio::io_context io{1};
  std::unique_ptr<redis::Commands> redis;
  cart::CartService carts;
  stock::StockService stock;
  cart::ApiContext api;
  stock::CatalogContext catalog;
  stock::StockStreams streams;
  http::Router router;
  std::shared_ptr<http::Listener> listener;
};

// Ready when every loop's Redis connection is ready (a request may land on any loop)
// and the main DB takes writes: /readyz, and /healthz as before. /livez only says the
// process serves: a liveness probe must not restart instances during a Redis outage
// that cartd rides out by itself. Loops are all built before the first request.
void add_probe_routes(Loop& loop, const std::list<Loop>& loops,
                      const stock::Housekeeper& housekeeper) {
  auto ready = [&loops, &housekeeper](const http::Request&, const http::PathParams&,
                                      http::Respond respond) {
    for (const Loop& l : loops) {
      if (!l.redis->ready()) {
        return respond(http::json_response(
            503, {{"status", "unavailable"}, {"reason", "Redis is unavailable"}}));
      }
    }
    if (!housekeeper.db_healthy()) {
      return respond(http::json_response(
          503, {{"status", "unavailable"}, {"reason", "the main DB cannot be written"}}));
    }
    respond(http::json_response(200, {{"status", "ok"}}));
  };
  loop.router.add(http::Verb::get, "/healthz", ready);
  loop.router.add(http::Verb::get, "/readyz", ready);
  loop.router.add(http::Verb::get, "/livez",
                  [](const http::Request&, const http::PathParams&, http::Respond respond) {
                    respond(http::json_response(200, {{"status", "ok"}}));
                  });
}

// GET /metrics: every loop's and the housekeeper's counts in the Prometheus text format.
// A scrape reads the other threads' counters (relaxed atomics) and takes no lock.
void add_metrics_route(Loop& loop, const metrics::Registry& registry) {
  loop.router.add(
      http::Verb::get, "/metrics",
      [&registry](const http::Request&, const http::PathParams&, http::Respond respond) {
        respond(http::Response{200, registry.scrape(), metrics::kContentType, {}, {}});
      });
}

// Raises the soft open-file limit to the hard one and returns the limit in force. Every
// connection is a descriptor, and the usual soft default (1024) is far below what the
// hard limit allows: at 1024, a thousand idle clients would use them all.
std::size_t raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("cannot read the open-file limit: {}", std::strerror(errno));
    return 1024;  // the usual soft default, the safe guess
  }
  rlim_t want = limit.rlim_max == RLIM_INFINITY ? kOpenFilesWhenUnlimited : limit.rlim_max;
  rlim_t now = limit.rlim_cur == RLIM_INFINITY ? kOpenFilesWhenUnlimited : limit.rlim_cur;
  if (now >= want) {
    spdlog::info("open-file limit {}", now);
    return now;
  }
  limit.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("open-file limit {}: cannot raise it to {}: {}", now, want, std::strerror(errno));
    return now;
  }
  spdlog::info("open-file limit raised from {} to {}", now, want);
  return want;
}

// The server limits with the connection cap resolved against the open-file limit.
http::ServerLimits resolve_http_limits(const Config& config) {
  http::ServerLimits limits = config.http_limits;
  std::size_t open_files = raise_open_file_limit();
  std::size_t reserved = kReservedFds + kReservedFdsPerLoop * config.threads +
                         kReservedFdsPerDbThread * static_cast<std::size_t>(config.db_threads);
  std::size_t most = http::max_connections_for(open_files, reserved);
  if (limits.max_connections == 0) {
    limits.max_connections = most;
  } else if (limits.max_connections > most) {
    spdlog::warn(
        "--max-connections {} is more than the open-file limit {} leaves for clients; "
        "using {}",
        limits.max_connections, open_files, most);
    limits.max_connections = most;
  }
  spdlog::info(
      "http: at most {} connections, shared by {} loops (at a loop's share, its longest-idle "
      "connection closes for a new one); a new connection's first request must arrive within "
      "{} ms, keep-alive connections idle {} s",
      limits.max_connections, config.threads, limits.first_request_timeout.count(),
      limits.idle_timeout.count());
  return limits;
}

}  // namespace

int migrate(const Config& config) {
  auto endpoint = redis::parse_url(config.redis_url);
  if (!endpoint) {
    std::cerr << "--redis: " << endpoint.error() << "\n";
    return 2;
  }
  try {
    auto result = functions::ensure_layout(*endpoint, scripts::library, 10min, std::cout);
    if (result == functions::LayoutResult::refused) return 1;
    if (result == functions::LayoutResult::current) std::cout << "migrate: nothing to do\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "migrate: " << e.what() << "\n";
    return 2;
  }
}

int run(const Config& config) {
  logging::setup(config.log_level,
                 config.log_format == "json" ? logging::Format::json : logging::Format::text,
                 config.access_log);
  for (const std::string& warning : config.warnings) spdlog::warn("{}", warning);

  auto seeds = redis::parse_urls(config.redis_url);
  if (!seeds) {
    spdlog::critical("--redis: {}", seeds.error());
    return 2;
  }

  // Start-up errors (a bad DB URL or catalog, a busy port) end the process here.
  try {
    auto store = db::open_store(config.db_url, config.db_timeout_ms);
    if (!config.catalog.empty()) {
      auto rows = db::load_catalog(config.catalog);
      std::size_t added = store->add_missing(rows);
      spdlog::info("catalog: {} rows in {}, {} added to the main DB", rows.size(), config.catalog,
                   added);
    }
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }

  auto load_rows = [db_url = config.db_url, timeout = config.db_timeout_ms] {
    return db::open_store(db_url, timeout)->stock_rows();
  };
  RedisSetup redis_setup;
  redis_setup.seeds = *seeds;
  // A standalone Redis that is down now is waited for (the connections retry); several
  // addresses can only be a cluster's nodes.
  auto mode = redis::detect_mode(*seeds, std::chrono::milliseconds(config.redis_timeout_ms));
  redis_setup.mode =
      mode.value_or(seeds->size() > 1 ? redis::Mode::cluster : redis::Mode::standalone);
  if (redis_setup.mode == redis::Mode::standalone && seeds->size() > 1) {
    spdlog::critical(
        "--redis names {} addresses, but {} is a standalone Redis (several addresses are the "
        "nodes of one Redis Cluster)",
        seeds->size(),
        redis::redact_password(config.redis_url.substr(0, config.redis_url.find(','))));
    return 2;
  }
  if (redis_setup.mode == redis::Mode::cluster) {
    spdlog::info("redis: a Redis Cluster ({} seed address(es)); carts change in single-slot steps",
                 seeds->size());
    // A node of a cluster that was never made (no slot assigned to any node) cannot take
    // the stock rows: said at once, rather than after the mirror's wait.
    if (redis::slots_assigned(*seeds, std::chrono::milliseconds(config.redis_timeout_ms)) == 0) {
      spdlog::critical(
          "redis: the Redis Cluster at {} has no slots assigned (CLUSTER INFO: "
          "cluster_slots_assigned:0); make the cluster first, e.g. redis-cli --cluster create",
          redis::redact_password(config.redis_url));
      return 1;
    }
    // A cluster never held an older cartd's data (layout 1 ran on standalone Redis only),
    // so there is nothing to migrate; the stock rows are mirrored once, now.
    if (!stock::mirror_cluster(*seeds, scripts::library, load_rows,
                               std::chrono::milliseconds(config.redis_timeout_ms))) {
      return 1;
    }
  } else {
    // Redis data of an older cartd is migrated before anything is served. With Redis
    // down now, each connection checks the layout when it connects, and refuses to serve
    // an older one (run `cartd migrate`, or restart cartd once Redis is up).
    try {
      std::ostringstream log;
      auto result = functions::ensure_layout(seeds->front(), scripts::library, 10min, log);
      if (!log.str().empty()) spdlog::warn("{}", log.str());
      if (result == functions::LayoutResult::refused) return 1;
    } catch (const std::exception& e) {
      spdlog::warn(
          "redis: the data layout could not be checked at start ({}); each connection "
          "checks it when it connects",
          e.what());
    }
    auto mirrored_once = std::make_shared<std::atomic<bool>>(false);
    redis_setup.setup =
        functions::check_layout_then(stock::mirror_on_setup(load_rows, mirrored_once));
  }

  // Outlives the loops' listeners, which keep a reference to it.
  const http::ServerLimits http_limits = resolve_http_limits(config);
  auto http_warnings = std::make_shared<http::ThrottledWarning>();

  // Declared before the housekeeper and the loops, whose shards it holds: it outlives them.
  metrics::Registry registry;
  // Polled on the housekeeper's thread; the loops' streams hold on to it.
  stock::LiveStock live(std::chrono::milliseconds(config.stream_poll_ms),
                        std::chrono::milliseconds(config.stream_heartbeat_ms),
                        static_cast<std::size_t>(config.max_streams));
  std::optional<stock::Housekeeper> housekeeper;
  std::list<Loop> loops;  // a list: Loops do not move once built
  // Declared after the loops, so destroyed (stopped) before them: DB work still running
  // at shutdown posts its result into a loop's io_context, which must still exist.
  db::Executor db(config.db_url, static_cast<std::size_t>(config.db_threads), config.db_timeout_ms);
  try {
    housekeeper.emplace(config, redis_setup.mode, redis_setup.seeds, scripts::library,
                        redis_setup.setup, registry.add_shard(), live);
    asio::ip::tcp::endpoint listen{asio::ip::make_address(config.listen_host()),
                                   config.listen_port()};
    for (unsigned i = 0; i < config.threads; ++i) {
      Loop& loop = loops.emplace_back(config, redis_setup, static_cast<int>(i), db,
                                      registry.add_shard(), live);
      live.add_listener([&loop](std::shared_ptr<const stock::LiveChanges> changes) {
        asio::post(loop.io, [&loop, changes] { loop.streams.deliver(*changes); });
      });
      cart::add_classic_routes(loop.router, loop.carts);
      cart::add_cart_api_routes(loop.router, loop.api);
      loop.streams.add_routes(loop.router);  // before /v1/stock/{inventory_id}
      stock::add_catalog_routes(loop.router, loop.catalog);
      http::add_static_routes(loop.router, config.web_root);
      add_probe_routes(loop, loops, *housekeeper);
      add_metrics_route(loop, registry);
      loop.metrics.set_routes(loop.router.patterns());
      loop.listener = std::make_shared<http::Listener>(
          loop.io, listen, loop.router, http_limits,
          http::connection_share(http_limits.max_connections, config.threads, i), http_warnings,
          loop.counting);
    }
    registry.add_gauge("cartd_redis_up",
                       "1 when every event loop's Redis connection is ready, else 0", [&loops] {
                         for (const Loop& l : loops) {
                           if (!l.redis->ready()) return 0.0;
                         }
                         return 1.0;
                       });
    registry.add_gauge("cartd_streams_open", "Open availability streams (GET /v1/stock/stream)",
                       [&live] { return static_cast<double>(live.streams()); });
    registry.add_gauge("cartd_stream_rows_watched",
                       "Stock rows that open streams watch: what each poll reads from Redis",
                       [&live] { return static_cast<double>(live.rows_watched()); });
    registry.add_gauge(
        "cartd_db_sync_lag_seconds",
        "Seconds since the DB writer last took every changed reserved count from Redis and "
        "wrote it to the main DB: a bound on the age of the oldest reserved change not yet "
        "written (grows while Redis or the main DB fails)",
        [&housekeeper] { return housekeeper->db_sync_lag_seconds(); });
    if (redis_setup.mode == redis::Mode::cluster) {
      registry.add_counter(
          "cartd_redis_cluster_redirects_total",
          "Answers of the Redis Cluster other than a reply, by kind: moved (a slot had a new "
          "owner; the command was sent there), ask and try_again (a slot was moving; the "
          "command was sent to its target, or again after 20 ms, for at most "
          "--redis-timeout-ms)",
          "kind", {"moved", "ask", "try_again"}, [&loops, &housekeeper] {
            redis::Redirects sum = housekeeper->redirects_seen();
            for (const Loop& l : loops) sum += l.redis->redirects_seen();
            return std::vector<std::uint64_t>{sum.moved, sum.ask, sum.try_again};
          });
    }
  } catch (const std::exception& e) {
    spdlog::critical("cannot start (listening on {}): {}", config.listen, e.what());
    return 1;
  }

  housekeeper->start();
  asio::signal_set signals(loops.front().io, SIGINT, SIGTERM);
  auto grace = std::chrono::milliseconds(config.shutdown_grace_ms);
  signals.async_wait([&loops, grace](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: finishing the requests under way, then stopping", sig);
    for (Loop& loop : loops) {
      asio::post(loop.io, [&loop, grace] {
        loop.listener->drain(grace, [&loop] {
          loop.redis->stop();
          loop.io.stop();
        });
      });
    }
  });

  std::vector<std::thread> threads;
  for (Loop& loop : loops) {
    loop.listener->start();
    asio::post(loop.io, [&loop] { loop.redis->start(); });
    threads.emplace_back([&loop] {
      auto work = asio::make_work_guard(loop.io);
      loop.io.run();
    });
  }
  spdlog::info("cartd listening on http://{} with {} event loop(s)", config.listen, loops.size());
  for (auto& t : threads) t.join();
  db.stop();
  housekeeper->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace cartd
