// migrate: brings a Redis that an older cartd used to the data layout this build reads
// (src/lua/holds.lua, layout 2), without losing a cart, a hold or a deadline.
//
// cartd runs it at start when Redis answers (and `cartd migrate` runs it alone). It is
// idempotent and safe when several instances start together: one takes a lock and
// migrates, one cart or stock row per atomic call; the others wait for it. It refuses
// while an older cartd is still connected (it would go on writing the old layout): stop
// every older instance first. Until the data is migrated, no connection serves: each
// asks cartd_layout when it connects.
#pragma once

#include <chrono>
#include <ostream>
#include <string_view>

#include "redis/client.hpp"
#include "redis/url.hpp"

namespace cartd::functions {

enum class LayoutResult {
  current,   // nothing to do (already layout 2, or an empty Redis)
  migrated,  // this call migrated the data
  refused,   // an older cartd is connected; nothing changed
};

// Loads `library` (replacing an older cartd's library, which would keep a newer one from
// loading) and migrates. Throws std::runtime_error when Redis fails or another
// instance's migration does not end within `wait`. Writes progress to `out`.
LayoutResult ensure_layout(const redis::Endpoint& endpoint, std::string_view library,
                           std::chrono::milliseconds wait, std::ostream& out);

// A connection's setup step: asks cartd_layout first, and fails (the connection does not
// serve; it retries) while Redis holds an older layout; then runs `next`.
redis::SetupStep check_layout_then(redis::SetupStep next);

}  // namespace cartd::functions
