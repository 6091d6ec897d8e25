// sync: one blocking command on a plain hiredis connection, for tools that run outside
// the event loops (`cartd check`, the tests and benchmarks).
#pragma once

#include <string>
#include <vector>

#include "redis/reply.hpp"

struct redisContext;

namespace cartd::redis {

// Sends args and waits for the answer, copied. Throws std::runtime_error when the
// connection fails (the context is then unusable); an error reply is returned as one.
Reply sync_command(redisContext* ctx, const std::vector<std::string>& args);

}  // namespace cartd::redis
