#include "functions/group_call.hpp"

#include <algorithm>
#include <memory>
#include <optional>

#include "functions/keys.hpp"

namespace cartd::functions {
namespace {

void send(redis::Commands& redis, const std::vector<std::string>& owned,
          redis::ReplyHandler handler) {
  std::vector<std::string_view> args(owned.begin(), owned.end());
  redis.command(std::span<const std::string_view>(args), std::move(handler));
}

}  // namespace

void call_group(redis::Commands& redis, const GroupFunction& fn,
                const std::vector<std::uint32_t>& groups, std::size_t batch,
                std::vector<std::string> args, const GroupLease& lease, redis::ReplyHandler handler,
                std::string until) {
  if (lease.owner.empty()) {
    std::vector<std::string> indexes;
    for (std::uint32_t g : groups) indexes.push_back(fn.index(g));
    return send(redis, keys::fcall(fn.name, std::move(indexes), std::move(args)),
                std::move(handler));
  }
  // A cluster: one group per call. The lease and the members are read at once.
  struct Read {
    std::uint32_t group;
    std::string index;
    std::vector<std::string> args;
    redis::ReplyHandler handler;
    std::optional<redis::Result> lease, members;
  };
  auto read = std::make_shared<Read>(
      Read{groups.at(0), fn.index(groups.at(0)), std::move(args), std::move(handler), {}, {}});
  read->args.push_back(lease.owner);
  read->args.push_back(std::to_string(lease.ttl.count()));
  std::string most = std::to_string(std::max<std::size_t>(batch, 1));
  auto then = [&redis, fn, read, owner = lease.owner] {
    if (!read->lease || !read->members) return;
    redis::Result& r = *read->members;
    if (!r) return read->handler(r.error());
    if (r->type != redis::Reply::Type::array) return read->handler(std::move(r));
    const redis::Result& held = *read->lease;
    bool others = held && held->type == redis::Reply::Type::string && held->str != owner;
    if (r->elements.empty() || others) return read->handler(redis::Reply{});
    std::vector<std::string> named{read->index, keys::lease(read->index)};
    for (std::string& k : fn.group_keys(read->group)) named.push_back(std::move(k));
    for (const redis::Reply& m : r->elements) {
      for (std::string& k : fn.member_keys(m.str)) named.push_back(std::move(k));
      read->args.push_back(m.str);
    }
    send(redis, keys::fcall(fn.name, std::move(named), std::move(read->args)),
         std::move(read->handler));
  };
  send(redis, {"GET", keys::lease(read->index)}, [read, then](redis::Result r) {
    read->lease = std::move(r);
    then();
  });
  send(redis,
       fn.index_is_set ? std::vector<std::string>{"SRANDMEMBER", read->index, most}
                       : std::vector<std::string>{"ZRANGE", read->index, "-inf", until, "BYSCORE",
                                                  "LIMIT", "0", most},
       [read, then](redis::Result r) {
         read->members = std::move(r);
         then();
       });
}

}  // namespace cartd::functions
