// The HTTP server's own contract, below the routes: the headers every JSON answer
// carries, strict request parsing (framing, Host, methods), and connection limits.
// Raw sockets where a well-behaved client library would hide the problem.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <memory>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace cartd::test {
namespace http_server_test {

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

// How many "HTTP/1.1 " status lines a byte stream holds: the answers to it.
std::size_t answers_in(const std::string& bytes) {
  std::size_t n = 0;
  for (auto at = bytes.find("HTTP/1.1 "); at != std::string::npos;
       at = bytes.find("HTTP/1.1 ", at + 1)) {
    ++n;
  }
  return n;
}

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

// A request head for raw sends: `fields` are whole header lines.
std::string request_head(const std::string& start, const std::vector<std::string>& fields) {
  std::string out = start + "\r\n";
  for (const auto& f : fields) out += f + "\r\n";
  return out + "\r\n";
}

// A request hidden in a body: answered only if the body is read as a second request.
const std::string kSmuggled = "GET /v1/stock/mug HTTP/1.1\r\nHost: shop\r\n\r\n";

TEST_F(HttpServer, a_transfer_encoding_other_than_chunked_is_refused_and_the_body_never_answered) {
  auto before = redis_.snapshot();
  struct Case {
    std::vector<std::string> fields;
    std::string body;
    std::string status;
  };
  std::string chunked = "5\r\n{\"a\":\r\n0\r\n\r\n";
  for (const Case& c : std::vector<Case>{
           {{"Transfer-Encoding: chunked, gzip"}, kSmuggled, "400"},
           {{"Transfer-Encoding: gzip"}, kSmuggled, "400"},
           {{"Transfer-Encoding: x-unknown"}, kSmuggled, "400"},
           {{"Transfer-Encoding: gzip", "Content-Length: " + std::to_string(kSmuggled.size())},
            kSmuggled,
            "400"},
           {{"Transfer-Encoding: chunked", "Content-Length: 3"}, chunked + kSmuggled, "400"},
           {{"Content-Length: 3", "Transfer-Encoding: chunked"}, chunked + kSmuggled, "400"},
           {{"Transfer-Encoding: gzip, chunked"}, chunked + kSmuggled, "501"},
           {{"Transfer-Encoding: gzip", "Transfer-Encoding: chunked"}, chunked + kSmuggled, "501"},
       }) {
    std::vector<std::string> fields{"Host: shop", "Content-Type: application/json"};
    fields.insert(fields.end(), c.fields.begin(), c.fields.end());
    RawConnection conn(cartd_.port());
    conn.send(request_head("POST /add-to-cart HTTP/1.1", fields) + c.body);
    bool closed = false;
    std::string answers = conn.read_until_closed(3s, &closed);
    std::string name = c.fields[0] + (c.fields.size() > 1 ? " + " + c.fields[1] : "");
    EXPECT_EQ(answers_in(answers), 1u) << name << ":\n" << answers;
    EXPECT_TRUE(answers.starts_with("HTTP/1.1 " + c.status)) << name << ":\n" << answers;
    EXPECT_EQ(answers.find("on_hand"), std::string::npos) << name << ": the body was answered";
    EXPECT_NE(answers.find("\"error\""), std::string::npos) << name << ": a JSON error";
    EXPECT_TRUE(closed) << name << ": the connection closes";
  }
  EXPECT_EQ(redis_.snapshot(), before);
}

TEST_F(HttpServer, a_chunked_body_is_still_read) {
  std::string body = line_body();
  std::string chunked = "10\r\n" + body.substr(0, 16) + "\r\n" +
                        [&] {
                          std::ostringstream hex;
                          hex << std::hex << body.size() - 16;
                          return hex.str();
                        }() +
                        "\r\n" + body.substr(16) + "\r\n0\r\n\r\n";
  RawConnection conn(cartd_.port());
  conn.send(request_head("POST /add-to-cart HTTP/1.1",
                         {"Host: shop", "Transfer-Encoding: chunked", "Connection: close"}) +
            chunked);
  std::string answer = conn.read_until_closed(3s);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200")) << answer;
}

TEST_F(HttpServer, an_http_1_1_request_without_one_host_is_400) {
  for (std::vector<std::string> fields :
       {std::vector<std::string>{}, std::vector<std::string>{"Host: a", "Host: b"}}) {
    RawConnection conn(cartd_.port());
    conn.send(request_head("GET /healthz HTTP/1.1", fields));
    std::string answer = conn.read_answer(3s);
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 400")) << answer;
    EXPECT_NE(answer.find("Host"), std::string::npos) << answer;
    EXPECT_NE(answer.find("\"bad_request\""), std::string::npos) << answer;
  }
  RawConnection old(cartd_.port());
  old.send(request_head("GET /healthz HTTP/1.0", {}));
  EXPECT_TRUE(old.read_answer(3s).starts_with("HTTP/1.1 200")) << "HTTP/1.0 needs no Host";
}

TEST_F(HttpServer, an_unknown_method_is_501_with_a_json_error) {
  RawConnection conn(cartd_.port());
  conn.send(request_head("FOO /healthz HTTP/1.1", {"Host: shop"}));
  std::string answer = conn.read_answer(3s);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 501")) << answer;
  EXPECT_NE(answer.find("\"not_implemented\""), std::string::npos) << answer;
  // The connection stays usable: the next request on it is answered.
  conn.send(request_head("GET /healthz HTTP/1.1", {"Host: shop"}));
  EXPECT_TRUE(conn.read_answer(3s).starts_with("HTTP/1.1 200"));
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

const std::string kHealthz = "GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n";

// Connections that connect and send nothing, as a crowd of idle clients (or an attacker)
// would hold them.
std::vector<std::unique_ptr<RawConnection>> open_idle(int port, int n) {
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < n; ++i) idle.push_back(std::make_unique<RawConnection>(port));
  return idle;
}

TEST(ConnectionLimits, idle_connections_at_the_open_file_limit_do_not_lock_out_a_new_client) {
  // 256 descriptors in all (soft = hard, so cartd cannot raise it): 300 idle connections
  // used to take every descriptor, and a new client waited for the idle timeout (30 s).
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {}, {}, OpenFileLimit{256, 256});
  auto idle = open_idle(cartd.port(), 300);

  RawConnection client(cartd.port());
  auto start = std::chrono::steady_clock::now();
  client.send(kHealthz);
  std::string answer = client.read_answer(2s);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 200")) << answer << "\n" << cartd.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_EQ(count_of(cartd.log(), "accept failed"), 0u) << "the cap stays below the limit";
  EXPECT_NE(cartd.log().find("at most"), std::string::npos) << cartd.log();
}

TEST(ConnectionLimits, the_cap_sheds_the_oldest_idle_connections_and_keeps_busy_ones) {
  RedisServer redis;
  // One loop, so that the whole cap is one loop's: with two, the kernel spreads the
  // connections over their listeners and each loop sheds on its own time.
  Cartd cartd(redis, kCatalog, {"--max-connections", "50", "--threads", "1"});
  // The oldest connection is in the middle of a request: it is not idle and stays.
  RawConnection busy(cartd.port());
  busy.send("GET /healthz HTTP/1.1\r\n");
  // The next oldest answered a request and waits, kept alive, for another.
  RawConnection kept_alive(cartd.port());
  kept_alive.send(kHealthz);
  ASSERT_TRUE(kept_alive.read_answer(2s).starts_with("HTTP/1.1 200"));
  std::this_thread::sleep_for(100ms);  // cartd has read the busy one's first bytes

  auto idle = open_idle(cartd.port(), 100);
  RawConnection client(cartd.port());
  client.send(kHealthz);
  EXPECT_TRUE(client.read_answer(2s).starts_with("HTTP/1.1 200")) << cartd.log();

  EXPECT_TRUE(eventually([&] { return kept_alive.closed_by_peer(); }, 2s))
      << "the oldest idle connection went first";
  // 103 connections against a cap of 50: the 53 oldest idle ones make room (kept_alive
  // and 52 of the idle ones), though a close may still be on its way when the client's
  // answer arrives.
  auto closed_idle = [&] {
    std::size_t closed = 0;
    for (auto& c : idle) closed += c->closed_by_peer() ? 1 : 0;
    return closed;
  };
  EXPECT_TRUE(eventually([&] { return closed_idle() >= 52; }, 5s))
      << "idle connections made room: " << closed_idle() << " closed";
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(closed_idle(), 52u) << "only as many as needed";
  for (std::size_t i = 0; i < 52; ++i) EXPECT_TRUE(idle[i]->closed_by_peer()) << "oldest first";

  busy.send("Host: shop\r\n\r\n");
  EXPECT_TRUE(busy.read_answer(2s).starts_with("HTTP/1.1 200")) << "a busy connection is kept";
}

TEST(ConnectionLimits, when_every_connection_is_busy_a_new_one_is_refused_with_503) {
  RedisServer redis;
  // One loop: the cap is shared between loops, and this test wants to fill all of it.
  Cartd cartd(redis, kCatalog, {"--max-connections", "4", "--threads", "1"});
  std::vector<std::unique_ptr<RawConnection>> busy;
  for (int i = 0; i < 4; ++i) {
    busy.push_back(std::make_unique<RawConnection>(cartd.port()));
    busy.back()->send("GET /healthz HTTP/1.1\r\n");  // a request begun, not finished
  }
  std::this_thread::sleep_for(100ms);
  RawConnection refused(cartd.port());
  bool closed = false;
  std::string answer = refused.read_until_closed(2s, &closed);
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 503")) << answer;
  EXPECT_NE(answer.find("\"unavailable\""), std::string::npos) << answer;
  EXPECT_TRUE(closed);
  for (auto& c : busy) {
    c->send("Host: shop\r\n\r\n");
    EXPECT_TRUE(c->read_answer(2s).starts_with("HTTP/1.1 200")) << "the busy ones are served";
  }
}

TEST(ConnectionLimits, a_connection_that_sends_nothing_is_closed_after_the_first_request_timeout) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--first-request-timeout-ms", "300", "--idle-timeout", "30"});
  RawConnection silent(cartd.port());
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  silent.read_until_closed(5s, &closed);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 2s);

  // After its first request, a connection may idle for the keep-alive time.
  RawConnection kept_alive(cartd.port());
  kept_alive.send(kHealthz);
  ASSERT_TRUE(kept_alive.read_answer(2s).starts_with("HTTP/1.1 200"));
  std::this_thread::sleep_for(800ms);
  kept_alive.send(kHealthz);
  EXPECT_TRUE(kept_alive.read_answer(2s).starts_with("HTTP/1.1 200"));
}

TEST(ConnectionLimits, the_soft_open_file_limit_is_raised_to_the_hard_one) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {}, {}, OpenFileLimit{256, 4096});
  EXPECT_NE(cartd.log().find("open-file limit raised from 256 to 4096"), std::string::npos)
      << cartd.log();
}

}  // namespace http_server_test
}  // namespace cartd::test
