// harness: real processes for integration tests. Each test starts its own
// redis-server (and cartd) on free loopback ports in a temporary folder, and stops them
// when it ends.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "redis/reply.hpp"
#include "redis/sync.hpp"

struct redisContext;

namespace cartd::test {

// A file's whole content ("" when it cannot be read).
std::string read_file(const std::string& path);

// A port nothing listens on right now (the kernel picks it).
int free_port();

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Who a child process runs as (PostgreSQL refuses to run as root).
struct RunAs {
  uid_t uid;
  gid_t gid;
};

// The open-file limit (RLIMIT_NOFILE) a child starts with.
struct OpenFileLimit {
  unsigned long soft;
  unsigned long hard;
};

// A child process with its output in a log file.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::filesystem::path& log,
          std::optional<RunAs> run_as = std::nullopt,
          std::optional<OpenFileLimit> open_files = std::nullopt);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  void signal(int sig);
  // Waits for the process to end; returns its exit status (or 128 + signal).
  int wait();
  bool running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// What the tests read of a Redis, through its owner's command(): the same on one server
// (RedisServer) and on a cluster (TestRedis, whose command goes to the key's node).
template <typename Self>
class RedisReads {
 public:
  // Every key with its type and content, sorted: equal snapshots mean nothing changed.
  // Leaves out the DB writer's queues ({s<n>}#dirty), which drain in the background, and
  // the housekeeping leases of a cluster's groups.
  std::vector<std::string> snapshot();
  // Every entry of every group's cart event stream ({c<n>}#events), oldest first within
  // a group: each an XRANGE entry {id, {field, value, ...}}.
  std::vector<redis::Reply> cart_events();
  // Checkouts in progress, over every cart group ({c<n>}#checkouts).
  std::int64_t checkouts_in_progress();
  // What a stock row's hash holds (HGETALL) as a map; empty for no row.
  std::map<std::string, std::string> stock_row(const std::string& inventory_id);

 private:
  Self& self() { return static_cast<Self&>(*this); }
};

class RedisServer : public RedisReads<RedisServer> {
 public:
  // `extra` are more redis-server arguments (e.g. {"--appendonly", "yes"}).
  explicit RedisServer(std::vector<std::string> extra = {});
  ~RedisServer();
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  void start();
  void stop();  // SHUTDOWN NOSAVE, or kill
  redis::Reply command(const std::vector<std::string>& args);
  // FCALLs this server has run so far (INFO commandstats).
  std::int64_t fcalls();
  // What INFO commandstats says of `command` (lower case): its calls so far.
  static std::int64_t calls_in(const std::string& commandstats, const std::string& command);

 private:
  // Starts redis-server on port_; false (and none left running) if it did not come up.
  bool launch();
  void connect();
  TempDir dir_;
  int port_;
  std::vector<std::string> extra_;
  std::unique_ptr<Process> process_;
  redisContext* ctx_ = nullptr;
};

// A Redis Cluster of its own: `primaries` primaries with `replicas` replicas each, every
// node a redis-server on free loopback ports (client and cluster bus) in a temporary
// folder, made one cluster by `redis-cli --cluster create`, stopped by PID at the end.
// cluster-node-timeout is 2000 ms, so a killed primary's replica takes over in a few
// seconds.
class RedisCluster {
 public:
  explicit RedisCluster(int primaries = 3, int replicas = 1);
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  // Every node's client port, in the order they were made (primaries first).
  const std::vector<int>& ports() const { return ports_; }
  // A URL naming one node (cartd finds the rest).
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(ports_[0]); }
  // One command on one node (a fresh connection; errors are returned as replies).
  redis::Reply command(int port, const std::vector<std::string>& args);
  // The client port of the primary that owns `slot` now, as that node's peers see it.
  int owner_of(std::uint16_t slot);
  // Waits until every running node says cluster_state:ok and they agree on who owns
  // every slot; false after `timeout`.
  bool wait_ok(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Sends a signal to one node (SIGKILL, SIGSTOP, SIGCONT).
  void signal(int port, int sig);
  // Starts a node that was killed again, with its cluster config: it rejoins (a primary
  // that was replaced comes back as a replica).
  void restart(int port);
  // Moves `count` slots from the primary at `from_port` to the primary at `to_port`, with
  // their keys (redis-cli --cluster reshard).
  void reshard(int to_port, int from_port, int count);
  std::string node_id(int port);
  // The running nodes that are primaries now, and a replica of `primary` (0: none).
  std::vector<int> primaries();
  int replica_of(int primary);
  // A manual failover (CLUSTER FAILOVER on `replica`), asked again until it is a primary
  // (a node refuses while the nodes disagree on the slots, after a reshard); false if it
  // did not take over within `timeout`.
  bool failover(int replica, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // Checkouts in progress, over every primary's cart groups.
  std::int64_t checkouts_in_progress();
  // Calls of `command` (lower case) on every primary so far, the calls functions make
  // included (INFO commandstats).
  std::int64_t calls(const std::string& command);

 private:
  struct Node {
    int port;
    std::vector<std::string> argv;
    std::unique_ptr<Process> process;
  };
  void make(int primaries, int replicas);
  void stop_all();
  void wait_up(int port);
  TempDir dir_;
  std::vector<int> ports_;
  std::vector<Node> nodes_;
};

// The Redis a suite runs cartd against, chosen by the test's parameter: a standalone
// redis-server, or a Redis Cluster of three primaries (no replicas). The classic, /v1 and
// expiry tests run on both (INSTANTIATE_TEST_SUITE_P with kRedisKinds).
enum class RedisKind { standalone, cluster };
inline constexpr RedisKind kRedisKinds[] = {RedisKind::standalone, RedisKind::cluster};
// The parameter's name in test names: .../standalone, .../cluster.
std::string redis_kind_name(const ::testing::TestParamInfo<RedisKind>& info);

class TestRedis : public RedisReads<TestRedis> {
 public:
  // `extra`: more redis-server arguments, for every node.
  explicit TestRedis(RedisKind kind, std::vector<std::string> extra = {});
  ~TestRedis();
  TestRedis(const TestRedis&) = delete;
  TestRedis& operator=(const TestRedis&) = delete;
  std::string url() const;
  bool is_cluster() const { return cluster_ != nullptr; }
  // One command on the node that holds its first key (any node for a command without
  // one); KEYS asks every primary and joins their answers.
  redis::Reply command(const std::vector<std::string>& args);

 private:
  std::unique_ptr<RedisServer> server_;
  std::unique_ptr<RedisCluster> cluster_;
  std::map<int, redis::SyncContext> nodes_;  // one connection per primary, made on first use
  // What the test cluster's map says, read once (its slots do not move).
  std::vector<int> primaries_;
  std::map<std::uint16_t, int> owners_;
};

// A PostgreSQL server of its own (initdb in a temporary folder, trust auth, loopback).
// When the tests run as root, it runs as the `postgres` user.
class PgServer {
 public:
  PgServer();
  ~PgServer();
  // A libpq URL of a new, empty database on this server.
  std::string new_database(const std::string& name);
  std::int64_t query_int(const std::string& database, const std::string& sql);

 private:
  TempDir dir_;
  int port_;
  std::optional<RunAs> run_as_;
  std::unique_ptr<Process> process_;
};

struct HttpResponse {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  boost::json::value json() const;
};

// One request on a fresh connection.
// One request on a fresh connection. Throws std::runtime_error when there is no answer
// (refused, reset) or none within `timeout` ("timed out").
HttpResponse http(int port, const std::string& method, const std::string& target,
                  const std::string& body = "",
                  const std::map<std::string, std::string>& headers = {},
                  std::chrono::milliseconds timeout = std::chrono::seconds(60));

class Cartd {
 public:
  // Starts cartd against `redis` with the demo-like catalog `catalog_json` and extra flags
  // (and, if given, that open-file limit), and waits until /healthz answers 200.
  Cartd(const RedisServer& redis, const std::string& catalog_json,
        std::vector<std::string> extra = {}, std::optional<std::filesystem::path> db = {},
        std::optional<OpenFileLimit> open_files = {});
  // The same against the Redis at `redis_url` (a cluster's nodes, comma-separated).
  Cartd(const std::string& redis_url, const std::string& catalog_json,
        std::vector<std::string> extra = {}, std::optional<std::filesystem::path> db = {},
        std::optional<OpenFileLimit> open_files = {});
  ~Cartd();
  int port() const { return port_; }
  const std::filesystem::path& db_path() const { return db_; }
  HttpResponse get(const std::string& target, const std::map<std::string, std::string>& h = {}) {
    return http(port_, "GET", target, "", h);
  }
  HttpResponse post(const std::string& target, const std::string& body,
                    const std::map<std::string, std::string>& h = {}) {
    return http(port_, "POST", target, body, h);
  }
  void start();
  // Signals cartd and waits for it to end; returns its exit status.
  int stop(int sig = SIGTERM);
  // The extra flags the next start() uses.
  void set_flags(std::vector<std::string> extra) { extra_ = std::move(extra); }
  std::string log() const;
  bool wait_healthy(std::chrono::milliseconds timeout);

  struct CheckRun {
    int exit_code;
    std::string output;
  };
  // Runs `cartd check` against this instance's Redis and main DB.
  CheckRun check() const;

 private:
  TempDir dir_;
  std::string redis_url_;
  std::vector<std::string> extra_;
  std::filesystem::path db_;
  std::string db_url_;  // sqlite:<db_>, or the --db among the extra flags
  int port_;
  std::optional<OpenFileLimit> open_files_;
  std::unique_ptr<Process> process_;
};

// Runs `sql` with the sqlite3 library and returns the first column of the first row.
std::int64_t sqlite_int(const std::filesystem::path& db, const std::string& sql);
// Runs statements that write (as a shop's own tooling would, behind cartd's back).
void sqlite_exec(const std::filesystem::path& db, const std::string& sql);

struct StreamEvent {
  std::string id;
  std::string event;
  std::string data;
  boost::json::object json() const { return boost::json::parse(data).as_object(); }
};

// An event stream read as a browser's EventSource would: the answer's head, then events
// (blocks of lines ended by a blank line); comments are kept apart.
class EventStreamClient {
 public:
  // `close_after`: ask for Connection: close, for an answer that is not a stream.
  EventStreamClient(int port, const std::string& target, bool close_after = false) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("connect failed");
    }
    std::string req = "GET " + target + " HTTP/1.1\r\nHost: shop\r\nAccept: text/event-stream\r\n" +
                      (close_after ? "Connection: close\r\n\r\n" : "\r\n");
    ::send(fd_, req.data(), req.size(), MSG_NOSIGNAL);
  }
  ~EventStreamClient() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The answer's head (status line and fields), waiting at most `timeout`.
  std::string head(std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (buffer_.find("\r\n\r\n") == std::string::npos && read_some(until)) {
    }
    auto end = buffer_.find("\r\n\r\n");
    if (end == std::string::npos) return buffer_;
    std::string h = buffer_.substr(0, end + 4);
    buffer_.erase(0, end + 4);
    head_ = h;
    return h;
  }
  // The body after the head, for an answer that is not a stream.
  std::string rest(std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (read_some(until)) {
    }
    return buffer_;
  }

  // The next event, or nullopt if none within `timeout`.
  std::optional<StreamEvent> next(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto end = buffer_.find("\n\n");
      if (end != std::string::npos) {
        std::string block = buffer_.substr(0, end);
        buffer_.erase(0, end + 2);
        StreamEvent e;
        bool any = false;
        std::size_t at = 0;
        while (at <= block.size()) {
          auto nl = block.find('\n', at);
          std::string line =
              block.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
          at = nl == std::string::npos ? block.size() + 1 : nl + 1;
          if (line.starts_with(":")) {
            ++comments_;
          } else if (line.starts_with("id: ")) {
            e.id = line.substr(4);
          } else if (line.starts_with("event: ")) {
            e.event = line.substr(7);
            any = true;
          } else if (line.starts_with("data: ")) {
            e.data = line.substr(6);
          }
        }
        if (any) return e;
        continue;  // a comment, or the retry field
      }
      if (!read_some(until)) return std::nullopt;
    }
  }

  // The next `stock` event for `inventory_id` (others are skipped).
  std::optional<boost::json::object> next_for(const std::string& inventory_id,
                                              std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto e = next(left);
      if (!e) return std::nullopt;
      if (e->event == "stock" && e->json().at("inventory_id").as_string() == inventory_id) {
        return e->json();
      }
    }
  }

  int comments() const { return comments_; }
  bool closed() const { return closed_; }
  const std::string& raw() const { return buffer_; }

 private:
  bool read_some(std::chrono::steady_clock::time_point until) {
    if (fd_ < 0 || closed_) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[8192];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  std::string head_;
  int comments_ = 0;
  bool closed_ = false;
};

// Polls `done` until it is true or `timeout` passes; returns its last value.
template <typename F>
bool eventually(F done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every = std::chrono::milliseconds(20)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(every);
  }
  return done();
}

}  // namespace cartd::test
