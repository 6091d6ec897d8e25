#include "cart/service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <memory>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include "base/clock.hpp"
#include "cart/replies.hpp"
#include "cart/split.hpp"
#include "functions/group_call.hpp"
#include "functions/keys.hpp"
#include "redis/commands.hpp"

namespace cartd::cart {

boost::system::error_code replies::unexpected(const redis::Reply& r) {
  spdlog::error("redis: unexpected reply: {}", r.is_error() ? r.str : "wrong shape");
  return ReplyErrc::unexpected_reply;
}

Missing replies::missing_from(std::string_view s) {
  if (s == "expired") return Missing::expired;
  if (s == "checked_out") return Missing::checked_out;
  return Missing::unknown;
}

namespace {

using replies::missing_from;
using replies::unexpected;

using Kind = SetLineOutcome::Kind;
using Type = redis::Reply::Type;

// Unwraps a transport result, then decodes it.
template <typename T, typename Decode>
void finish(redis::Result r, const Callback<T>& done, Decode decode) {
  if (!r) return done(boost::system::result<T>(boost::system::in_place_error, r.error()));
  done(decode(*r));
}

// Fields of a cart hash that are not lines (src/lua/holds.lua).
bool is_line_field(std::string_view field) {
  return field != "@" && field != "!" && field != "~" && !field.starts_with('?');
}

// The trailing waits_of array of a cart_view (holds.lua).
boost::system::result<void> decode_waits(const redis::Reply& r, CartView& cart) {
  for (const redis::Reply& w : r.elements) {
    if (auto ok = decode_wait(w, cart); !ok) return ok.error();
  }
  return {};
}

// Reads a cart_view (holds.lua) starting at element `first` of `r`.
boost::system::result<CartView> decode_view(std::string id, const redis::Reply& r) {
  constexpr std::size_t kFields = 5;
  auto deadline = r.int_at(0);
  if (r.type != Type::array || !deadline) return unexpected(r);
  std::size_t end = r.elements.size();
  bool waits = end >= 2 && r.elements.back().type == Type::array;
  if (waits) --end;
  if ((end - 1) % kFields != 0) return unexpected(r);
  CartView cart{std::move(id), *deadline, {}, {}, {}};
  if (waits) {
    if (auto ok = decode_waits(r.elements.back(), cart); !ok) return ok.error();
  }
  for (std::size_t i = 1; i < end; i += kFields) {
    auto product = r.text_at(i), inventory = r.text_at(i + 1), name = r.text_at(i + 3);
    auto qty = r.int_at(i + 2), price = r.int_at(i + 4);
    if (!product || !inventory || !qty || !name || !price) return unexpected(r);
    cart.lines.push_back(CartLine{*product, *inventory, *qty, *name, *price});
  }
  std::sort(cart.lines.begin(), cart.lines.end(),
            [](const CartLine& a, const CartLine& b) { return a.product_id < b.product_id; });
  return cart;
}

}  // namespace

boost::system::result<void> decode_wait(const redis::Reply& w, CartView& cart) {
  auto inv = w.text_at(0), pid = w.text_at(1), state = w.text_at(2);
  auto qty = w.int_at(3), n = w.int_at(4);
  if (w.type != Type::array || !inv || !pid || !state || !qty || !n) return unexpected(w);
  if (*state == "waiting") {
    cart.waitlist.push_back(WaitPlace{*inv, *pid, *qty, *n});
  } else {
    cart.offers.push_back(Offer{*inv, *pid, *qty, *n});
  }
  return {};
}

boost::system::result<SetLineOutcome> decode_set_line(const redis::Reply& r) {
  auto tag = r.text_at(0);
  if (r.type != Type::array || !tag) return unexpected(r);
  SetLineOutcome out;
  if (*tag == "ok") {
    auto sid = r.text_at(1);
    auto created = r.int_at(2), deadline = r.int_at(3);
    auto dropped = r.int_at(5);
    if (!sid || !created || !deadline || !dropped) return unexpected(r);
    out.created = *created == 1;
    out.dropped = *dropped;
    out.cart = CartView{*sid, *deadline, {}, {}, {}};
    if (r.elements.size() == 7) {
      auto view = decode_view(*sid, r.elements[6]);
      if (!view) return view.error();
      out.cart = std::move(*view);
    }
  } else if (*tag == "insufficient") {
    out.kind = Kind::insufficient;
    out.available = r.int_at(1).value_or(0);
    out.dropped = r.int_at(2).value_or(0);
    out.waitlisted = r.int_at(3).value_or(0) == 1;
  } else if (*tag == "unknown_inventory") {
    out.kind = Kind::unknown_inventory;
  } else if (*tag == "product_mismatch") {
    out.kind = Kind::product_mismatch;
    out.product_id = r.text_at(1).value_or("");
  } else if (*tag == "too_many_lines") {
    out.kind = Kind::too_many_lines;
    out.limit = r.int_at(1).value_or(0);
  } else if (*tag == "quantity_limit") {
    out.kind = Kind::quantity_limit;
    out.limit = r.int_at(1).value_or(0);
  } else if (*tag == "limit_exceeded") {
    out.kind = Kind::limit_exceeded;
    out.limit = r.int_at(1).value_or(0);
  } else if (*tag == "no_cart") {
    out.kind = Kind::no_cart;
    out.missing = missing_from(r.text_at(1).value_or(""));
  } else if (*tag == "checkout_in_progress") {
    out.kind = Kind::checkout_in_progress;
  } else {
    return unexpected(r);
  }
  return out;
}

boost::system::result<CartLookup> decode_cart(const std::string& id, const redis::Reply& r) {
  if (r.type == Type::string || r.type == Type::status) return CartLookup{{}, missing_from(r.str)};
  auto view = decode_view(id, r);
  if (!view) return view.error();
  return CartLookup{std::move(*view), Missing::unknown};
}

boost::system::result<CheckoutStart> decode_checkout_start(const redis::Reply& r) {
  using K = CheckoutStart::Kind;
  auto tag = r.text_at(0);
  if (r.type != Type::array || !tag) return unexpected(r);
  CheckoutStart out;
  if (*tag == "begun" || *tag == "resume") {
    out.kind = *tag == "begun" ? K::begun : K::resume;
    boost::system::error_code ec;
    auto lines = boost::json::parse(r.text_at(1).value_or(""), ec);
    if (ec || !lines.is_array()) return unexpected(r);
    for (const auto& l : lines.get_array()) {
      const auto* o = l.if_object();
      if (!o) return unexpected(r);
      try {
        out.lines.push_back(CartLine{std::string(o->at("product_id").as_string()),
                                     std::string(o->at("inventory_id").as_string()),
                                     o->at("quantity").to_number<std::int64_t>(),
                                     std::string(o->at("name").as_string()),
                                     o->at("unit_price_cents").to_number<std::int64_t>()});
      } catch (const std::exception&) {
        return unexpected(r);
      }
    }
    std::sort(out.lines.begin(), out.lines.end(),
              [](const CartLine& a, const CartLine& b) { return a.product_id < b.product_id; });
    out.attempt_id = r.text_at(2).value_or("");
    if (out.attempt_id.empty()) return unexpected(r);
  } else if (*tag == "done" || *tag == "conflict") {
    out.kind = *tag == "done" ? K::done : K::conflict;
    out.order_id = r.text_at(1).value_or("");
  } else if (*tag == "expired") {
    out.kind = K::expired;
  } else if (*tag == "unknown") {
    out.kind = K::unknown;
  } else if (*tag == "empty") {
    out.kind = K::empty;
  } else {
    return unexpected(r);
  }
  return out;
}

boost::system::result<CartLookup> decode_lines(const std::string& id, const redis::Reply& hash) {
  if (hash.type != Type::array || hash.elements.size() % 2 != 0) return unexpected(hash);
  if (hash.elements.empty()) return CartLookup{};
  CartView cart{id, 0, {}, {}, {}};
  for (std::size_t i = 0; i < hash.elements.size(); i += 2) {
    if (!is_line_field(hash.elements[i].str)) continue;
    const std::string& stored = hash.elements[i + 1].str;
    auto space = stored.find(' ');
    std::int64_t qty = 0;
    if (space == std::string::npos ||
        std::from_chars(stored.data() + space + 1, stored.data() + stored.size(), qty).ec !=
            std::errc{}) {
      return unexpected(hash);
    }
    cart.lines.push_back(CartLine{hash.elements[i].str, stored.substr(0, space), qty, "", 0});
  }
  std::sort(cart.lines.begin(), cart.lines.end(),
            [](const CartLine& a, const CartLine& b) { return a.product_id < b.product_id; });
  return CartLookup{std::move(cart), Missing::unknown};
}

CartService::CartService(redis::Commands& redis, CartSettings settings, metrics::Shard* metrics)
    : redis_(redis),
      settings_(std::move(settings)),
      metrics_(metrics),
      sold_out_(settings_.sold_out_memory),
      ttl_ms_(std::to_string(settings_.ttl.count())),
      max_lifetime_ms_(std::to_string(settings_.max_lifetime.count())),
      checkout_grace_ms_(std::to_string(settings_.checkout_grace.count())),
      max_lines_(std::to_string(settings_.limits.max_lines)),
      max_line_quantity_(std::to_string(settings_.limits.max_line_quantity)),
      quantum_ms_(std::to_string(settings_.deadline_quantum().count())),
      offer_window_ms_(std::to_string(settings_.offer_window.count())) {}

void CartService::wait(const std::string& session_id, const std::string& inventory_id,
                       std::int64_t quantity, Callback<Waited> done) {
  redis::ReplyHandler handler = [this, inventory_id, done = std::move(done)](redis::Result r) {
    finish(std::move(r), done, [&](const redis::Reply& reply) -> boost::system::result<Waited> {
      using K = Waited::Kind;
      auto tag = reply.text_at(0);
      if (reply.type != Type::array || !tag) return unexpected(reply);
      Waited w;
      // The row has a line now: if this loop remembers it sold out from before, it
      // remembers it without one, and would refuse the claim of the offer to come.
      if (*tag == "waiting" || *tag == "offered") sold_out_.forget(inventory_id);
      if (*tag == "waiting") {
        w.position = reply.int_at(1).value_or(0);
        w.joined = reply.int_at(2).value_or(0) == 1;
      } else if (*tag == "available") {
        w.kind = K::available;
        w.available = reply.int_at(1).value_or(0);
      } else if (*tag == "offered") {
        w.kind = K::offered;
        w.quantity = reply.int_at(1).value_or(0);
        w.expires_at_ms = reply.int_at(2).value_or(0);
      } else if (*tag == "unknown_inventory") {
        w.kind = K::unknown_inventory;
      } else if (*tag == "quantity_limit" || *tag == "limit_exceeded" || *tag == "too_many_waits") {
        w.kind = *tag == "quantity_limit"   ? K::quantity_limit
                 : *tag == "limit_exceeded" ? K::limit_exceeded
                                            : K::too_many_waits;
        w.limit = reply.int_at(1).value_or(0);
      } else if (*tag == "no_cart") {
        w.kind = K::no_cart;
        w.missing = missing_from(reply.text_at(1).value_or(""));
      } else if (*tag == "checkout_in_progress") {
        w.kind = K::checkout_in_progress;
      } else {
        return unexpected(reply);
      }
      return w;
    });
  };
  std::string qty = std::to_string(quantity);
  if (settings_.split_lines) {
    return split_wait(redis_, session_id, inventory_id, {qty, offer_window_ms_, max_line_quantity_},
                      WaitLimits{max_lines_, max_lifetime_ms_}, std::move(handler));
  }
  redis_.command({"FCALL", "cartd_wait", "2", keys::cart(session_id), keys::stock(inventory_id),
                  session_id, inventory_id, qty, offer_window_ms_, max_line_quantity_, max_lines_},
                 std::move(handler));
}

void CartService::leave(const std::string& session_id, const std::string& inventory_id,
                        Callback<std::optional<std::int64_t>> done) {
  redis::ReplyHandler handler = [this, inventory_id, done = std::move(done)](redis::Result r) {
    finish(std::move(r), done,
           [&](const redis::Reply& reply) -> boost::system::result<std::optional<std::int64_t>> {
             auto tag = reply.text_at(0);
             if (reply.type != Type::array || !tag) return unexpected(reply);
             if (*tag == "not_waiting") return std::optional<std::int64_t>();
             if (*tag != "left") return unexpected(reply);
             sold_out_.forget(inventory_id);  // it may have given units back
             return std::optional<std::int64_t>(reply.int_at(1).value_or(0));
           });
  };
  if (settings_.split_lines)
    return split_leave(redis_, session_id, inventory_id, std::move(handler));
  redis_.command({"FCALL", "cartd_leave", "2", keys::cart(session_id), keys::stock(inventory_id),
                  session_id, inventory_id},
                 std::move(handler));
}

void CartService::create_cart(const std::string& session_id, Callback<CartView> done) {
  redis::send(redis_,
              keys::fcall("cartd_create_cart", {keys::cart(session_id)},
                          {session_id, ttl_ms_, max_lifetime_ms_, quantum_ms_}),
              [done = std::move(done), session_id](redis::Result r) {
                finish(std::move(r), done,
                       [&](const redis::Reply& reply) { return decode_view(session_id, reply); });
              });
}

void CartService::set_line(const SetLineCall& c, Callback<SetLineOutcome> done) {
  // A request that needs at least one more unit (an add, or any line of a new cart) on a
  // row just seen sold out is refused without asking Redis. A set on a named cart may
  // lower a line it holds, so it always asks.
  bool needs_a_unit = c.quantity > 0 && (c.mode == LineMode::add || c.session_id.empty());
  if (needs_a_unit &&
      sold_out_.sold_out(c.inventory_id, SoldOutMemory::Clock::now(), !c.session_id.empty())) {
    if (metrics_ != nullptr) metrics_->count_hold(metrics::HoldResult::insufficient);
    SetLineOutcome refused;
    refused.kind = SetLineOutcome::Kind::insufficient;
    return done(std::move(refused));
  }
  Callback<SetLineOutcome> settle = [this, inv = c.inventory_id,
                                     done = std::move(done)](auto outcome) {
    note_outcome(inv, outcome);
    done(std::move(outcome));
  };
  if (c.session_id.empty()) {
    return call_set_line(c, c.new_session_id, !c.new_session_id.empty(), std::move(settle));
  }
  // The cart the request names, which this call may not create; only if it is not live
  // does a second call create the new one (its key may be in another slot).
  call_set_line(c, c.session_id, false, [this, c, settle = std::move(settle)](auto outcome) {
    if (outcome && outcome->kind == SetLineOutcome::Kind::no_cart && !c.new_session_id.empty()) {
      return call_set_line(c, c.new_session_id, true, settle);
    }
    settle(std::move(outcome));
  });
}

void CartService::note_outcome(const std::string& inventory_id,
                               const boost::system::result<SetLineOutcome>& outcome) {
  using metrics::HoldResult;
  using Kind = SetLineOutcome::Kind;
  if (outcome && outcome->kind == Kind::insufficient && outcome->available == 0) {
    sold_out_.remember(inventory_id, SoldOutMemory::Clock::now(), outcome->waitlisted);
  } else if (outcome && outcome->kind == Kind::ok) {
    sold_out_.forget(inventory_id);  // it may have returned units (a lower quantity)
  }
  if (metrics_ == nullptr) return;
  if (!outcome) return metrics_->count_hold(HoldResult::error);
  metrics_->count_released(metrics::ReleasePath::logical, outcome->dropped);
  metrics_->count_hold(outcome->kind == Kind::ok             ? HoldResult::ok
                       : outcome->kind == Kind::insufficient ? HoldResult::insufficient
                                                             : HoldResult::refused);
}

void CartService::call_set_line(const SetLineCall& c, const std::string& sid, bool create,
                                Callback<SetLineOutcome> done) {
  if (settings_.split_lines)
    return split_set_line(redis_, settings_, hints_, c, sid, create, std::move(done));
  std::string quantity = std::to_string(c.quantity);
  std::string cart = keys::cart(sid), row;
  std::vector<std::string_view> args{"FCALL", "cartd_set_line", "1", cart};
  if (c.quantity > 0) {
    row = keys::stock(c.inventory_id);
    args[2] = "2";
    args.push_back(row);
  }
  args.insert(args.end(), {sid, create ? "1" : "0", c.product_id, c.inventory_id, quantity,
                           c.mode == LineMode::add ? "add" : "set", ttl_ms_, max_lifetime_ms_,
                           max_lines_, max_line_quantity_, c.want_cart ? "view" : "", quantum_ms_});
  redis_.command(
      std::span<const std::string_view>(args),
      [done = std::move(done)](redis::Result r) { finish(std::move(r), done, decode_set_line); });
}

void CartService::get_cart(const std::string& session_id, Callback<CartLookup> done) {
  if (settings_.split_lines) return split_get_cart(redis_, session_id, std::move(done));
  redis_.command({"FCALL", "cartd_get_cart", "1", keys::cart(session_id), session_id},
                 [done = std::move(done), session_id](redis::Result r) {
                   finish(std::move(r), done, [&](const redis::Reply& reply) {
                     return decode_cart(session_id, reply);
                   });
                 });
}

void CartService::get_lines(const std::string& session_id, Callback<CartLookup> done) {
  redis_.command(
      {"HGETALL", keys::cart(session_id)}, [done = std::move(done), session_id](redis::Result r) {
        finish(std::move(r), done,
               [&](const redis::Reply& reply) { return decode_lines(session_id, reply); });
      });
}

void CartService::abandon(const std::string& session_id, Callback<Abandoned> done) {
  if (settings_.split_lines) {
    return split_abandon(redis_, settings_.line_lease, session_id,
                         [this, done = std::move(done)](boost::system::result<Abandoned> r) {
                           if (r && r->kind == Abandoned::Kind::abandoned) {
                             std::int64_t units = 0;
                             for (const CartLine& l : r->cart.lines) {
                               units += l.quantity;
                               sold_out_.forget(l.inventory_id);
                             }
                             if (metrics_ != nullptr) {
                               metrics_->count_released(metrics::ReleasePath::abandon, units);
                             }
                           }
                           done(std::move(r));
                         });
  }
  redis_.command({"FCALL", "cartd_abandon", "1", keys::cart(session_id), session_id},
                 [this, done = std::move(done), session_id, metrics = metrics_](redis::Result r) {
                   finish(std::move(r), done,
                          [&](const redis::Reply& reply) -> boost::system::result<Abandoned> {
                            using K = Abandoned::Kind;
                            auto tag = reply.text_at(0);
                            if (!tag) return unexpected(reply);
                            if (*tag == "checkout_in_progress")
                              return Abandoned{K::checkout_in_progress, {}, {}};
                            if (*tag != "abandoned" || reply.elements.size() != 3) {
                              return Abandoned{K::missing, {}, missing_from(*tag)};
                            }
                            if (metrics != nullptr) {
                              metrics->count_released(metrics::ReleasePath::abandon,
                                                      reply.int_at(2).value_or(0));
                            }
                            auto view = decode_view(session_id, reply.elements[1]);
                            if (!view) return view.error();
                            for (const CartLine& l : view->lines) sold_out_.forget(l.inventory_id);
                            return Abandoned{K::abandoned, std::move(*view), {}};
                          });
                 });
}

void CartService::checkout_begin(const std::string& session_id, const std::string& key,
                                 const std::string& attempt_id, Callback<CheckoutStart> done) {
  if (settings_.checkout_wait_replicas > 0) {
    done = [this, session_id, done = std::move(done)](boost::system::result<CheckoutStart> r) {
      wait_for_replicas(session_id, std::move(r), done);
    };
  }
  if (settings_.split_lines) {
    return split_checkout_begin(redis_, settings_, session_id, key, attempt_id, std::move(done));
  }
  redis_.command({"FCALL", "cartd_checkout_begin", "1", keys::cart(session_id), session_id, key,
                  checkout_grace_ms_, attempt_id, quantum_ms_},
                 [done = std::move(done)](redis::Result r) {
                   finish(std::move(r), done, decode_checkout_start);
                 });
}

void CartService::wait_for_replicas(const std::string& session_id,
                                    boost::system::result<CheckoutStart> start,
                                    const Callback<CheckoutStart>& done) {
  using K = CheckoutStart::Kind;
  if (!start || (start->kind != K::begun && start->kind != K::resume)) return done(start);
  std::vector<std::string> near{keys::cart(session_id)};
  for (const CartLine& l : start->lines) near.push_back(keys::stock(l.inventory_id));
  struct Wait {
    std::size_t left;
    std::int64_t fewest;
    boost::system::result<CheckoutStart> start;
    Callback<CheckoutStart> done;
  };
  auto wait = std::make_shared<Wait>(
      Wait{near.size(), settings_.checkout_wait_replicas, std::move(start), done});
  std::string replicas = std::to_string(settings_.checkout_wait_replicas);
  std::string timeout = std::to_string(settings_.checkout_wait.count());
  std::array<std::string_view, 3> args{"WAIT", replicas, timeout};
  for (const std::string& key : near) {
    redis_.command_near(
        key, args, [wait, session_id, asked = settings_.checkout_wait_replicas](redis::Result r) {
          wait->fewest = std::min(wait->fewest, r && r->type == Type::integer ? r->integer : 0);
          if (--wait->left > 0) return;
          // It goes on either way: the wait narrows the window a failover has to lose the
          // checkout's writes in; it cannot close it (replication stays asynchronous).
          if (wait->fewest < asked) {
            spdlog::debug("checkout {}: its Redis writes reached {} of {} replicas in time",
                          session_id, wait->fewest, asked);
          }
          wait->done(std::move(wait->start));
        });
  }
}

void CartService::checkout_finish(const std::string& session_id, const db::Order& order,
                                  const std::vector<db::OnHandVersion>& rows, Callback<bool> done) {
  if (settings_.split_lines) {
    auto units = std::make_shared<std::int64_t>(0);
    return split_checkout_finish(
        redis_, session_id, order, rows,
        [units, metrics = metrics_, done = std::move(done)](boost::system::result<bool> r) {
          if (metrics != nullptr && r) {
            metrics->count_released(metrics::ReleasePath::checkout, *units);
          }
          done(std::move(r));
        },
        units);
  }
  boost::json::array sold;
  for (const db::OrderLine& l : order.lines) {
    auto row = std::find_if(rows.begin(), rows.end(), [&](const db::OnHandVersion& r) {
      return r.inventory_id == l.inventory_id;
    });
    boost::json::object line{
        {"product_id", l.product_id}, {"inventory_id", l.inventory_id}, {"quantity", l.quantity}};
    if (row != rows.end()) {
      line["on_hand"] = row->on_hand;
      line["version"] = row->version;
    }
    sold.push_back(std::move(line));
  }
  std::string json = boost::json::serialize(sold);
  redis_.command(
      {"FCALL", "cartd_checkout_finish", "1", keys::cart(session_id), session_id,
       order.idempotency_key, order.order_id, json},
      [done = std::move(done), metrics = metrics_](redis::Result r) {
        finish(std::move(r), done, [&](const redis::Reply& reply) -> boost::system::result<bool> {
          auto tag = reply.text_at(0);
          if (!tag) {
            return boost::system::result<bool>(boost::system::in_place_error, unexpected(reply));
          }
          if (metrics != nullptr && *tag == "finished") {
            metrics->count_released(metrics::ReleasePath::checkout, reply.int_at(1).value_or(0));
          }
          return *tag == "finished" || *tag == "done";
        });
      });
}

void CartService::checkout_abort(const std::string& session_id, const std::string& key,
                                 const std::string& attempt_id,
                                 const std::vector<db::OnHandVersion>& rows, Callback<bool> done) {
  if (settings_.split_lines) {
    return split_checkout_abort(redis_, session_id, key, attempt_id, rows, std::move(done));
  }
  boost::json::array mirror;
  for (const db::OnHandVersion& r : rows) {
    mirror.push_back(boost::json::object{
        {"inventory_id", r.inventory_id}, {"on_hand", r.on_hand}, {"version", r.version}});
  }
  std::string json = boost::json::serialize(mirror);
  redis_.command(
      {"FCALL", "cartd_checkout_abort", "1", keys::cart(session_id), session_id, key, attempt_id,
       json},
      [done = std::move(done)](redis::Result r) {
        finish(std::move(r), done, [](const redis::Reply& reply) -> boost::system::result<bool> {
          if (reply.type != Type::integer) {
            return boost::system::result<bool>(boost::system::in_place_error, unexpected(reply));
          }
          return reply.integer == 1;
        });
      });
}

void CartService::expired(const std::string& session_id, Callback<bool> done) {
  redis::send(
      redis_, keys::fcall("cartd_expired", {keys::cart(session_id)}, {session_id}),
      [this, session_id, done = std::move(done)](redis::Result r) {
        // On a cluster, the rows the cart waited on: it leaves their lines (release.lua).
        if (r && r->type == Type::array && r->int_at(0) == 1) {
          std::vector<std::string> rows;
          for (std::size_t i = 1; i < r->elements.size(); ++i) rows.push_back(r->elements[i].str);
          return leave_rows(redis_, session_id, rows, [done] { done(true); });
        }
        finish(std::move(r), done, [](const redis::Reply& reply) -> boost::system::result<bool> {
          if (reply.type != Type::integer) {
            return boost::system::result<bool>(boost::system::in_place_error, unexpected(reply));
          }
          return reply.integer == 1;
        });
      });
}

namespace {

const functions::GroupFunction kCheckoutsStale{"cartd_checkouts_stale", keys::checkouts, false};

}  // namespace

void CartService::checkouts_stale(const std::vector<std::uint32_t>& groups,
                                  std::chrono::milliseconds age, std::size_t batch,
                                  Callback<std::vector<StaleCheckout>> each,
                                  std::function<void()> finished, const GroupLease& lease) {
  functions::call_groups(
      redis_, kCheckoutsStale, groups, {std::to_string(age.count()), std::to_string(batch)}, lease,
      [done = std::move(each)](redis::Result r) {
        finish(std::move(r), done,
               [](const redis::Reply& reply) -> boost::system::result<std::vector<StaleCheckout>> {
                 std::vector<StaleCheckout> out;
                 if (reply.type != Type::array || reply.elements.size() % 3 != 0) {
                   return unexpected(reply);
                 }
                 for (std::size_t i = 0; i < reply.elements.size(); i += 3) {
                   out.push_back({reply.elements[i].str, reply.elements[i + 1].str,
                                  reply.elements[i + 2].str});
                 }
                 return out;
               });
      },
      std::move(finished), std::to_string(epoch_ms() - age.count()));
}

}  // namespace cartd::cart
