#include "app/housekeeper.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <numeric>

#include "base/session_id.hpp"
#include "checkout/recovery.hpp"
#include "functions/keys.hpp"
#include "redis/cluster.hpp"
#include "redis/slot.hpp"

namespace cartd::stock {
namespace {

using namespace std::chrono_literals;
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

// Every key group: one call on a standalone Redis, on a cluster one per node and then one
// per group with work (functions/group_call.hpp).
const std::vector<std::uint32_t>& all_groups() {
  static const std::vector<std::uint32_t> groups = [] {
    std::vector<std::uint32_t> g(keys::kGroups);
    std::iota(g.begin(), g.end(), std::uint32_t{0});
    return g;
  }();
  return groups;
}

}  // namespace

Housekeeper::Housekeeper(const Config& config, redis::Mode mode,
                         const std::vector<redis::Endpoint>& seeds, std::string_view library,
                         SetupStep mirror_step, metrics::Shard& metrics, LiveStock& live)
    : config_(config),
      metrics_(metrics),
      store_(db::open_store(config.db_url, config.db_timeout_ms)),
      cluster_(mode == redis::Mode::cluster),
      lease_owner_(cluster_ ? new_session_id() : std::string()),
      redis_(redis::make_commands(
          io_, mode, seeds,
          redis::Client::Options{
              {},
              library,
              std::chrono::milliseconds(config.redis_timeout_ms),
              2000ms,
              "cartd2-housekeeper",
              cluster_ ? SetupStep{} : SetupStep{[this, mirror_step](redis::Client& c, auto done) {
                mirror_step(c, [this, &c, done](bool ok) {
                  if (!ok) return done(false);
                  enable_keyspace_events(c, done);
                });
              }},
              &metrics.redis_latency()})),
      sweep_timer_(io_),
      sync_timer_(io_),
      recovery_timer_(io_),
      mirror_timer_(io_),
      remirror_timer_(io_),
      carts_(
          *redis_,
          [&] {
            cart::CartSettings s;
            s.split_lines = cluster_;
            return s;
          }(),
          &metrics),
      stock_(*redis_, cluster_),
      live_(live) {
  if (cluster_) {
    static_cast<redis::ClusterClient&>(*redis_).on_owner_change(
        [this](const std::vector<std::uint16_t>& slots) { remirror(slots); });
  } else {
    events_ = std::make_unique<redis::Client>(
        io_, redis::Client::Options{seeds.front(),
                                    {},
                                    std::chrono::milliseconds(config.redis_timeout_ms),
                                    2000ms,
                                    "cartd2-events",
                                    [this, db = seeds.front().db](redis::Client& c, auto done) {
                                      c.subscribe(
                                          "__keyevent@" + std::to_string(db) + "__:expired",
                                          [this](std::string_view key) { on_expired_key(key); });
                                      done(true);
                                    }});
  }
}

Housekeeper::~Housekeeper() {
  stop();
}

void Housekeeper::start() {
  boost::asio::post(io_, [this] {
    redis_->start();
    if (config_.keyspace_events) {
      if (events_) {
        events_->start();
      } else {
        // Every primary's events (a cluster's keyspace events are per node), each
        // subscriber connection turning them on first.
        static_cast<redis::ClusterClient&>(*redis_).subscribe_all(
            "__keyevent@0__:expired", [this](std::string_view key) { on_expired_key(key); },
            [this](redis::Client& c, std::function<void(bool)> done) {
              enable_keyspace_events(c, std::move(done));
            });
      }
    }
    if (config_.sweep_interval_ms > 0) {
      sweep_timer_.expires_after(std::chrono::milliseconds(config_.sweep_interval_ms));
      sweep_timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) sweep();
      });
    }
    sync_db();
    recover_checkouts();
    live_.start(io_, stock_);
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
    remirror_timer_.cancel();
    live_.stop();
    redis_->stop();
    if (events_) events_->stop();
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
  auto sid = parse_session_id(keys::sid_of_cart_key(key));
  if (!sid) return;
  // Its holds ended with their buckets; what is left is to say why it ended, once.
  carts_.expired(*sid, [sid = *sid](auto r) {
    if (!r) {
      spdlog::debug("events: recording the expiry of {} failed: {}", sid, r.error().message());
    } else if (*r) {
      spdlog::debug("events: cart {} expired", sid);
    }
  });
}

void Housekeeper::sweep() {
  struct Round {
    std::int64_t rows = 0, units = 0;
    bool more = false;
  };
  auto round = std::make_shared<Round>();
  stock_.sweep(
      all_groups(), config_.sweep_batch,
      [round](auto r) {
        if (r) {
          round->rows += r->rows;
          round->units += r->units;
          round->more = round->more || r->more;
        } else {
          spdlog::debug("sweeper: {}", r.error().message());
        }
      },
      [this, round] {
        metrics_.count_released(metrics::ReleasePath::sweeper, round->units);
        if (round->units > 0) {
          spdlog::debug("sweeper: {} expired held units returned on {} rows", round->units,
                        round->rows);
        }
        sweep_timer_.expires_after(
            round->more ? 0ms : std::chrono::milliseconds(config_.sweep_interval_ms));
        sweep_timer_.async_wait([this](boost::system::error_code ec) {
          if (!ec) sweep();
        });
      },
      lease(std::chrono::milliseconds(config_.sweep_interval_ms)));
}

void Housekeeper::sync_db() {
  struct Round {
    std::vector<db::ReservedCount> counts;
    bool taken = true, more = false;
    std::chrono::steady_clock::time_point asked = std::chrono::steady_clock::now();
  };
  auto round = std::make_shared<Round>();
  stock_.take_dirty(
      all_groups(), kDirtyBatch,
      [round](auto r) {
        if (!r) {
          round->taken = false;
        } else {
          round->more = round->more || r->more;
          for (auto& row : r->rows) round->counts.push_back({row.inventory_id, row.reserved});
        }
      },
      [this, round] {
        write_reserved(round->counts, round->taken && !round->more, round->asked, round->more);
      },
      lease(std::chrono::milliseconds(config_.db_sync_interval_ms)));
}

void Housekeeper::write_reserved(const std::vector<db::ReservedCount>& counts, bool complete,
                                 std::chrono::steady_clock::time_point asked, bool more) {
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
    // Every change made before `asked` is now in the main DB, unless a batch was full
    // (more rows wait) or a group could not be read.
    if (complete) synced_at_.store(asked.time_since_epoch().count(), std::memory_order_relaxed);
  } catch (const std::exception& e) {
    if (db_ok_.exchange(false)) spdlog::error("db: {}", e.what());
    // Mark the rows dirty again so the next round writes them.
    std::vector<std::string> ids;
    for (const auto& c : counts) ids.push_back(c.inventory_id);
    stock_.mark_dirty(ids);
  }
  sync_timer_.expires_after(more ? 0ms : std::chrono::milliseconds(config_.db_sync_interval_ms));
  sync_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) sync_db();
  });
}

double Housekeeper::db_sync_lag_seconds() const {
  using clock = std::chrono::steady_clock;
  clock::time_point synced{clock::duration(synced_at_.load(std::memory_order_relaxed))};
  return std::chrono::duration<double>(clock::now() - synced).count();
}

void Housekeeper::recover_checkouts() {
  auto every = std::chrono::milliseconds(config_.checkout_recovery_ms / kRecoveryChecksPerAge);
  carts_.checkouts_stale(
      all_groups(), std::chrono::milliseconds(config_.checkout_recovery_ms), kRecoveryBatch,
      [this](auto r) {
        if (!r) return;
        for (const auto& c : *r) {
          checkout::recover(carts_, *store_, c.session_id, c.key, c.attempt_id);
        }
      },
      [this, every] {
        recovery_timer_.expires_after(every);
        recovery_timer_.async_wait([this](boost::system::error_code ec) {
          if (!ec) recover_checkouts();
        });
      },
      lease(every));
}

void Housekeeper::sync_mirror() {
  std::vector<db::StockRow> rows;
  try {
    rows = store_->stock_rows();
  } catch (const std::exception& e) {
    spdlog::debug("mirror sync: {}", e.what());
  }
  // A row's count goes to the main DB again only if it differs from the DB's (a row a
  // node lost, a DB write that was lost), not every row each round.
  mirror_rows(rows, {}, true);
  mirror_timer_.expires_after(std::chrono::milliseconds(config_.mirror_sync_ms));
  mirror_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) sync_mirror();
  });
}

void Housekeeper::remirror(const std::vector<std::uint16_t>& slots) {
  std::set<std::uint16_t> moved(slots.begin(), slots.end());
  for (std::uint32_t g = 0; g < keys::kGroups; ++g) {
    if (moved.contains(redis::key_slot(keys::stock_tag(g)))) remirror_groups_.insert(g);
  }
  arm_remirror();
}

void Housekeeper::arm_remirror() {
  if (remirror_armed_ || remirror_groups_.empty()) return;
  remirror_armed_ = true;
  remirror_timer_.expires_after(1s);
  remirror_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    remirror_armed_ = false;
    std::vector<db::StockRow> rows;
    try {
      for (db::StockRow& row : store_->stock_rows()) {
        if (remirror_groups_.contains(keys::group_of(row.inventory_id))) {
          rows.push_back(std::move(row));
        }
      }
    } catch (const std::exception& e) {
      spdlog::warn("mirror: the rows of slots that changed owner wait: {}", e.what());
      return arm_remirror();
    }
    auto groups = std::exchange(remirror_groups_, {});
    spdlog::info("mirror: {} rows of {} groups whose slots changed owner, from the main DB",
                 rows.size(), groups.size());
    mirror_rows(rows, [this, groups](bool ok) {
      if (ok) return;
      // The new owner may not take writes yet (a node that restarted, still joining).
      spdlog::debug("mirror: the rows of {} groups wait for their node", groups.size());
      remirror_groups_.insert(groups.begin(), groups.end());
      arm_remirror();
    });
  });
}

void Housekeeper::mirror_rows(const std::vector<db::StockRow>& rows, std::function<void(bool)> done,
                              bool against_db) {
  constexpr std::size_t kRowsPerCall = 500;
  // Every batch's answer counts toward `done`.
  struct Pending {
    std::size_t left;
    bool ok = true;
    std::function<void(bool)> done;
  };
  auto pending = std::make_shared<Pending>(
      Pending{(rows.size() + kRowsPerCall - 1) / kRowsPerCall, true, std::move(done)});
  auto answered = [pending](bool ok) {
    pending->ok = pending->ok && ok;
    if (--pending->left == 0 && pending->done) pending->done(pending->ok);
  };
  if (pending->left == 0 && pending->done) pending->done(true);
  for (std::size_t start = 0; start < rows.size(); start += kRowsPerCall) {
    auto first = rows.begin() + static_cast<std::ptrdiff_t>(start);
    auto last =
        rows.begin() + static_cast<std::ptrdiff_t>(std::min(rows.size(), start + kRowsPerCall));
    if (cluster_) {
      // Whole rows: a node that lost its data (restarted without a replica) gets its rows
      // back; on_hand is taken as carefully as the sync takes it (see mirror_on_hand).
      stock_.mirror(
          {first, last},
          [answered](auto r) {
            if (!r) spdlog::debug("mirror sync: {}", r.error().message());
            answered(static_cast<bool>(r));
          },
          against_db);
      continue;
    }
    std::vector<db::OnHandVersion> batch;
    std::vector<std::string> ids;
    std::vector<std::int64_t> db_reserved;
    for (auto row = first; row != last; ++row) {
      batch.push_back({row->inventory_id, row->on_hand, row->version});
      ids.push_back(row->inventory_id);
      db_reserved.push_back(row->reserved);
    }
    // A count the DB writer took but never wrote (the reply of cartd_take_dirty lost, the
    // connection dropped) is no longer marked: a row whose live count differs from the
    // DB's is marked again, as the cluster's mirror sync marks it (cartd_mirror_sync).
    // A call of its own, not more arguments to cartd_sync_on_hand, which an older instance
    // sharing this Redis during a rolling upgrade still calls as it was.
    stock_.counts(ids, [this, ids, db_reserved](auto live) {
      if (!live) return spdlog::debug("mirror sync: {}", live.error().message());
      std::vector<std::string> differ;
      for (std::size_t i = 0; i < ids.size() && i < live->size(); ++i) {
        if ((*live)[i] && (*live)[i]->reserved != db_reserved[i]) differ.push_back(ids[i]);
      }
      if (!differ.empty()) stock_.mark_dirty(differ);
    });
    stock_.sync_on_hand(batch, [answered](auto r) {
      if (!r) {
        spdlog::debug("mirror sync: {}", r.error().message());
      } else if (*r > 0) {
        // Every change writes its own row: a sync that finds work found a lost step.
        spdlog::info("mirror sync: {} rows took on_hand from the main DB", *r);
      }
      answered(static_cast<bool>(r));
    });
  }
}

}  // namespace cartd::stock
