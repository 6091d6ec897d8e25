// group_call: how a group function (cartd_sweep, cartd_take_dirty, cartd_checkouts_stale)
// is called. On a standalone Redis, one call takes the indexes of many groups and reads
// them itself. On a Redis Cluster, a call takes one group and must name in KEYS every key
// it may touch (keys.hpp: a migrating slot then answers TRYAGAIN or ASK instead of
// running it on half of the slot), so it goes in two steps: read up to `batch` members of
// the group's index, then call the function on those members, their keys and the group's
// lease named, the members after the function's own arguments. Which groups to call is
// asked first, of each node at once (cartd_groups_with_work): an idle round is one call
// per node, not a read of each of the 1024 groups' indexes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/lease.hpp"
#include "redis/commands.hpp"

namespace cartd::functions {

struct GroupFunction {
  std::string_view name;
  std::string (*index)(std::uint32_t group);
  bool index_is_set;  // read with SRANDMEMBER, else ZRANGE BYSCORE (the lowest scores first)
  // Every key of the group's slot the function may touch besides the index and the
  // members' own keys.
  std::vector<std::string> (*group_keys)(std::uint32_t group);
  std::vector<std::string> (*member_keys)(std::string_view member);
};

// Calls `fn` on `groups` with `args`, then the lease when it names an owner (a cluster);
// `each` gets each reply, `finished` runs after the last.
//
// On a standalone Redis that is one call on every group. On a cluster, first one call per
// node (cartd_groups_with_work) asks which of its groups have work: members in the index
// (of a sorted index, scored up to `until`, as ZRANGE BYSCORE takes it: "(123" is below
// 123) and a lease that is free or this owner's. Then, for each of those, the group's
// index is read (up to `batch` members) and `fn` called on them. An idle round costs one
// call per node; a group that turns out to have no member gets no reply.
void call_groups(redis::Commands& redis, const GroupFunction& fn,
                 const std::vector<std::uint32_t>& groups, std::size_t batch,
                 std::vector<std::string> args, const GroupLease& lease, redis::ReplyHandler each,
                 std::function<void()> finished, std::string until = "+inf");

}  // namespace cartd::functions
