// lease: who does a key group's housekeeping (the sweep, the DB writer's read, checkout
// recovery) when several cartd instances share a Redis Cluster (src/lua/holds.lua, lease).
#pragma once

#include <chrono>
#include <string>

namespace cartd {

struct GroupLease {
  std::string owner;                 // this instance; "" takes no lease (a standalone Redis)
  std::chrono::milliseconds ttl{0};  // how long a lease lasts after its holder's last call
};

}  // namespace cartd
