#include "redis/sync.hpp"

#include <hiredis/hiredis.h>

#include <stdexcept>

namespace cartd::redis {

Reply sync_command(redisContext* ctx, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (r == nullptr) throw std::runtime_error(std::string("redis: ") + ctx->errstr);
  Reply out = copy_reply(*r);
  freeReplyObject(r);
  return out;
}

}  // namespace cartd::redis
