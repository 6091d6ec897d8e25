// The arithmetic of the connection cap and the throttle on repeated warnings.
#include <gtest/gtest.h>

#include "http/server.hpp"

namespace cartd::http {
namespace {

using namespace std::chrono_literals;

TEST(MaxConnectionsFor, keeps_the_reserve_out_of_the_open_file_limit) {
  EXPECT_EQ(max_connections_for(1024, 96), 928u);
  EXPECT_EQ(max_connections_for(1 << 20, 96), (1u << 20) - 96);
}

TEST(MaxConnectionsFor, a_tiny_limit_still_leaves_half_for_clients) {
  EXPECT_EQ(max_connections_for(128, 96), 64u);
  EXPECT_EQ(max_connections_for(2, 96), 1u);
  EXPECT_EQ(max_connections_for(0, 96), 1u);
}

TEST(ConnectionShare, the_loops_shares_add_up_to_the_cap) {
  EXPECT_EQ(connection_share(50, 2, 0), 25u);
  EXPECT_EQ(connection_share(50, 2, 1), 25u);
  std::size_t sum = 0;
  for (std::size_t i = 0; i < 3; ++i) sum += connection_share(100, 3, i);
  EXPECT_EQ(sum, 100u);
  EXPECT_EQ(connection_share(100, 3, 0), 34u);
  EXPECT_EQ(connection_share(100, 3, 2), 33u);
  EXPECT_EQ(connection_share(1, 4, 3), 1u) << "every loop serves at least one";
}

TEST(WarningThrottle, lets_one_warning_through_per_interval_and_counts_the_rest) {
  WarningThrottle throttle(1s);
  WarningThrottle::Clock::time_point t0{};
  EXPECT_EQ(throttle.admit(t0), 0u) << "the first one is logged";
  for (int i = 0; i < 21; ++i) EXPECT_FALSE(throttle.admit(t0 + 10ms * (i + 1)));
  EXPECT_EQ(throttle.admit(t0 + 1s), 21u) << "the next one says how many were held back";
  EXPECT_FALSE(throttle.admit(t0 + 1500ms));
  EXPECT_EQ(throttle.admit(t0 + 5s), 1u);
  EXPECT_EQ(throttle.admit(t0 + 10s), 0u);
}

}  // namespace
}  // namespace cartd::http
