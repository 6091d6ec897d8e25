// service: the stock mirror in Redis as the API and the admin routes use it.
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/lease.hpp"
#include "db/store.hpp"

// Redis stays below the services: their users never see it.
namespace cartd::redis {
class Commands;
struct Reply;
}  // namespace cartd::redis

namespace cartd::stock {

template <typename T>
using Callback = std::function<void(boost::system::result<T>)>;

// Live counts of one row as holds see them now; nullopt for a row Redis does not have.
struct LiveCounts {
  std::int64_t on_hand = 0;
  std::int64_t reserved = 0;
  friend bool operator==(const LiveCounts&, const LiveCounts&) = default;
};

// One stock row as holds see it right now (expired holds never count).
struct StockView {
  std::string inventory_id;
  std::string product_id;
  std::int64_t on_hand = 0;
  std::int64_t reserved = 0;
  std::int64_t available() const { return on_hand - reserved; }
};

struct AdminHold {
  enum class Kind { ok, below_reserved, unknown_inventory };
  Kind kind = Kind::ok;
  LiveCounts counts;  // ok, below_reserved: the row before the hold
};

// Units of a row held for a cart that waited (see src/lua/waitlist.lua).
struct RowOffer {
  std::string session_id;
  std::int64_t quantity = 0;
  std::int64_t expires_at_ms = 0;
  friend bool operator==(const RowOffer&, const RowOffer&) = default;
};

// A row as open pages see it: its counts, the version of its waitlist (it changes with
// every place given or taken and every offer) and its live offers.
struct WatchedRow {
  LiveCounts counts;
  std::int64_t waits_version = 0;
  std::vector<RowOffer> offers;
  friend bool operator==(const WatchedRow&, const WatchedRow&) = default;
};

class StockService {
 public:
  // `per_group`: a call names the rows (or key groups) of one group only, as a Redis
  // Cluster requires (one slot per call); calls over many are sent one per group, at once,
  // and their answers joined. A standalone Redis takes them all in one call.
  explicit StockService(redis::Commands& redis, bool per_group = false)
      : redis_(redis), per_group_(per_group) {}
  // Whether Redis takes commands now (an admin change needs it before it starts).
  bool ready() const;
  // What a change that needs Redis answers while it is not ready.
  static boost::system::error_code unavailable();

  // nullopt: no such stock row.
  void stock(const std::string& inventory_id, Callback<std::optional<StockView>> done);
  void counts(const std::vector<std::string>& inventory_ids,
              Callback<std::vector<std::optional<LiveCounts>>> done);
  // What the live-availability poller reads of rows (cartd_watch); nullopt: unknown row.
  void watch(const std::vector<std::string>& inventory_ids,
             Callback<std::vector<std::optional<WatchedRow>>> done);
  // Mirrors rows from the main DB (absolute values; reserved recomputed from holds).
  // Answers how many rows were mirrored. Each row is marked for the DB writer, or, when
  // `against_db`, only a row whose live reserved count differs from the main DB's as
  // `rows` give it (cartd_mirror_sync, src/lua/stock.lua).
  void mirror(const std::vector<db::StockRow>& rows, Callback<std::int64_t> done,
              bool against_db = false);
  // Holds `quantity` units of a row for an admin change that is about to remove them
  // (hold member "admin-<request>:<quantity>"), unless fewer are available.
  void admin_hold(const std::string& inventory_id, const std::string& member, std::int64_t quantity,
                  std::chrono::milliseconds hold_for, Callback<AdminHold> done);
  // Takes rows' on_hand from the main DB (versioned: never older than the mirror's) and
  // drops an admin hold (`hold_member` of row `hold_inventory_id`; "" for none), in one
  // step. Answers each row's live counts after it.
  void apply_on_hand(const std::string& hold_inventory_id, const std::string& hold_member,
                     const std::vector<db::OnHandVersion>& rows,
                     Callback<std::vector<std::optional<LiveCounts>>> done);
  // The mirror sync: rows' on_hand from the main DB, taken where newer and where no
  // change is under way on the row. Answers how many rows changed.
  void sync_on_hand(const std::vector<db::OnHandVersion>& rows, Callback<std::int64_t> done);

  // The sweeper, for some stock groups (those whose lease this instance holds, when it
  // takes one): drops expired hold buckets of rows that have
  // some (at most `batch` rows per group), so reserved counts fall at the deadline
  // without traffic.
  struct Swept {
    std::int64_t rows = 0;
    std::int64_t units = 0;  // held units returned
    bool more = false;       // a group's batch was full
  };
  // `each` gets each call's answer (functions/group_call.hpp: one on a standalone Redis,
  // one per group with work on a cluster), `finished` runs after the last.
  void sweep(const std::vector<std::uint32_t>& groups, std::size_t batch, Callback<Swept> each,
             std::function<void()> finished, const GroupLease& lease = {});
  // The DB writer's read, for some stock groups: up to `batch` rows per group whose
  // counts changed.
  struct DirtyRow {
    std::string inventory_id;
    std::int64_t on_hand = 0;
    std::int64_t reserved = 0;
  };
  struct Dirty {
    std::vector<DirtyRow> rows;
    bool more = false;  // a group's batch was full
  };
  void take_dirty(const std::vector<std::uint32_t>& groups, std::size_t batch, Callback<Dirty> each,
                  std::function<void()> finished, const GroupLease& lease = {});
  // Marks rows for the DB writer again (a write that failed); fire and forget.
  void mark_dirty(const std::vector<std::string>& inventory_ids);

 private:
  // Sends `make(indices)` for the rows at `indices` of `ids`: all of them in one call, or
  // one call per group (per_group_); `take(indices, reply)` reads each answer; `done`
  // runs after the last with the first error, if any.
  using MakeCall = std::function<std::vector<std::string>(const std::vector<std::size_t>&)>;
  using TakeReply = std::function<boost::system::error_code(const std::vector<std::size_t>&,
                                                            const redis::Reply&)>;
  void over_rows(const std::vector<std::string>& ids, const MakeCall& make, TakeReply take,
                 std::function<void(boost::system::error_code)> done);

  redis::Commands& redis_;
  bool per_group_;
};

// The hold member of an admin request: "admin-<request id>:<quantity>".
std::string admin_hold_member(const std::string& request_id, std::int64_t quantity);
inline constexpr std::string_view kAdminHoldPrefix = "admin-";

// Decodes the reply of cartd_stock (src/lua/stock.lua).
boost::system::result<std::optional<StockView>> decode_stock(std::string inventory_id,
                                                             const redis::Reply& r);

// The whole FCALL cartd_mirror (against_db: cartd_mirror_sync) command for rows; used by
// the mirror step too.
std::vector<std::string> mirror_args(const std::vector<db::StockRow>& rows,
                                     bool against_db = false);

}  // namespace cartd::stock
