// housekeeper: the background work of one cartd instance, on a thread of its own so
// it never delays a request:
//   - the expiry listener: keyspace events for carts Redis deleted at their deadline,
//     each recorded once (a tombstone, so the id answers "expired", and an 'expired'
//     event). Nothing needs releasing: a cart's holds end with their buckets;
//   - the sweeper drops expired hold buckets of every stock group, in batches, on a
//     timer, so reserved counts (and the main DB) fall at the deadline on rows no
//     request touches;
//   - the DB writer: stock rows the Redis functions marked dirty are read and their
//     reserved counts written to the main DB as absolute values, batched;
//   - checkout recovery (src/checkout/recovery.hpp): a checkout left unfinished (cartd
//     died mid-way, or its DB transaction is stuck) is finished if its order is in the
//     main DB, and otherwise fenced in the DB, then aborted (see src/lua/checkout.lua);
//   - the mirror sync: every row's on_hand and version are read from the main DB and
//     given to Redis, which takes those newer than its own: a change whose mirror step
//     was lost (Redis down, cartd killed) reaches Redis within --mirror-sync-ms;
//   - the DB heartbeat: a small write now and then, so /healthz sees a main DB that
//     can no longer write.
// Every instance runs one; the functions they call are atomic and idempotent, so any
// number of instances can run them at once.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <thread>

#include "cart/service.hpp"
#include "config/config.hpp"
#include "db/store.hpp"
#include "metrics/metrics.hpp"
#include "redis/client.hpp"
#include "redis/connect.hpp"
#include "stock/live.hpp"
#include "stock/mirror.hpp"
#include "stock/service.hpp"

namespace cartd::stock {

class Housekeeper {
 public:
  // `metrics` (this thread's shard) must outlive the housekeeper.
  // On a Redis Cluster (`mode`) it works through the key groups one per call, hears
  // expired events from every primary, and its mirror sync writes whole rows;
  // `mirror_step` is then empty.
  Housekeeper(const Config& config, redis::Mode mode, const std::vector<redis::Endpoint>& seeds,
              std::string_view library, SetupStep mirror_step, metrics::Shard& metrics,
              LiveStock& live);
  ~Housekeeper();

  void start();
  void stop();
  // True when the last DB write succeeded (read by /healthz on other threads).
  bool db_healthy() const { return db_ok_.load(std::memory_order_relaxed); }
  // Seconds since the DB writer last found nothing left to write (it took every dirty
  // row from Redis and wrote them all, or there were none): a bound on the age of the
  // oldest reserved change not yet in the main DB. Any thread may ask.
  double db_sync_lag_seconds() const;
  // What the cluster answered the housekeeper's commands instead of replies. Any thread.
  redis::Redirects redirects_seen() const { return redis_->redirects_seen(); }

 private:
  void enable_keyspace_events(redis::Client& client, std::function<void(bool)> done);
  void on_expired_key(std::string_view key);
  void sweep();
  void sync_db();
  // Writes one round's counts to the main DB (a heartbeat if there are none) and plans
  // the next round: at once if `more` rows wait.
  void write_reserved(const std::vector<db::ReservedCount>& counts, bool complete,
                      std::chrono::steady_clock::time_point asked, bool more);
  void recover_checkouts();
  void sync_mirror();
  // Writes rows (whole, on_hand taken carefully) from the main DB into Redis, in batches.
  // `done` (optional) runs once every batch has answered: true if all were written. On a
  // cluster every row is marked for the DB writer, or when `against_db` (the periodic
  // sync) only a row whose live count differs from the main DB's (StockService::mirror).
  void mirror_rows(const std::vector<db::StockRow>& rows, std::function<void(bool)> done = {},
                   bool against_db = false);
  // On a cluster: the rows of slots whose owner changed (a failover may have lost the
  // last on_hand writes; a moved slot is whole again) are mirrored again soon after,
  // the changes of a moment (a reshard moves many slots) gathered into one pass.
  void remirror(const std::vector<std::uint16_t>& slots);
  // Mirrors remirror_groups_ a second from now (once, however many changes come meanwhile);
  // groups whose read or write failed wait for the next second.
  void arm_remirror();
  // The lease for a round that runs every `every`: three rounds long, so that its holder
  // keeps it while it runs, and another instance takes over soon after it stops.
  GroupLease lease(std::chrono::milliseconds every) const {
    return {lease_owner_, 3 * every + std::chrono::milliseconds(1000)};
  }

  const Config& config_;
  metrics::Shard& metrics_;
  boost::asio::io_context io_{1};
  std::unique_ptr<db::Store> store_;
  const bool cluster_;
  // On a cluster, this instance's name for the group leases (src/lua/holds.lua, lease).
  const std::string lease_owner_;
  std::unique_ptr<redis::Commands> redis_;
  std::unique_ptr<redis::Client> events_;  // standalone: the expired-event subscriber
  boost::asio::steady_timer sweep_timer_;
  boost::asio::steady_timer sync_timer_;
  boost::asio::steady_timer recovery_timer_;
  boost::asio::steady_timer mirror_timer_;
  boost::asio::steady_timer remirror_timer_;
  std::set<std::uint32_t> remirror_groups_;  // stock groups waiting for remirror
  bool remirror_armed_ = false;
  cart::CartService carts_;  // for checkout_finish, on the housekeeper's connection
  StockService stock_;       // for the mirror sync, on the housekeeper's connection
  LiveStock& live_;          // polled through stock_
  std::chrono::steady_clock::time_point last_heartbeat_{};
  std::atomic<bool> db_ok_{false};
  // When the DB writer last caught up (steady_clock ticks), for db_sync_lag_seconds.
  std::atomic<std::chrono::steady_clock::rep> synced_at_{
      std::chrono::steady_clock::now().time_since_epoch().count()};
  std::thread thread_;
};

}  // namespace cartd::stock
