// harness: real processes for integration tests. Each test starts its own
// redis-server (and cartd) on free loopback ports in a temporary folder, and stops them
// when it ends.
#pragma once

#include <sys/types.h>
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

#include "redis/reply.hpp"

struct redisContext;

namespace cartd::test {

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

class RedisServer {
 public:
  // `extra` are more redis-server arguments (e.g. {"--appendonly", "yes"}).
  explicit RedisServer(std::vector<std::string> extra = {});
  ~RedisServer();
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  void start();
  void stop();  // SHUTDOWN NOSAVE, or kill
  redis::Reply command(const std::vector<std::string>& args);
  // Every key with its type and content, sorted: equal snapshots mean nothing changed.
  // Leaves out the DB writer's queues ({s<n>}#dirty), which drain in the background.
  std::vector<std::string> snapshot();
  // Every entry of every group's cart event stream ({c<n>}#events), oldest first within
  // a group: each an XRANGE entry {id, {field, value, ...}}.
  std::vector<redis::Reply> cart_events();
  // Checkouts in progress, over every cart group ({c<n>}#checkouts).
  std::int64_t checkouts_in_progress();
  // What a stock row's hash holds (HGETALL) as a map; empty for no row.
  std::map<std::string, std::string> stock_row(const std::string& inventory_id);

 private:
  void connect();
  TempDir dir_;
  int port_;
  std::vector<std::string> extra_;
  std::unique_ptr<Process> process_;
  redisContext* ctx_ = nullptr;
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
