// limits: what one connection and the server as a whole may take. Free of Beast, so the
// configuration can name them without pulling in the server.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace cartd::http {

struct ServerLimits {
  std::size_t max_body_bytes = 16 * 1024;
  std::size_t max_header_bytes = 8 * 1024;
  std::chrono::seconds idle_timeout{30};
  // A new connection must deliver its whole first request within this: a client that
  // connects and says nothing holds a descriptor, and the keep-alive time is for clients
  // that have shown they are real.
  std::chrono::milliseconds first_request_timeout{5000};
  // Open connections in all, over every loop (each is a descriptor). 0: derived from the
  // open-file limit at start (see max_connections_for).
  std::size_t max_connections = 0;
  // Origins whose pages may call the API from a browser (CORS); "*" allows any. Empty:
  // only pages served by cartd itself (same origin).
  std::vector<std::string> cors_origins;
};

}  // namespace cartd::http
