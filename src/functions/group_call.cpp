#include "functions/group_call.hpp"

#include <algorithm>
#include <memory>

#include "functions/keys.hpp"

namespace cartd::functions {
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
  // A cluster: one group per call. The members first (most groups have none), then,
  // for a group with some, its lease: no call when another instance holds it.
  std::uint32_t group = groups.at(0);
  std::string index = fn.index(group);
  args.push_back(lease.owner);
  args.push_back(std::to_string(lease.ttl.count()));
  std::string most = std::to_string(std::max<std::size_t>(batch, 1));
  std::vector<std::string> read =
      fn.index_is_set
          ? std::vector<std::string>{"SRANDMEMBER", index, most}
          : std::vector<std::string>{"ZRANGE", index, "-inf", until, "BYSCORE", "LIMIT", "0", most};
  send(redis, read,
       [&redis, fn, group, index, owner = lease.owner, args = std::move(args),
        handler = std::move(handler)](redis::Result members) mutable {
         if (!members) return handler(members.error());
         if (members->type != redis::Reply::Type::array) return handler(std::move(members));
         if (members->elements.empty()) return handler(redis::Reply{});
         send(
             redis, {"GET", keys::lease(index)},
             [&redis, fn, group, index, owner, args = std::move(args), handler = std::move(handler),
              members = std::move(*members)](redis::Result held) mutable {
               if (held && held->type == redis::Reply::Type::string && held->str != owner) {
                 return handler(redis::Reply{});
               }
               std::vector<std::string> named{index, keys::lease(index)};
               for (std::string& k : fn.group_keys(group)) named.push_back(std::move(k));
               for (const redis::Reply& m : members.elements) {
                 for (std::string& k : fn.member_keys(m.str)) named.push_back(std::move(k));
                 args.push_back(m.str);
               }
               send(redis, keys::fcall(fn.name, std::move(named), std::move(args)),
                    std::move(handler));
             });
       });
}

}  // namespace cartd::functions
