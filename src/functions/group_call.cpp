#include "functions/group_call.hpp"

#include <memory>

#include "functions/keys.hpp"

namespace cartd::functions {
namespace {

// Counts the replies a round still waits for; `finished` runs when none is left.
struct Round {
  std::size_t waiting = 0;
  redis::ReplyHandler each;
  std::function<void()> finished;

  void answered(redis::Result r) {
    each(std::move(r));
    done();
  }
  void done() {
    if (--waiting == 0) finished();
  }
};

}  // namespace

void call_groups(redis::Commands& redis, const GroupFunction& fn,
                 const std::vector<std::uint32_t>& groups, std::vector<std::string> args,
                 const GroupLease& lease, redis::ReplyHandler each, std::function<void()> finished,
                 std::string until) {
  std::vector<std::string> indexes;
  for (std::uint32_t g : groups) indexes.push_back(fn.index(g));
  if (lease.owner.empty()) {
    return send(redis, keys::fcall(fn.name, std::move(indexes), std::move(args)),
                [each = std::move(each), finished = std::move(finished)](redis::Result r) {
                  each(std::move(r));
                  finished();
                });
  }
  // A cluster: one group per call, and only the groups a node says have work.
  args.push_back(lease.owner);
  args.push_back(std::to_string(lease.ttl.count()));
  auto parts = redis.by_node(indexes);
  auto named = std::make_shared<const std::vector<std::string>>(std::move(indexes));
  // One count for each node's probe, and one for the round itself, let go below: a round
  // whose probes all answer at once (Redis down) still finishes once.
  auto round =
      std::make_shared<Round>(Round{parts.size() + 1, std::move(each), std::move(finished)});
  for (auto& part : parts) {
    std::vector<std::string> probe{"FCALL", "cartd_groups_with_work", "0", lease.owner,
                                   fn.index_is_set ? std::string() : until};
    for (std::size_t i : part) probe.push_back((*named)[i]);
    std::vector<std::string_view> probe_args(probe.begin(), probe.end());
    const std::string& near = (*named)[part.front()];
    redis.command_near(
        near, probe_args,
        [&redis, fn, named, args, round, part = std::move(part)](redis::Result r) {
          if (!r) return round->answered(r.error());  // the node is down: once for its groups
          std::vector<std::size_t> work;
          if (r->type == redis::Reply::Type::array) {
            for (const redis::Reply& p : r->elements) {
              if (p.type == redis::Reply::Type::integer && p.integer >= 1 &&
                  static_cast<std::size_t>(p.integer) <= part.size()) {
                work.push_back(part[static_cast<std::size_t>(p.integer) - 1]);
              }
            }
          } else {
            work = part;  // an older library without the probe: every group, as before it
          }
          round->waiting += work.size();
          for (std::size_t i : work) {
            send(redis, keys::fcall(fn.name, {(*named)[i]}, args),
                 [round](redis::Result r) { round->answered(std::move(r)); });
          }
          round->done();
        });
  }
  round->done();
}

}  // namespace cartd::functions
