// app: wires cartd together and runs it: one event loop per thread (each with its own
// acceptor, Redis connection and routes), and the housekeeper beside them.
#pragma once

#include "config/config.hpp"

namespace cartd {

// Runs until SIGINT or SIGTERM; returns the process exit code.
int run(const Config& config);
// `cartd migrate`: brings Redis to this version's data layout; returns the exit code.
int migrate(const Config& config);

}  // namespace cartd
