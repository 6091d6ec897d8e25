#include "stock/housekeeper.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include "cart/session_id.hpp"

namespace cartd::stock {
namespace {

using namespace std::chrono_literals;
constexpr std::string_view kSessionPrefix = "s:{";
constexpr std::size_t kDirtyBatch = 1000;
constexpr std::size_t kRecoveryBatch = 100;
// How often recovery looks for stale checkouts: a tenth of the age that makes one stale.
constexpr int kRecoveryChecksPerAge = 10;
// Flags cartd needs in notify-keyspace-events: E (keyevent channel), x (expired).
constexpr std::string_view kNeededEventFlags = "Ex";

// The flags in `current` plus those in kNeededEventFlags it lacks ('A' includes 'x').
std::string merge_event_flags(std::string current) {
  for (char f : kNeededEventFlags) {
    bool has = current.find(f) != std::string::npos ||
               (f == 'x' && current.find('A') != std::string::npos);
    if (!has) current.push_back(f);
  }
  return current;
}

}  // namespace

Housekeeper::Housekeeper(const Config& config, redis::Endpoint endpoint, std::string_view library,
                         SetupStep mirror_step, metrics::Shard& metrics)
    : config_(config),
      metrics_(metrics),
      store_(db::open_store(config.db_url, config.db_timeout_ms)),
      redis_(io_, redis::Client::Options{endpoint, library,
                                         std::chrono::milliseconds(config.redis_timeout_ms), 2000ms,
                                         "cartd-housekeeper",
                                         [this, mirror_step](redis::Client& c, auto done) {
                                           mirror_step(c, [this, &c, done](bool ok) {
                                             if (!ok) return done(false);
                                             enable_keyspace_events(c, done);
                                           });
                                         },
                                         &metrics.redis_latency()}),
      events_(io_,
              redis::Client::Options{endpoint,
                                     {},
                                     std::chrono::milliseconds(config.redis_timeout_ms),
                                     2000ms,
                                     "cartd-events",
                                     [this, db = endpoint.db](redis::Client& c, auto done) {
                                       c.subscribe(
                                           "__keyevent@" + std::to_string(db) + "__:expired",
                                           [this](std::string_view key) { on_expired_key(key); });
                                       done(true);
                                     }}),
      sweep_timer_(io_),
      sync_timer_(io_),
      recovery_timer_(io_),
      mirror_timer_(io_),
      carts_(redis_, cart::CartSettings{}, &metrics),
      stock_(redis_) {}

Housekeeper::~Housekeeper() {
  stop();
}

void Housekeeper::start() {
  boost::asio::post(io_, [this] {
    redis_.start();
    if (config_.keyspace_events) events_.start();
    if (config_.sweep_interval_ms > 0) {
      sweep_timer_.expires_after(std::chrono::milliseconds(config_.sweep_interval_ms));
      sweep_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) sweep();
      });
    }
    sync_db();
    recover_checkouts();
    mirror_timer_.expires_after(std::chrono::milliseconds(config_.mirror_sync_ms));
    mirror_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) sync_mirror();
    });
  });
  thread_ = std::thread([this] {
    auto work = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

void Housekeeper::stop() {
  if (!thread_.joinable()) return;
  boost::asio::post(io_, [this] {
    sweep_timer_.cancel();
    sync_timer_.cancel();
    recovery_timer_.cancel();
    mirror_timer_.cancel();
    redis_.stop();
    events_.stop();
    io_.stop();
  });
  thread_.join();
}

void Housekeeper::enable_keyspace_events(redis::Client& client, std::function<void(bool)> done) {
  if (!config_.keyspace_events) return done(true);
  client.setup_command(
      {"CONFIG", "GET", "notify-keyspace-events"}, [&client, done](redis::Result r) {
        if (!r || r->is_error() || r->elements.size() != 2) {
          spdlog::warn("events: CONFIG GET refused ({}); relying on the sweeper",
                       r ? r->str : r.error().message());
          return done(true);
        }
        std::string current = r->text_at(1).value_or("");
        std::string wanted = merge_event_flags(current);
        if (wanted == current) return done(true);
        client.setup_command(
            {"CONFIG", "SET", "notify-keyspace-events", wanted}, [done, wanted](redis::Result set) {
              if (!set || set->is_error()) {
                spdlog::warn("events: CONFIG SET refused ({}); relying on the sweeper",
                             set ? set->str : set.error().message());
              } else {
                spdlog::info("events: notify-keyspace-events set to {}", wanted);
              }
              done(true);
            });
      });
}

void Housekeeper::on_expired_key(std::string_view key) {
  if (!key.starts_with(kSessionPrefix) || !key.ends_with('}')) return;
  auto sid = cart::parse_session_id(
      key.substr(kSessionPrefix.size(), key.size() - kSessionPrefix.size() - 1));
  if (!sid) return;
  redis_.command({"FCALL", "cartd_expire", "0", *sid}, [this, sid = *sid](redis::Result r) {
    if (!r || r->is_error()) {
      // The sweeper releases it on its next round.
      spdlog::debug("events: releasing {} failed: {}", sid, r ? r->str : r.error().message());
    } else if (r->int_at(0) == 1) {
      metrics_.count_released(metrics::ReleasePath::event, r->int_at(1).value_or(0));
      spdlog::debug("events: released expired cart {}", sid);
    }
  });
}

void Housekeeper::sweep() {
  std::string batch = std::to_string(config_.sweep_batch);
  redis_.command({"FCALL", "cartd_sweep", "0", batch}, [this](redis::Result r) {
    bool more = false;
    if (r && !r->is_error()) {
      auto released = r->int_at(0).value_or(0);
      more = r->int_at(1).value_or(0) == 1;
      metrics_.count_released(metrics::ReleasePath::sweeper, r->int_at(2).value_or(0));
      if (released > 0) spdlog::info("sweeper: released {} expired carts", released);
    } else if (r) {
      spdlog::error("sweeper: {}", r->str);
    }
    sweep_timer_.expires_after(more ? 0ms : std::chrono::milliseconds(config_.sweep_interval_ms));
    sweep_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) sweep();
    });
  });
}

void Housekeeper::sync_db() {
  auto again = [this](std::chrono::milliseconds after) {
    sync_timer_.expires_after(after);
    sync_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) sync_db();
    });
  };
  std::string batch = std::to_string(kDirtyBatch);
  auto asked = std::chrono::steady_clock::now();
  redis_.command({"FCALL", "cartd_take_dirty", "0", batch}, [this, again, asked](redis::Result r) {
    std::vector<db::ReservedCount> counts;
    bool taken = r && !r->is_error();
    if (taken) {
      for (std::size_t i = 0; i + 2 < r->elements.size(); i += 3) {
        counts.push_back({r->text_at(i).value_or(""), r->int_at(i + 2).value_or(0)});
      }
    }
    try {
      auto now = std::chrono::steady_clock::now();
      if (!counts.empty()) {
        store_->set_reserved(counts);
        last_heartbeat_ = now;
      } else if (now - last_heartbeat_ >= std::chrono::milliseconds(config_.db_heartbeat_ms)) {
        // A read would succeed on a disk that can no longer write: probe with a write.
        store_->heartbeat();
        last_heartbeat_ = now;
      }
      if (!db_ok_.exchange(true)) spdlog::info("db: the main DB writes again");
      // Every change made before `asked` is now in the main DB, unless the batch was
      // full (more rows wait).
      if (taken && counts.size() < kDirtyBatch) {
        synced_at_.store(asked.time_since_epoch().count(), std::memory_order_relaxed);
      }
    } catch (const std::exception& e) {
      if (db_ok_.exchange(false)) spdlog::error("db: {}", e.what());
      // Mark the rows dirty again so the next round writes them.
      std::vector<std::string_view> args{"SADD", "dirty"};
      for (auto& c : counts) args.push_back(c.inventory_id);
      if (!counts.empty()) redis_.command(std::span<const std::string_view>(args), [](auto) {});
    }
    auto interval = std::chrono::milliseconds(config_.db_sync_interval_ms);
    again(counts.size() == kDirtyBatch ? 0ms : interval);
  });
}

double Housekeeper::db_sync_lag_seconds() const {
  using clock = std::chrono::steady_clock;
  clock::time_point synced{clock::duration(synced_at_.load(std::memory_order_relaxed))};
  return std::chrono::duration<double>(clock::now() - synced).count();
}

void Housekeeper::recover_checkouts() {
  std::string age = std::to_string(config_.checkout_recovery_ms);
  std::string batch = std::to_string(kRecoveryBatch);
  redis_.command({"FCALL", "cartd_checkouts_stale", "0", age, batch}, [this](redis::Result r) {
    if (r && !r->is_error()) {
      for (std::size_t i = 0; i + 2 < r->elements.size(); i += 3) {
        settle_checkout(r->elements[i].str, r->elements[i + 1].str, r->elements[i + 2].str);
      }
    }
    recovery_timer_.expires_after(
        std::chrono::milliseconds(config_.checkout_recovery_ms / kRecoveryChecksPerAge));
    recovery_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) recover_checkouts();
    });
  });
}

void Housekeeper::settle_checkout(const std::string& sid, const std::string& key,
                                  const std::string& attempt) {
  db::SettledCheckout settled;
  try {
    // Blocks this thread while the DB waits for a lock (at most --db-timeout-ms): the
    // fence must be in before Redis lets the cart change.
    settled = store_->settle_checkout(sid, attempt);
  } catch (const std::exception& e) {
    spdlog::error("recovery: cannot settle the checkout of cart {}: {}", sid, e.what());
    return;  // the next round tries again
  }
  if (!settled.order) {
    carts_.checkout_abort(sid, key, attempt, {}, [sid](auto r) {
      if (r && *r) {
        spdlog::warn("recovery: checkout of cart {} made no order; aborted, the cart lives on",
                     sid);
      }
    });
    return;
  }
  carts_.checkout_finish(
      sid, *settled.order, settled.rows, [sid, id = settled.order->order_id](auto done) {
        if (done) {
          spdlog::warn("recovery: finished checkout of cart {} (order {})", sid, id);
        }
      });
}

void Housekeeper::sync_mirror() {
  constexpr std::size_t kRowsPerCall = 500;
  std::vector<db::StockRow> rows;
  try {
    rows = store_->stock_rows();
  } catch (const std::exception& e) {
    spdlog::debug("mirror sync: {}", e.what());
  }
  for (std::size_t start = 0; start < rows.size(); start += kRowsPerCall) {
    std::vector<db::OnHandVersion> batch;
    for (std::size_t i = start; i < std::min(rows.size(), start + kRowsPerCall); ++i) {
      batch.push_back({rows[i].inventory_id, rows[i].on_hand, rows[i].version});
    }
    stock_.sync_on_hand(batch, [](auto r) {
      if (!r) {
        spdlog::debug("mirror sync: {}", r.error().message());
      } else if (*r > 0) {
        // Every change writes its own row: a sync that finds work found a lost step.
        spdlog::info("mirror sync: {} rows took on_hand from the main DB", *r);
      }
    });
  }
  mirror_timer_.expires_after(std::chrono::milliseconds(config_.mirror_sync_ms));
  mirror_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) sync_mirror();
  });
}

}  // namespace cartd::stock
