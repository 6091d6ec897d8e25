#include "stock/service.hpp"

#include "cart/service.hpp"

namespace cartd::stock {
namespace {

boost::system::error_code unexpected() {
  return cart::ReplyErrc::unexpected_reply;
}

}  // namespace

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
  redis_.command({"FCALL", "cartd_stock", "0", inventory_id},
                 [done = std::move(done), inventory_id](redis::Result r) {
                   if (!r) return done(r.error());
                   done(decode_stock(inventory_id, *r));
                 });
}

std::vector<std::string> mirror_args(const std::vector<db::StockRow>& rows) {
  std::vector<std::string> args;
  args.reserve(rows.size() * 6);
  for (const db::StockRow& r : rows) {
    args.push_back(r.inventory_id);
    args.push_back(r.product_id);
    args.push_back(std::to_string(r.on_hand));
    args.push_back(std::to_string(r.version));
    args.push_back(r.name);
    args.push_back(std::to_string(r.price_cents));
  }
  return args;
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

void StockService::counts(const std::vector<std::string>& ids,
                          Callback<std::vector<std::optional<LiveCounts>>> done) {
  std::vector<std::string_view> args{"FCALL", "cartd_stock_many", "0"};
  args.insert(args.end(), ids.begin(), ids.end());
  redis_.command(std::span<const std::string_view>(args), [done, n = ids.size()](redis::Result r) {
    if (!r) return done(r.error());
    done(decode_counts(*r, n));
  });
}

void StockService::mirror(const std::vector<db::StockRow>& rows, Callback<std::int64_t> done) {
  std::vector<std::string> owned = mirror_args(rows);
  std::vector<std::string_view> args{"FCALL", "cartd_mirror", "0"};
  args.insert(args.end(), owned.begin(), owned.end());
  redis_.command(std::span<const std::string_view>(args), [done](redis::Result r) {
    if (!r) return done(r.error());
    if (r->type != redis::Reply::Type::integer) return done(unexpected());
    done(r->integer);
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
  redis_.command({"FCALL", "cartd_admin_hold", "0", inventory_id, member, qty, ms},
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
  std::vector<std::string> owned = on_hand_args(rows);
  std::vector<std::string_view> args{"FCALL", "cartd_apply_on_hand", "0", hold_inventory_id,
                                     hold_member};
  args.insert(args.end(), owned.begin(), owned.end());
  redis_.command(std::span<const std::string_view>(args), [done, n = rows.size()](redis::Result r) {
    if (!r) return done(r.error());
    done(decode_counts(*r, n));
  });
}

void StockService::sync_on_hand(const std::vector<db::OnHandVersion>& rows,
                                Callback<std::int64_t> done) {
  std::vector<std::string> owned = on_hand_args(rows);
  std::vector<std::string_view> args{"FCALL", "cartd_sync_on_hand", "0"};
  args.insert(args.end(), owned.begin(), owned.end());
  redis_.command(std::span<const std::string_view>(args), [done](redis::Result r) {
    if (!r) return done(r.error());
    if (r->type != redis::Reply::Type::integer) return done(unexpected());
    done(r->integer);
  });
}

}  // namespace cartd::stock
