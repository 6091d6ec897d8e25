#include "redis/sync.hpp"

#include <hiredis/hiredis.h>

#include <stdexcept>

namespace cartd::redis {

namespace {

void append(redisContext* ctx, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  redisAppendCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data());
}

Reply read_reply(redisContext* ctx) {
  void* raw = nullptr;
  if (redisGetReply(ctx, &raw) != REDIS_OK || raw == nullptr) {
    throw std::runtime_error(std::string("redis: ") + ctx->errstr);
  }
  auto* r = static_cast<redisReply*>(raw);
  Reply out = copy_reply(*r);
  freeReplyObject(r);
  return out;
}

}  // namespace

Reply sync_command(redisContext* ctx, const std::vector<std::string>& args) {
  append(ctx, args);
  return read_reply(ctx);
}

std::vector<Reply> sync_pipeline(redisContext* ctx,
                                 const std::vector<std::vector<std::string>>& commands) {
  for (const auto& args : commands) append(ctx, args);
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  for (std::size_t i = 0; i < commands.size(); ++i) replies.push_back(read_reply(ctx));
  return replies;
}

void ContextFree::operator()(redisContext* c) const {
  redisFree(c);
}

Reply sync_run(redisContext* ctx, const std::vector<std::string>& args) {
  Reply r = sync_command(ctx, args);
  if (r.is_error()) throw std::runtime_error("redis: " + r.str);
  return r;
}

SyncContext sync_connect(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  SyncContext c(redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port, tv));
  if (!c || c->err) {
    throw std::runtime_error("cannot connect to Redis at " + endpoint.host + ":" +
                             std::to_string(endpoint.port));
  }
  redisSetTimeout(c.get(), tv);
  if (!endpoint.password.empty()) {
    if (endpoint.user.empty()) {
      sync_run(c.get(), {"AUTH", endpoint.password});
    } else {
      sync_run(c.get(), {"AUTH", endpoint.user, endpoint.password});
    }
  }
  sync_run(c.get(), {"SELECT", std::to_string(endpoint.db)});
  return c;
}

}  // namespace cartd::redis
