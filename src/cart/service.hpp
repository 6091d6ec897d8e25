// service: cart operations as calls of the cartd Redis Functions, one round trip each.
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cart/rules.hpp"
#include "redis/client.hpp"

namespace cartd::cart {

struct CartSettings {
  std::chrono::milliseconds ttl{900'000};
  std::chrono::milliseconds max_lifetime{7'200'000};
  Limits limits;
};

enum class LineMode { set, add };

struct SetLineCall {
  std::string session_id;      // "" when the request names no cart
  std::string new_session_id;  // used if session_id is not a live cart; "" forbids a new cart
  std::string product_id;
  std::string inventory_id;
  std::int64_t quantity = 0;
  LineMode mode = LineMode::set;
};

struct SetLineOutcome {
  enum class Kind {
    ok,
    insufficient,  // `available` units are free
    unknown_inventory,
    product_mismatch,  // the row holds `product_id`
    too_many_lines,    // `limit`
    quantity_limit,    // `limit`
    no_cart,
  };
  Kind kind = Kind::ok;
  std::string session_id;
  bool created = false;
  std::int64_t deadline_ms = 0;
  std::int64_t quantity = 0;
  std::int64_t available = 0;
  std::int64_t limit = 0;
  std::string product_id;
};

struct CartLine {
  std::string product_id;
  std::string inventory_id;
  std::int64_t quantity = 0;
};

struct CartView {
  std::int64_t deadline_ms = 0;
  std::vector<CartLine> lines;  // sorted by product_id
};

struct StockView {
  std::string inventory_id;
  std::string product_id;
  std::int64_t on_hand = 0;
  std::int64_t reserved = 0;
  std::int64_t available() const { return on_hand - reserved; }
};

template <typename T>
using Callback = std::function<void(boost::system::result<T>)>;

class CartService {
 public:
  CartService(redis::Client& redis, CartSettings settings)
      : redis_(redis), settings_(std::move(settings)) {}

  const CartSettings& settings() const { return settings_; }

  void set_line(const SetLineCall& call, Callback<SetLineOutcome> done);
  // nullopt: no such live cart.
  void get_cart(const std::string& session_id, Callback<std::optional<CartView>> done);
  // nullopt: no such stock row.
  void stock(const std::string& inventory_id, Callback<std::optional<StockView>> done);

 private:
  redis::Client& redis_;
  CartSettings settings_;
};

// Decoders of the functions' replies (src/lua), kept apart to be tested on their own.
boost::system::result<SetLineOutcome> decode_set_line(const redis::Reply& r);
boost::system::result<std::optional<CartView>> decode_cart(const redis::Reply& r);
boost::system::result<std::optional<StockView>> decode_stock(std::string inventory_id,
                                                             const redis::Reply& r);

// An unexpected reply (a Lua error, a wrong shape): a server fault, not the client's.
enum class ReplyErrc { unexpected_reply = 1 };
boost::system::error_code make_error_code(ReplyErrc e);

}  // namespace cartd::cart

template <>
struct boost::system::is_error_code_enum<cartd::cart::ReplyErrc> : std::true_type {};
