#include "stock/service.hpp"

#include <algorithm>
#include <map>
#include <memory>

#include "base/clock.hpp"
#include "base/errors.hpp"
#include "functions/group_call.hpp"
#include "functions/keys.hpp"
#include "redis/commands.hpp"

namespace cartd::stock {
namespace {

boost::system::error_code unexpected() {
  return ReplyErrc::unexpected_reply;
}

// FCALL `name` with the stock rows of `ids` as KEYS, then `argv`.
std::vector<std::string> fcall_rows(std::string_view name, const std::vector<std::string>& ids,
                                    std::vector<std::string> argv) {
  std::vector<std::string> keys_of;
  for (const std::string& id : ids) keys_of.push_back(keys::stock(id));
  return keys::fcall(name, std::move(keys_of), std::move(argv));
}

template <typename Row>
std::vector<std::string> ids_of(const std::vector<Row>& rows) {
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  for (const Row& r : rows) ids.push_back(r.inventory_id);
  return ids;
}

template <typename T>
std::vector<T> pick(const std::vector<T>& all, const std::vector<std::size_t>& indices) {
  std::vector<T> out;
  out.reserve(indices.size());
  for (std::size_t i : indices) out.push_back(all[i]);
  return out;
}

}  // namespace

void StockService::over_rows(const std::vector<std::string>& ids, const MakeCall& make,
                             TakeReply take, std::function<void(boost::system::error_code)> done) {
  std::map<std::uint32_t, std::vector<std::size_t>> parts;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    parts[per_group_ ? keys::group_of(ids[i]) : 0].push_back(i);
  }
  if (parts.empty()) parts[0];  // a call with no rows still answers
  struct Join {
    std::size_t left;
    boost::system::error_code error;
    TakeReply take;
    std::function<void(boost::system::error_code)> done;
  };
  auto join = std::make_shared<Join>(Join{parts.size(), {}, std::move(take), std::move(done)});
  for (auto& [group, indices] : parts) {
    send(redis_, make(indices), [join, indices = indices](redis::Result r) {
      boost::system::error_code ec = r ? join->take(indices, *r) : r.error();
      if (ec && !join->error) join->error = ec;
      if (--join->left == 0) join->done(join->error);
    });
  }
}

bool StockService::ready() const {
  return redis_.ready();
}

boost::system::error_code StockService::unavailable() {
  return make_error_code(redis::Errc::unavailable);
}

boost::system::result<std::optional<StockView>> decode_stock(std::string inventory_id,
                                                             const redis::Reply& r) {
  if (r.is_nil()) return std::optional<StockView>{};
  auto product = r.text_at(0);
  auto on_hand = r.int_at(1), reserved = r.int_at(2);
  if (!product || !on_hand || !reserved) return unexpected();
  return std::optional<StockView>{
      StockView{std::move(inventory_id), *product, *on_hand, *reserved}};
}

void StockService::stock(const std::string& inventory_id, Callback<std::optional<StockView>> done) {
  send(redis_, fcall_rows("cartd_stock", {inventory_id}, {inventory_id}),
       [done = std::move(done), inventory_id](redis::Result r) {
         if (!r) return done(r.error());
         done(decode_stock(inventory_id, *r));
       });
}

std::vector<std::string> mirror_args(const std::vector<db::StockRow>& rows, bool against_db) {
  std::vector<std::string> args;
  args.reserve(rows.size() * 8);
  std::vector<std::string> ids = ids_of(rows);
  for (const db::StockRow& r : rows) {
    args.push_back(r.inventory_id);
    args.push_back(r.product_id);
    args.push_back(std::to_string(r.on_hand));
    args.push_back(std::to_string(r.version));
    args.push_back(r.name);
    args.push_back(std::to_string(r.price_cents));
    args.push_back(std::to_string(r.max_per_cart));
    if (against_db) args.push_back(std::to_string(r.reserved));
  }
  return fcall_rows(against_db ? "cartd_mirror_sync" : "cartd_mirror", ids, std::move(args));
}

namespace {

// {on_hand, reserved, ...} per row, -1 for a row Redis does not have.
boost::system::result<std::vector<std::optional<LiveCounts>>> decode_counts(const redis::Reply& r,
                                                                            std::size_t n) {
  if (r.elements.size() != 2 * n) return unexpected();
  std::vector<std::optional<LiveCounts>> out;
  for (std::size_t i = 0; i < n; ++i) {
    auto on_hand = r.int_at(2 * i), reserved = r.int_at(2 * i + 1);
    if (!on_hand || *on_hand < 0) {
      out.emplace_back();
    } else {
      out.push_back(LiveCounts{*on_hand, reserved.value_or(0)});
    }
  }
  return out;
}

}  // namespace

namespace {

// Places each part's counts at its rows' indices.
using AllCounts = std::shared_ptr<std::vector<std::optional<LiveCounts>>>;
boost::system::error_code place_counts(const AllCounts& out,
                                       const std::vector<std::size_t>& indices,
                                       const redis::Reply& r) {
  auto counts = decode_counts(r, indices.size());
  if (!counts) return counts.error();
  for (std::size_t k = 0; k < indices.size(); ++k) (*out)[indices[k]] = (*counts)[k];
  return {};
}

}  // namespace

void StockService::counts(const std::vector<std::string>& ids,
                          Callback<std::vector<std::optional<LiveCounts>>> done) {
  auto out = std::make_shared<std::vector<std::optional<LiveCounts>>>(ids.size());
  over_rows(
      ids,
      [this, &ids](const std::vector<std::size_t>& part) {
        auto sub = pick(ids, part);
        return fcall_rows("cartd_stock_many", sub, sub);
      },
      [out](const std::vector<std::size_t>& part, const redis::Reply& r) {
        return place_counts(out, part, r);
      },
      [out, done](boost::system::error_code ec) {
        if (ec) return done(ec);
        done(std::move(*out));
      });
}

namespace {

// One row of cartd_watch's answer.
boost::system::result<std::optional<WatchedRow>> decode_watched(const redis::Reply& row) {
  auto on_hand = row.int_at(0), reserved = row.int_at(1), version = row.int_at(2),
       offers = row.int_at(3);
  if (!on_hand || !reserved || !version || !offers ||
      row.elements.size() != 4 + 3 * static_cast<std::size_t>(*offers)) {
    return unexpected();
  }
  if (*on_hand < 0) return std::optional<WatchedRow>{};
  WatchedRow w{LiveCounts{*on_hand, *reserved}, *version, {}};
  for (std::size_t i = 4; i < row.elements.size(); i += 3) {
    w.offers.push_back(RowOffer{row.text_at(i).value_or(""), row.int_at(i + 1).value_or(0),
                                row.int_at(i + 2).value_or(0)});
  }
  return std::optional<WatchedRow>{std::move(w)};
}

}  // namespace

void StockService::watch(const std::vector<std::string>& ids,
                         Callback<std::vector<std::optional<WatchedRow>>> done) {
  auto out = std::make_shared<std::vector<std::optional<WatchedRow>>>(ids.size());
  over_rows(
      ids,
      [this, &ids](const std::vector<std::size_t>& part) {
        auto sub = pick(ids, part);
        return fcall_rows("cartd_watch", sub, sub);
      },
      [out](const std::vector<std::size_t>& part,
            const redis::Reply& r) -> boost::system::error_code {
        if (r.elements.size() != part.size()) return unexpected();
        for (std::size_t k = 0; k < part.size(); ++k) {
          auto row = decode_watched(r.elements[k]);
          if (!row) return row.error();
          (*out)[part[k]] = std::move(*row);
        }
        return {};
      },
      [out, done](boost::system::error_code ec) {
        if (ec) return done(ec);
        done(std::move(*out));
      });
}

namespace {

// A call's integer answer added to `sum`.
boost::system::error_code add_integer(const std::shared_ptr<std::int64_t>& sum,
                                      const redis::Reply& r) {
  if (r.type != redis::Reply::Type::integer) return unexpected();
  *sum += r.integer;
  return {};
}

}  // namespace

void StockService::mirror(const std::vector<db::StockRow>& rows, Callback<std::int64_t> done,
                          bool against_db) {
  auto sum = std::make_shared<std::int64_t>(0);
  over_rows(
      ids_of(rows),
      [this, &rows, against_db](const std::vector<std::size_t>& part) {
        return mirror_args(pick(rows, part), against_db);
      },
      [sum](const std::vector<std::size_t>&, const redis::Reply& r) { return add_integer(sum, r); },
      [sum, done](boost::system::error_code ec) {
        if (ec) return done(ec);
        done(*sum);
      });
}

namespace {

// FCALL arguments: inventory_id, on_hand, version per row, after `head`.
std::vector<std::string> on_hand_args(const std::vector<db::OnHandVersion>& rows) {
  std::vector<std::string> owned;
  for (const db::OnHandVersion& r : rows) {
    owned.push_back(r.inventory_id);
    owned.push_back(std::to_string(r.on_hand));
    owned.push_back(std::to_string(r.version));
  }
  return owned;
}

}  // namespace

std::string admin_hold_member(const std::string& request_id, std::int64_t quantity) {
  return std::string(kAdminHoldPrefix) + request_id + ":" + std::to_string(quantity);
}

void StockService::admin_hold(const std::string& inventory_id, const std::string& member,
                              std::int64_t quantity, std::chrono::milliseconds hold_for,
                              Callback<AdminHold> done) {
  std::string qty = std::to_string(quantity), ms = std::to_string(hold_for.count());
  send(redis_, fcall_rows("cartd_admin_hold", {inventory_id}, {inventory_id, member, qty, ms}),
       [done](redis::Result r) {
         if (!r) return done(r.error());
         auto tag = r->text_at(0);
         if (!tag) return done(unexpected());
         AdminHold out;
         if (*tag == "unknown_inventory") {
           out.kind = AdminHold::Kind::unknown_inventory;
           return done(out);
         }
         if (*tag == "below_reserved")
           out.kind = AdminHold::Kind::below_reserved;
         else if (*tag != "ok")
           return done(unexpected());
         out.counts = LiveCounts{r->int_at(1).value_or(0), r->int_at(2).value_or(0)};
         done(out);
       });
}

void StockService::apply_on_hand(const std::string& hold_inventory_id,
                                 const std::string& hold_member,
                                 const std::vector<db::OnHandVersion>& rows,
                                 Callback<std::vector<std::optional<LiveCounts>>> done) {
  // The hold's row is one more "row" of the call, so it lands in its own group's call;
  // its counts are not answered.
  std::vector<std::string> ids = ids_of(rows);
  if (!hold_inventory_id.empty()) ids.push_back(hold_inventory_id);
  auto out = std::make_shared<std::vector<std::optional<LiveCounts>>>(ids.size());
  over_rows(
      ids,
      [&](const std::vector<std::size_t>& part) {
        std::vector<std::string> keys_of, argv{"", ""};
        std::vector<db::OnHandVersion> sub;
        for (std::size_t i : part) {
          keys_of.push_back(ids[i]);
          if (i < rows.size()) {
            sub.push_back(rows[i]);
          } else {
            argv = {hold_inventory_id, hold_member};
          }
        }
        for (std::string& a : on_hand_args(sub)) argv.push_back(std::move(a));
        return fcall_rows("cartd_apply_on_hand", keys_of, std::move(argv));
      },
      [out, n = rows.size()](const std::vector<std::size_t>& part, const redis::Reply& r) {
        std::vector<std::size_t> answered;
        for (std::size_t i : part) {
          if (i < n) answered.push_back(i);
        }
        return place_counts(out, answered, r);
      },
      [out, n = rows.size(), done](boost::system::error_code ec) {
        if (ec) return done(ec);
        out->resize(n);
        done(std::move(*out));
      });
}

void StockService::sync_on_hand(const std::vector<db::OnHandVersion>& rows,
                                Callback<std::int64_t> done) {
  auto sum = std::make_shared<std::int64_t>(0);
  over_rows(
      ids_of(rows),
      [this, &rows](const std::vector<std::size_t>& part) {
        auto sub = pick(rows, part);
        return fcall_rows("cartd_sync_on_hand", ids_of(sub), on_hand_args(sub));
      },
      [sum](const std::vector<std::size_t>&, const redis::Reply& r) { return add_integer(sum, r); },
      [sum, done](boost::system::error_code ec) {
        if (ec) return done(ec);
        done(*sum);
      });
}

namespace {

const functions::GroupFunction kSweep{"cartd_sweep", keys::due, false};
const functions::GroupFunction kTakeDirty{"cartd_take_dirty", keys::dirty, true};

}  // namespace

void StockService::sweep(const std::vector<std::uint32_t>& groups, std::size_t batch,
                         Callback<Swept> each, std::function<void()> finished,
                         const GroupLease& lease) {
  // On a cluster the groups called are those with rows due by this host's clock (the
  // function goes by Redis' own).
  functions::call_groups(
      redis_, kSweep, groups, {std::to_string(batch)}, lease,
      [done = std::move(each)](redis::Result r) {
        if (!r) return done(r.error());
        auto rows = r->int_at(0), more = r->int_at(1), units = r->int_at(2);
        if (!rows || !more || !units) return done(unexpected());
        done(Swept{*rows, *units, *more == 1});
      },
      std::move(finished), "(" + std::to_string(epoch_ms()));
}

void StockService::take_dirty(const std::vector<std::uint32_t>& groups, std::size_t batch,
                              Callback<Dirty> each, std::function<void()> finished,
                              const GroupLease& lease) {
  functions::call_groups(
      redis_, kTakeDirty, groups, {std::to_string(batch)}, lease,
      [done = std::move(each)](redis::Result r) {
        if (!r) return done(r.error());
        auto more = r->int_at(0);
        if (r->type != redis::Reply::Type::array || !more || r->elements.size() % 3 != 1) {
          return done(unexpected());
        }
        Dirty dirty{{}, *more == 1};
        for (std::size_t i = 1; i < r->elements.size(); i += 3) {
          dirty.rows.push_back(DirtyRow{r->text_at(i).value_or(""), r->int_at(i + 1).value_or(0),
                                        r->int_at(i + 2).value_or(0)});
        }
        done(std::move(dirty));
      },
      std::move(finished));
}

void StockService::mark_dirty(const std::vector<std::string>& ids) {
  for (const std::string& id : ids) {
    redis_.command({"SADD", keys::dirty(keys::group_of(id)), id}, [](redis::Result) {});
  }
}

}  // namespace cartd::stock
