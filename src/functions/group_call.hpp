// group_call: how a group function (cartd_sweep, cartd_take_dirty, cartd_checkouts_stale)
// is called. On a standalone Redis, one call takes the indexes of many groups and reads
// them itself. On a Redis Cluster, a call takes one group's index (a call's keys are of
// one slot), and the group's lease. Which groups to call is asked first, of each node at
// once (cartd_groups_with_work): an idle round is one call per node, not a call for each
// of the 1024 groups.
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
  bool index_is_set;  // any member is work, else those scored up to the round's bound
};

// Calls `fn` on `groups` with `args`, then the lease when it names an owner (a cluster);
// `each` gets each reply, `finished` runs after the last.
//
// On a standalone Redis that is one call on every group. On a cluster, first one call per
// node (cartd_groups_with_work) asks which of its groups have work: members in the index
// (of a sorted index, scored up to `until`, as ZRANGE BYSCORE takes it: "(123" is below
// 123) and a lease that is free or this owner's. Then `fn` is called on each of those.
// An idle round costs one call per node.
void call_groups(redis::Commands& redis, const GroupFunction& fn,
                 const std::vector<std::uint32_t>& groups, std::vector<std::string> args,
                 const GroupLease& lease, redis::ReplyHandler each, std::function<void()> finished,
                 std::string until = "+inf");

}  // namespace cartd::functions
