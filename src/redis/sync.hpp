// sync: one blocking command on a plain hiredis connection, for tools that run outside
// the event loops (`cartd check`, the tests and benchmarks).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "redis/reply.hpp"
#include "redis/url.hpp"

struct redisContext;

namespace cartd::redis {

struct ContextFree {
  void operator()(redisContext* c) const;
};
using SyncContext = std::unique_ptr<redisContext, ContextFree>;

// Connects, authenticates and selects the endpoint's database. Throws
// std::runtime_error (naming no password) when any of it fails.
SyncContext sync_connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);

// Sends every command in one write and reads their answers, in order (error replies are
// returned as such). Throws std::runtime_error when the connection fails.
std::vector<Reply> sync_pipeline(redisContext* ctx,
                                 const std::vector<std::vector<std::string>>& commands);

// sync_command, but an error reply throws too.
Reply sync_run(redisContext* ctx, const std::vector<std::string>& args);

// Sends args and waits for the answer, copied. Throws std::runtime_error when the
// connection fails (the context is then unusable); an error reply is returned as one.
Reply sync_command(redisContext* ctx, const std::vector<std::string>& args);

}  // namespace cartd::redis
