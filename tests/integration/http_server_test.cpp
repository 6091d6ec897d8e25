// The HTTP server's own contract, below the routes: the headers every JSON answer
// carries, strict request parsing (framing, Host, methods), and connection limits.
// Raw sockets where a well-behaved client library would hide the problem.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>

#include "harness.hpp"

namespace cartd::test {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

constexpr const char* kCatalog = R"json([
  {"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 1499, "on_hand": 10},
  {"inventory_id": "cap", "product_id": "cap", "name": "Cap", "price_cents": 2499, "on_hand": 20}
])json";

// A TCP connection to cartd that sends and reads bytes exactly as the test says.
class RawConnection {
 public:
  explicit RawConnection(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    if (fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect failed");
    }
  }
  ~RawConnection() { ::close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  void send(const std::string& bytes) {
    if (::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
      throw std::runtime_error("send failed");
  }

  // Everything that arrives until the peer closes or `timeout` passes; `closed` says which.
  std::string read_until_closed(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    std::string out;
    auto until = std::chrono::steady_clock::now() + timeout;
    bool eof = false;
    while (!eof) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        eof = true;  // closed (0) or reset (-1)
      } else {
        out.append(buf, static_cast<std::size_t>(n));
      }
    }
    if (closed) *closed = eof;
    return out;
  }

  // One answer's worth of bytes: reads until a full head and Content-Length body arrived.
  std::string read_answer(std::chrono::milliseconds timeout) {
    std::string out;
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      auto head_end = out.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        auto at = out.find("Content-Length: ");
        std::size_t length = at == std::string::npos ? 0 : std::stoul(out.substr(at + 16));
        if (out.size() >= head_end + 4 + length) return out;
      }
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  // Whether the peer has closed the connection (without waiting).
  bool closed_by_peer() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
  }

 private:
  int fd_;
};

std::string line_body(const std::string& extra = "") {
  return R"({"product_id":"mug","inventory_id":"mug","quantity":1)" + extra + "}";
}

class HttpServer : public ::testing::Test {
 protected:
  RedisServer redis_;
  Cartd cartd_{redis_, kCatalog};
};

TEST_F(HttpServer, json_answers_say_nosniff_and_no_store) {
  std::string cart(cartd_.post("/v1/carts", "").json().at("id").as_string());
  std::vector<std::pair<std::string, HttpResponse>> answers{
      {"200 healthz", cartd_.get("/healthz")},
      {"200 stock", cartd_.get("/v1/stock/mug")},
      {"200 cart", cartd_.get("/v1/carts/" + cart)},
      {"200 classic", cartd_.post("/add-to-cart", line_body())},
      {"400 classic", cartd_.post("/add-to-cart", "{")},
      {"404 route", cartd_.get("/nope")},
      {"405", cartd_.get("/add-to-cart")},
      {"413", cartd_.post("/add-to-cart", std::string(1 << 20, ' '))},
  };
  for (auto& [name, r] : answers) {
    EXPECT_EQ(r.headers["content-type"], "application/json") << name;
    EXPECT_EQ(r.headers["x-content-type-options"], "nosniff") << name;
    EXPECT_EQ(r.headers["cache-control"], "no-store") << name;
  }
}

TEST_F(HttpServer, a_body_with_a_duplicate_key_is_refused_and_changes_nothing) {
  std::string cart(cartd_.post("/v1/carts", "").json().at("id").as_string());
  auto before = redis_.snapshot();

  auto classic = cartd_.post("/add-to-cart", line_body(R"(,"quantity":9)"));
  EXPECT_EQ(classic.status, 400u) << classic.body;
  EXPECT_NE(classic.json().at("message").as_string().find("quantity"), json::string::npos)
      << classic.body;

  auto v1 = cartd_.post("/v1/carts/" + cart + "/items", line_body(R"(,"product_id":"cap")"));
  EXPECT_EQ(v1.status, 400u) << v1.body;
  EXPECT_EQ(v1.json().at("error").at("code"), "duplicate_key") << v1.body;

  EXPECT_EQ(redis_.snapshot(), before);
}

}  // namespace
}  // namespace cartd::test
