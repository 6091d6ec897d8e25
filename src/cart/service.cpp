#include "cart/service.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace cartd::cart {
namespace {

using Kind = SetLineOutcome::Kind;

class ReplyCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cartd.reply"; }
  std::string message(int) const override { return "Redis answered in an unexpected way"; }
};

boost::system::error_code unexpected(const redis::Reply& r) {
  spdlog::error("redis: unexpected reply: {}", r.is_error() ? r.str : "wrong shape");
  return ReplyErrc::unexpected_reply;
}

// Unwraps a transport result, then decodes it.
template <typename T, typename Decode>
void finish(redis::Result r, const Callback<T>& done, Decode decode) {
  if (!r) return done(r.error());
  done(decode(*r));
}

}  // namespace

boost::system::error_code make_error_code(ReplyErrc e) {
  static const ReplyCategory category;
  return {static_cast<int>(e), category};
}

boost::system::result<SetLineOutcome> decode_set_line(const redis::Reply& r) {
  auto tag = r.text_at(0);
  if (r.type != redis::Reply::Type::array || !tag) return unexpected(r);
  SetLineOutcome out;
  if (*tag == "ok") {
    auto sid = r.text_at(1);
    auto created = r.int_at(2), deadline = r.int_at(3), qty = r.int_at(4);
    if (!sid || !created || !deadline || !qty) return unexpected(r);
    out.session_id = *sid;
    out.created = *created == 1;
    out.deadline_ms = *deadline;
    out.quantity = *qty;
  } else if (*tag == "insufficient") {
    out.kind = Kind::insufficient;
    out.available = r.int_at(1).value_or(0);
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
  } else if (*tag == "no_cart") {
    out.kind = Kind::no_cart;
  } else {
    return unexpected(r);
  }
  return out;
}

boost::system::result<std::optional<CartView>> decode_cart(const redis::Reply& r) {
  if (r.is_nil()) return std::optional<CartView>{};
  auto deadline = r.int_at(0);
  if (r.type != redis::Reply::Type::array || !deadline || r.elements.size() % 2 != 1) {
    return unexpected(r);
  }
  CartView cart;
  cart.deadline_ms = *deadline;
  for (std::size_t i = 1; i + 1 < r.elements.size(); i += 2) {
    auto product = r.text_at(i), stored = r.text_at(i + 1);
    if (!product || !stored) return unexpected(r);
    auto space = stored->find(' ');
    if (space == std::string::npos) return unexpected(r);
    CartLine line{*product, stored->substr(0, space), 0};
    try {
      line.quantity = std::stoll(stored->substr(space + 1));
    } catch (const std::exception&) {
      return unexpected(r);
    }
    cart.lines.push_back(std::move(line));
  }
  std::sort(cart.lines.begin(), cart.lines.end(),
            [](const CartLine& a, const CartLine& b) { return a.product_id < b.product_id; });
  return std::optional<CartView>{std::move(cart)};
}

boost::system::result<std::optional<StockView>> decode_stock(std::string inventory_id,
                                                             const redis::Reply& r) {
  if (r.is_nil()) return std::optional<StockView>{};
  auto product = r.text_at(0);
  auto on_hand = r.int_at(1), reserved = r.int_at(2);
  if (!product || !on_hand || !reserved) return unexpected(r);
  return std::optional<StockView>{
      StockView{std::move(inventory_id), *product, *on_hand, *reserved}};
}

void CartService::set_line(const SetLineCall& c, Callback<SetLineOutcome> done) {
  std::string quantity = std::to_string(c.quantity);
  std::string ttl = std::to_string(settings_.ttl.count());
  std::string lifetime = std::to_string(settings_.max_lifetime.count());
  std::string max_lines = std::to_string(settings_.limits.max_lines);
  std::string max_qty = std::to_string(settings_.limits.max_line_quantity);
  redis_.command(
      {"FCALL", "cartd_set_line", "0", c.session_id, c.new_session_id, c.product_id, c.inventory_id,
       quantity, c.mode == LineMode::add ? "add" : "set", ttl, lifetime, max_lines, max_qty},
      [done = std::move(done)](redis::Result r) { finish(std::move(r), done, decode_set_line); });
}

void CartService::get_cart(const std::string& session_id, Callback<std::optional<CartView>> done) {
  redis_.command(
      {"FCALL", "cartd_get_cart", "0", session_id},
      [done = std::move(done)](redis::Result r) { finish(std::move(r), done, decode_cart); });
}

void CartService::stock(const std::string& inventory_id, Callback<std::optional<StockView>> done) {
  redis_.command({"FCALL", "cartd_stock", "0", inventory_id},
                 [done = std::move(done), inventory_id](redis::Result r) {
                   finish(std::move(r), done, [&](const redis::Reply& reply) {
                     return decode_stock(inventory_id, reply);
                   });
                 });
}

}  // namespace cartd::cart
