// replies: building Redis replies by hand, for tests and benchmarks of the decoders.
#pragma once

#include <string>
#include <vector>

#include "redis/reply.hpp"

namespace cartd::test {

inline redis::Reply str(std::string s) {
  return redis::Reply{redis::Reply::Type::string, 0, std::move(s), {}};
}
inline redis::Reply num(std::int64_t v) {
  return redis::Reply{redis::Reply::Type::integer, v, "", {}};
}
inline redis::Reply arr(std::vector<redis::Reply> e) {
  return redis::Reply{redis::Reply::Type::array, 0, "", std::move(e)};
}

}  // namespace cartd::test
