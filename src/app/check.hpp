// check: `cartd check` verifies the invariants on live data, for operators and tests.
//
// Read-only. For every stock row it checks that the reserved count equals the sum of
// its holds (the hold invariant every Redis function keeps), that live holds leave
// available >= 0 (I1), and that the main DB has the same on_hand and, once quiet, the
// same reserved count (I5). For every cart it checks that something will release it:
// a live session or an entry in the deadline index (I3). Holds whose cart is gone are
// reported (they free themselves at their deadline, but should not exist).
#pragma once

#include <ostream>

#include "config/config.hpp"

namespace cartd::stock {

// Runs every check against config's Redis and main DB, writing one line per finding and
// a summary to `out`. Returns the number of violations (0: all hold), or -1 when Redis
// or the DB cannot be read.
int check_invariants(const Config& config, std::ostream& out);

}  // namespace cartd::stock
