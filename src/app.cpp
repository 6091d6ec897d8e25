#include "app.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <list>
#include <optional>
#include <thread>

#include "cart/api.hpp"
#include "cart/routes.hpp"
#include "cart/service.hpp"
#include "db/catalog.hpp"
#include "db/executor.hpp"
#include "http/server.hpp"
#include "http/static_files.hpp"
#include "lua/library.hpp"
#include "redis/client.hpp"
#include "redis/url.hpp"
#include "stock/housekeeper.hpp"
#include "stock/mirror.hpp"
#include "stock/routes.hpp"
#include "stock/service.hpp"

namespace cartd {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Everything one event loop owns. Nothing in it is touched from another thread.
struct Loop {
  Loop(const Config& config, const redis::Endpoint& endpoint, stock::SetupStep setup, int index,
       db::Executor& db)
      : redis(io, redis::Client::Options{endpoint, scripts::library,
                                         std::chrono::milliseconds(config.redis_timeout_ms), 2000ms,
                                         "cartd-loop-" + std::to_string(index), std::move(setup)}),
        carts(redis, cart::CartSettings{std::chrono::seconds(config.cart_ttl_seconds),
                                        std::chrono::seconds(config.cart_max_lifetime_seconds),
                                        std::chrono::seconds(config.checkout_grace_seconds),
                                        config.cart_limits}),
        stock(redis),
        api{io, carts, db, config.fault_after_checkout_step},
        catalog{io, stock, db, config.admin_token} {}

  asio::io_context io{1};
  redis::Client redis;
  cart::CartService carts;
  stock::StockService stock;
  cart::ApiContext api;
  stock::CatalogContext catalog;
  http::Router router;
  std::shared_ptr<http::Listener> listener;
};

// 200 only when every loop's Redis connection is ready: the kernel hands a new connection
// to any loop, and one still loading the functions answers 503. So a client (or a test)
// that waits for 200 finds every loop able to serve.
void add_health_route(Loop& loop, const std::list<Loop>& loops,
                      const stock::Housekeeper& housekeeper) {
  loop.router.add(
      http::Verb::get, "/healthz",
      [&loops, &housekeeper](const http::Request&, const http::PathParams&, http::Respond respond) {
        for (const Loop& each : loops) {
          if (!each.redis.ready()) {
            return respond(http::json_response(
                503, {{"status", "unavailable"}, {"reason", "Redis is unavailable"}}));
          }
        }
        if (!housekeeper.db_healthy()) {
          return respond(http::json_response(
              503, {{"status", "unavailable"}, {"reason", "the main DB is unavailable"}}));
        }
        respond(http::json_response(200, {{"status", "ok"}}));
      });
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("cartd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

int run(const Config& config) {
  setup_logging(config.log_level);

  auto endpoint = redis::parse_url(config.redis_url);
  if (!endpoint) {
    spdlog::critical("--redis: {}", endpoint.error());
    return 2;
  }

  // Start-up errors (a bad DB URL or catalog, a busy port) end the process here.
  try {
    auto store = db::open_store(config.db_url);
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

  auto mirrored_once = std::make_shared<std::atomic<bool>>(false);
  auto load_rows = [db_url = config.db_url] { return db::open_store(db_url)->stock_rows(); };
  auto setup = stock::mirror_on_setup(load_rows, mirrored_once);

  std::optional<stock::Housekeeper> housekeeper;
  db::Executor db(config.db_url, static_cast<std::size_t>(config.db_threads));
  std::list<Loop> loops;  // a list: Loops do not move once built
  try {
    housekeeper.emplace(config, *endpoint, scripts::library, setup);
    asio::ip::tcp::endpoint listen{asio::ip::make_address(config.listen_host()),
                                   config.listen_port()};
    for (unsigned i = 0; i < config.threads; ++i) {
      Loop& loop = loops.emplace_back(config, *endpoint, setup, static_cast<int>(i), db);
      cart::add_classic_routes(loop.router, loop.carts);
      cart::add_cart_api_routes(loop.router, loop.api);
      stock::add_catalog_routes(loop.router, loop.catalog);
      http::add_static_routes(loop.router, config.web_root);
      add_health_route(loop, loops, *housekeeper);
      loop.listener =
          std::make_shared<http::Listener>(loop.io, listen, loop.router, config.http_limits);
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
          loop.redis.stop();
          loop.io.stop();
        });
      });
    }
  });

  std::vector<std::thread> threads;
  for (Loop& loop : loops) {
    loop.listener->start();
    asio::post(loop.io, [&loop] { loop.redis.start(); });
    threads.emplace_back([&loop] {
      auto work = asio::make_work_guard(loop.io);
      loop.io.run();
    });
  }
  spdlog::info("cartd listening on http://{} with {} event loop(s)", config.listen, loops.size());
  for (auto& t : threads) t.join();
  housekeeper->stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace cartd
