// mirror: copies stock rows from the main DB into Redis (st:{inv}).
//
// Every Redis connection runs the mirror step while it sets itself up: the first one
// in this process mirrors unconditionally (the DB is the truth for on_hand, and it may
// have changed while cartd was down); later ones mirror only if Redis lost the mirror
// (its marker key is gone: Redis restarted empty). Mirroring sets absolute values and
// recomputes reserved from the holds that exist, so running it twice, or from two
// instances at once, changes nothing.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "db/store.hpp"

namespace cartd::redis {
class Client;
}  // namespace cartd::redis

namespace cartd::stock {

using LoadRows = std::function<std::vector<db::StockRow>()>;
using SetupStep = std::function<void(redis::Client&, std::function<void(bool)>)>;

// The on_setup step for a Redis client. `mirrored_once` is shared by every client of
// this process.
SetupStep mirror_on_setup(LoadRows load_rows, std::shared_ptr<std::atomic<bool>> mirrored_once);

}  // namespace cartd::stock
