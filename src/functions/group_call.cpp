#include "functions/group_call.hpp"

#include <memory>

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
                std::vector<std::string> args, const GroupLease& lease,
                redis::ReplyHandler handler) {
  if (lease.owner.empty()) {
    std::vector<std::string> indexes;
    for (std::uint32_t g : groups) indexes.push_back(fn.index(g));
    return send(redis, keys::fcall(fn.name, std::move(indexes), std::move(args)),
                std::move(handler));
  }
  // A cluster: one group per call.
  std::uint32_t group = groups.at(0);
  std::string index = fn.index(group);
  std::vector<std::string> read =
      fn.index_is_set ? std::vector<std::string>{"SRANDMEMBER", index, std::to_string(batch)}
                      : std::vector<std::string>{"ZRANGE", index, "0", std::to_string(batch - 1)};
  args.push_back(lease.owner);
  args.push_back(std::to_string(lease.ttl.count()));
  send(redis, read,
       [&redis, fn, group, index, args = std::move(args),
        handler = std::move(handler)](redis::Result r) mutable {
         if (!r) return handler(r.error());
         if (r->type != redis::Reply::Type::array) return handler(std::move(r));
         if (r->elements.empty()) return handler(redis::Reply{});
         std::vector<std::string> named{index, keys::lease(index)};
         for (std::string& k : fn.group_keys(group)) named.push_back(std::move(k));
         for (const redis::Reply& m : r->elements) {
           for (std::string& k : fn.member_keys(m.str)) named.push_back(std::move(k));
           args.push_back(m.str);
         }
         send(redis, keys::fcall(fn.name, std::move(named), std::move(args)), std::move(handler));
       });
}

}  // namespace cartd::functions
