// ids: the ids that requests name (products, stock rows, idempotency keys of admin
// changes), checked before one may become part of a Redis key name or a URL.
#pragma once

#include <cstddef>
#include <string_view>

namespace cartd {

// 1-64 characters of [A-Za-z0-9._-]: safe inside a Redis key name and a URL path.
inline constexpr std::size_t kMaxIdLength = 64;
[[nodiscard]] bool is_valid_id(std::string_view id);

}  // namespace cartd
