// mirror: copies stock rows from the main DB into Redis (st:{inv}).
//
// Every Redis connection runs the mirror step while it sets itself up: the first one
// in this process mirrors unconditionally (the DB is the truth for on_hand, and it may
// have changed while cartd was down); later ones mirror only if Redis lost the mirror
// (its marker key is gone: Redis restarted empty). Mirroring sets absolute values and
// recomputes reserved from the holds that exist, so running it twice, or from two
// instances at once, changes nothing.
//
// On a Redis Cluster the node connections have no setup step (their keys are spread
// over the nodes): mirror_cluster mirrors every row once at start, and the housekeeper's
// mirror sync writes whole rows, so a row a node lost is there again within a sync.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "db/store.hpp"

namespace cartd::redis {
class Client;
struct Endpoint;
}  // namespace cartd::redis

namespace cartd::stock {

using LoadRows = std::function<std::vector<db::StockRow>()>;
using SetupStep = std::function<void(redis::Client&, std::function<void(bool)>)>;

// The on_setup step for a Redis client. `mirrored_once` is shared by every client of
// this process.
SetupStep mirror_on_setup(LoadRows load_rows, std::shared_ptr<std::atomic<bool>> mirrored_once);

// Mirrors every row into the Redis Cluster the seeds belong to, each group's rows in a
// call of their own, on a cluster client of its own; waits up to 30 s for the cluster.
// False (logged) if it could not.
bool mirror_cluster(const std::vector<redis::Endpoint>& seeds, std::string_view library,
                    const LoadRows& load_rows, std::chrono::milliseconds command_timeout);

}  // namespace cartd::stock
