// keys: the Redis key names C++ reads directly. They must match src/lua/holds.lua, which
// describes the data model; the Lua functions are the only writers.
#pragma once

#include <string>
#include <string_view>

namespace cartd::cart {

inline std::string session_key(std::string_view sid) {
  return "s:{" + std::string(sid) + "}";
}
inline std::string cart_key(std::string_view sid) {
  return "c:{" + std::string(sid) + "}";
}

}  // namespace cartd::cart
