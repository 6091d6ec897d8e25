// clock: wall-clock time as the API and the event streams write it.
#pragma once

#include <chrono>
#include <cstdint>

namespace cartd {

// Milliseconds since the epoch, now.
inline std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace cartd
