// keys: the Redis key names of data model layout 2 (src/lua/holds.lua describes it).
// Every key carries its group's hash tag, {c<n>} for carts and {s<n>} for stock rows, so
// a group's data and indexes share one slot. group_of must match holds.lua's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cartd::keys {

inline constexpr std::uint32_t kGroups = 1024;
// The layout this build reads and writes (the value of kLayoutKey once migrated).
inline constexpr std::string_view kLayout = "2";
inline constexpr std::string_view kLayoutKey = "cartd:layout";
inline constexpr std::string_view kMirroredKey = "cartd:mirrored";

// A polynomial hash of the id's bytes mod a prime (exact in Lua's doubles), mod kGroups.
constexpr std::uint32_t group_of(std::string_view id) {
  std::uint32_t h = 0;
  for (char c : id) h = (h * 31 + static_cast<unsigned char>(c)) % 1000003;
  return h % kGroups;
}

inline std::string cart_tag(std::uint32_t group) {
  return "{c" + std::to_string(group) + "}";
}
inline std::string stock_tag(std::uint32_t group) {
  return "{s" + std::to_string(group) + "}";
}

// Per cart.
inline std::string cart(std::string_view sid) {
  return cart_tag(group_of(sid)) + ":" + std::string(sid);
}
inline std::string gone(std::string_view sid) {
  return cart_tag(group_of(sid)) + "g:" + std::string(sid);
}
// The rows a cart waits on (a Redis Cluster's waitlist), kept past the cart for its expiry.
inline std::string waits(std::string_view sid) {
  return cart_tag(group_of(sid)) + "w:" + std::string(sid);
}
// Per stock row.
inline std::string stock(std::string_view inv) {
  return stock_tag(group_of(inv)) + ":" + std::string(inv);
}
inline std::string pending(std::string_view inv) {
  return stock_tag(group_of(inv)) + "pd:" + std::string(inv);
}
// The row's offers to carts that waited: sid -> "quantity deadline".
inline std::string offers(std::string_view inv) {
  return stock_tag(group_of(inv)) + "of:" + std::string(inv);
}
inline std::string checkout(std::string_view sid) {
  return cart_tag(group_of(sid)) + "co:" + std::string(sid);
}
inline std::string done(std::string_view sid) {
  return cart_tag(group_of(sid)) + "ck:" + std::string(sid);
}
inline std::string hold_records(std::string_view inv) {
  return stock_tag(group_of(inv)) + "hc:" + std::string(inv);
}
inline std::string hold_deadlines(std::string_view inv) {
  return stock_tag(group_of(inv)) + "hx:" + std::string(inv);
}
inline std::string waitlist(std::string_view inv) {
  return stock_tag(group_of(inv)) + "wl:" + std::string(inv);
}
inline std::string wanted(std::string_view inv) {
  return stock_tag(group_of(inv)) + "wq:" + std::string(inv);
}
// Per group.
inline std::string checkouts(std::uint32_t group) {
  return cart_tag(group) + "#checkouts";
}
inline std::string events(std::uint32_t group) {
  return cart_tag(group) + "#events";
}
inline std::string dirty(std::uint32_t group) {
  return stock_tag(group) + "#dirty";
}
inline std::string due(std::uint32_t group) {
  return stock_tag(group) + "#due";
}

// The lease of a group's index (holds.lua, lease).
inline std::string lease(std::string_view index) {
  return std::string(index) + ":lease";
}

// FCALL `function` with `keys`, then `args`. On a Redis Cluster a call names the key it
// works on (the cart, the row, a group's index), which routes it; the cluster client names
// one key more, the slot's "{tag}#absent", which keeps any function from running while its
// slot migrates (redis/cluster.hpp), so a function may touch every key of its slot.
inline std::vector<std::string> fcall(std::string_view function, std::vector<std::string> keys,
                                      std::vector<std::string> args) {
  std::vector<std::string> out{"FCALL", std::string(function), std::to_string(keys.size())};
  out.reserve(3 + keys.size() + args.size());
  for (std::string& k : keys) out.push_back(std::move(k));
  for (std::string& a : args) out.push_back(std::move(a));
  return out;
}

// The session id of a cart key ("{c<n>}:<sid>"), or "" for any other key.
inline std::string_view sid_of_cart_key(std::string_view key) {
  if (!key.starts_with("{c")) return {};
  auto close = key.find("}:");
  if (close == std::string_view::npos) return {};
  return key.substr(close + 2);
}

}  // namespace cartd::keys
