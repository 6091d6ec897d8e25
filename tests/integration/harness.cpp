#include "harness.hpp"

#include "functions/keys.hpp"

#include "redis/slot.hpp"
#include "redis/sync.hpp"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace cartd::test {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// A group's set of stock rows the DB writer has still to store ({s<n>}#dirty in
// src/lua/holds.lua).
constexpr std::string_view kDirtyQueue = "#dirty";
// Longer than cartd's default --shutdown-grace-ms.
constexpr auto kStopTimeout = 10s;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int free_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// Starts a server with `launch` (true once it is up; false with none left running) on
// `port`. Another test's server or connection can take a port from free_port() before the
// server binds it (CI saw a PostgreSQL not start): a try that fails moves to another
// port, three at most, then fails with the server's log.
void launch_on_a_free_port(int& port, const std::function<bool()>& launch,
                           const std::filesystem::path& log, const std::string& what) {
  for (int attempt = 1; !launch(); ++attempt) {
    if (attempt == 3) {
      throw std::runtime_error(what + " did not start (3 ports); its log:\n" +
                               read_file(log.string()));
    }
    port = free_port();
  }
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "cartd-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Process::Process(std::vector<std::string> argv, const std::filesystem::path& log,
                 std::optional<RunAs> run_as, std::optional<OpenFileLimit> open_files) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("cannot fork for " + argv[0]);
  if (pid_ == 0) {
    if (run_as && (setgid(run_as->gid) != 0 || setuid(run_as->uid) != 0)) _exit(126);
    if (open_files) {
      rlimit limit{open_files->soft, open_files->hard};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(125);
    }
    // The child dies with the test process, even if that one crashes: no server is
    // left running after a failed test. (Set after setuid, which clears it.)
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) _exit(127);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    signal(SIGKILL);
    wait();
  }
}

void Process::signal(int sig) {
  if (!status_) ::kill(pid_, sig);
}

int Process::wait() {
  if (status_) return *status_;
  int st = 0;
  waitpid(pid_, &st, 0);
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return *status_;
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

namespace {

// A redis-server on loopback, in the foreground, saving nothing to disk.
std::vector<std::string> redis_server_argv(int port, const std::filesystem::path& dir) {
  return {
      "redis-server", "--port", std::to_string(port), "--bind", "127.0.0.1", "--dir", dir.string(),
      "--save",       "",       "--daemonize",        "no"};
}

}  // namespace

RedisCluster::RedisCluster(int primaries, int replicas) {
  // Made again, on new ports, if the first try does not come up: on a machine busy with
  // other tests a replica has been seen not to sync within a minute.
  try {
    make(primaries, replicas);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test cluster: %s; making it again\n", e.what());
    stop_all();
    make(primaries, replicas);
  }
}

void RedisCluster::stop_all() {
  for (auto& n : nodes_) {
    if (!n.process) continue;
    n.process->signal(SIGCONT);
    n.process->signal(SIGKILL);
    n.process->wait();
  }
  nodes_.clear();
  ports_.clear();
}

void RedisCluster::make(int primaries, int replicas) {
  std::vector<int> buses;
  int total = primaries * (1 + replicas);
  for (int i = 0; i < total; ++i) {
    int port = free_port();
    int bus = free_port();
    buses.push_back(bus);
    auto dir = dir_.path() / std::to_string(port);
    std::filesystem::create_directories(dir);
    std::vector<std::string> argv = redis_server_argv(port, dir);
    argv.insert(argv.end(), {"--appendonly", "no", "--cluster-enabled", "yes", "--cluster-port",
                             std::to_string(bus), "--cluster-config-file",
                             (dir / "nodes.conf").string(), "--cluster-node-timeout", "2000"});
    nodes_.push_back(Node{port, argv, std::make_unique<Process>(argv, dir / "redis.log")});
    ports_.push_back(port);
  }
  for (int port : ports_) wait_up(port);
  if (primaries >= 3) {
    std::vector<std::string> create{"redis-cli", "--cluster", "create"};
    for (int port : ports_) create.push_back("127.0.0.1:" + std::to_string(port));
    create.insert(create.end(), {"--cluster-replicas", std::to_string(replicas), "--cluster-yes"});
    Process cli(create, dir_.path() / "create.log");
    if (cli.wait() != 0) {
      throw std::runtime_error("redis-cli --cluster create failed: " +
                               read_file((dir_.path() / "create.log").string()));
    }
  } else {
    // redis-cli makes clusters of three primaries or more; fewer are made by hand (the
    // benchmark's one-primary cluster): each node takes an equal share of the slots and
    // meets the first.
    if (replicas != 0) throw std::invalid_argument("fewer than 3 primaries: no replicas");
    for (int i = 0; i < primaries; ++i) {
      int first = i * redis::kSlots / primaries;
      int last = (i + 1) * redis::kSlots / primaries - 1;
      auto r = command(ports_[static_cast<std::size_t>(i)],
                       {"CLUSTER", "ADDSLOTSRANGE", std::to_string(first), std::to_string(last)});
      if (r.is_error()) throw std::runtime_error("CLUSTER ADDSLOTSRANGE: " + r.str);
      if (i > 0) {
        command(ports_[0], {"CLUSTER", "MEET", "127.0.0.1",
                            std::to_string(ports_[static_cast<std::size_t>(i)]),
                            std::to_string(buses[static_cast<std::size_t>(i)])});
      }
    }
  }
  if (!wait_ok()) throw std::runtime_error("the test cluster did not come up");
  // Every replica has synced with its primary (a replica that never has cannot take over).
  for (int port : ports_) {
    if (command(port, {"ROLE"}).elements.at(0).str != "master") continue;
    bool synced = eventually(
        [&] {
          return command(port, {"WAIT", std::to_string(replicas), "100"}).integer >= replicas;
        },
        60s, 10ms);
    if (!synced) throw std::runtime_error("a test cluster replica did not sync");
  }
}

void RedisCluster::wait_up(int port) {
  bool up = eventually(
      [&] {
        try {
          return command(port, {"PING"}).str == "PONG";
        } catch (const std::exception&) {
          return false;
        }
      },
      10s);
  if (!up) throw std::runtime_error("a cluster node did not start");
}

void RedisCluster::restart(int port) {
  for (auto& n : nodes_) {
    if (n.port != port) continue;
    if (n.process) n.process->wait();
    auto dir = dir_.path() / std::to_string(port);
    n.process = std::make_unique<Process>(n.argv, dir / "redis-restarted.log");
    wait_up(port);
  }
}

RedisCluster::~RedisCluster() {
  stop_all();
}

redis::Reply RedisCluster::command(int port, const std::vector<std::string>& args) {
  redis::Endpoint e;
  e.port = port;
  auto c = redis::sync_connect(e, 2s);
  return redis::sync_command(c.get(), args);
}

std::string RedisCluster::node_id(int port) {
  return command(port, {"CLUSTER", "MYID"}).str;
}

int RedisCluster::owner_of(std::uint16_t slot) {
  for (int port : ports_) {
    try {
      redis::Reply slots = command(port, {"CLUSTER", "SLOTS"});
      for (auto& range : slots.elements) {
        if (range.elements.size() < 3) continue;
        if (slot >= range.elements[0].integer && slot <= range.elements[1].integer) {
          return static_cast<int>(range.elements[2].elements.at(1).integer);
        }
      }
    } catch (const std::exception&) {
      // a node that is down: ask the next
    }
  }
  return 0;
}

bool RedisCluster::wait_ok(std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        std::optional<std::vector<std::string>> first;
        for (int port : ports_) {
          try {
            if (command(port, {"CLUSTER", "INFO"}).str.find("cluster_state:ok") ==
                std::string::npos) {
              return false;
            }
            // Every node must see the same owners (a stale node answers MOVED wrongly).
            std::vector<std::string> owners;  // "first-last:port", in a fixed order
            for (auto& range : command(port, {"CLUSTER", "SLOTS"}).elements) {
              owners.push_back(std::to_string(range.elements[0].integer) + "-" +
                               std::to_string(range.elements[1].integer) + ":" +
                               std::to_string(range.elements[2].elements.at(1).integer));
            }
            std::sort(owners.begin(), owners.end());
            if (!first) {
              first = owners;
            } else if (owners != *first) {
              return false;
            }
          } catch (const std::exception&) {
            // a node that is down (killed or stopped) is not asked
          }
        }
        return first.has_value();
      },
      timeout, 100ms);
}

std::vector<int> RedisCluster::primaries() {
  std::vector<int> out;
  for (int port : ports_) {
    try {
      if (command(port, {"ROLE"}).elements.at(0).str == "master") out.push_back(port);
    } catch (const std::exception&) {
      // down or stopped
    }
  }
  return out;
}

int RedisCluster::replica_of(int primary) {
  for (int port : ports_) {
    try {
      auto role = command(port, {"ROLE"});
      if (role.elements.at(0).str == "slave" && role.elements.at(2).integer == primary) {
        return port;
      }
    } catch (const std::exception&) {
      // down or stopped
    }
  }
  return 0;
}

bool RedisCluster::failover(int replica, std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        if (command(replica, {"ROLE"}).elements.at(0).str == "master") return true;
        command(replica, {"CLUSTER", "FAILOVER"});
        return false;
      },
      timeout, 1000ms);
}

std::int64_t RedisCluster::calls(const std::string& name) {
  std::int64_t n = 0;
  for (int port : primaries()) {
    n += RedisServer::calls_in(command(port, {"INFO", "commandstats"}).str, name);
  }
  return n;
}

std::int64_t RedisCluster::checkouts_in_progress() {
  std::int64_t n = 0;
  for (int port : primaries()) {
    for (auto& key : command(port, {"KEYS", "{c*}#checkouts"}).elements) {
      n += command(port, {"ZCARD", key.str}).integer;
    }
  }
  return n;
}

void RedisCluster::signal(int port, int sig) {
  for (auto& n : nodes_) {
    if (n.port == port && n.process) n.process->signal(sig);
  }
}

void RedisCluster::reshard(int to_port, int from_port, int count) {
  std::vector<std::string> argv{"redis-cli",       "--cluster",
                                "reshard",         "127.0.0.1:" + std::to_string(to_port),
                                "--cluster-from",  node_id(from_port),
                                "--cluster-to",    node_id(to_port),
                                "--cluster-slots", std::to_string(count),
                                "--cluster-yes"};
  Process cli(argv, dir_.path() / "reshard.log");
  if (cli.wait() != 0) {
    throw std::runtime_error("redis-cli --cluster reshard failed: " +
                             read_file((dir_.path() / "reshard.log").string()));
  }
}

RedisServer::RedisServer(std::vector<std::string> extra)
    : port_(free_port()), extra_(std::move(extra)) {
  launch_on_a_free_port(
      port_, [this] { return launch(); }, dir_.path() / "redis.log", "redis-server");
  connect();
}

RedisServer::~RedisServer() {
  if (ctx_) redisFree(ctx_);
  if (process_) {
    process_->signal(SIGKILL);
    process_->wait();
  }
}

void RedisServer::start() {
  if (!launch()) throw std::runtime_error("redis-server did not start");
  connect();
}

bool RedisServer::launch() {
  std::vector<std::string> argv = redis_server_argv(port_, dir_.path());
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  auto log = dir_.path() / "redis.log";
  // Up once this server says so in its log (it listens by then), after what earlier runs
  // on this folder wrote there: a server answering on the port may be another test's.
  std::error_code ec;
  auto before = std::filesystem::file_size(log, ec);
  if (ec) before = 0;
  process_ = std::make_unique<Process>(argv, log);
  bool up = eventually(
      [&] {
        return !process_->running() ||  // ended: not up
               read_file(log.string()).find("Ready to accept connections", before) !=
                   std::string::npos;
      },
      10s);
  if (up && process_->running()) return true;
  process_->signal(SIGKILL);
  process_->wait();
  return false;
}

void RedisServer::stop() {
  if (ctx_) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  if (process_) {
    process_->signal(SIGTERM);
    process_->wait();
    process_.reset();
  }
}

void RedisServer::connect() {
  if (ctx_) redisFree(ctx_);
  ctx_ = redisConnect("127.0.0.1", port_);
  if (!ctx_ || ctx_->err) throw std::runtime_error("cannot connect to the test redis-server");
}

redis::Reply RedisServer::command(const std::vector<std::string>& args) {
  if (!ctx_) connect();
  try {
    return redis::sync_command(ctx_, args);
  } catch (const std::exception&) {
    redisFree(ctx_);
    ctx_ = nullptr;
    throw;
  }
}

template <typename Self>
std::vector<std::string> RedisReads<Self>::snapshot() {
  auto command = [this](const std::vector<std::string>& a) { return self().command(a); };
  std::vector<std::string> out;
  redis::Reply keys = command({"KEYS", "*"});
  for (auto& k : keys.elements) {
    // The DB writer's queue of changed rows: it drains at any moment, whatever a test does;
    // and the housekeeping leases of a cluster's groups, taken and renewed by cartd.
    if (k.str.ends_with(kDirtyQueue) || k.str.ends_with(":lease")) continue;
    std::string type = command({"TYPE", k.str}).str;
    std::string line = k.str + " " + type + " ";
    redis::Reply content;
    if (type == "string") content = command({"GET", k.str});
    if (type == "hash") content = command({"HGETALL", k.str});
    if (type == "zset") content = command({"ZRANGE", k.str, "0", "-1", "WITHSCORES"});
    if (type == "set") content = command({"SMEMBERS", k.str});
    if (type == "stream") content = command({"XLEN", k.str});
    std::vector<std::string> parts;
    for (auto& e : content.elements) parts.push_back(e.str + "/" + std::to_string(e.integer));
    if (type == "set" || type == "hash") std::sort(parts.begin(), parts.end());
    line += content.str + std::to_string(content.integer);
    for (auto& p : parts) line += " " + p;
    out.push_back(line);
  }
  std::sort(out.begin(), out.end());
  return out;
}

template <typename Self>
std::vector<redis::Reply> RedisReads<Self>::cart_events() {
  auto command = [this](const std::vector<std::string>& a) { return self().command(a); };
  std::vector<redis::Reply> out;
  for (auto& key : command({"KEYS", "{c*}#events"}).elements) {
    for (auto& e : command({"XRANGE", key.str, "-", "+"}).elements) out.push_back(e);
  }
  return out;
}

template <typename Self>
std::int64_t RedisReads<Self>::checkouts_in_progress() {
  auto command = [this](const std::vector<std::string>& a) { return self().command(a); };
  std::int64_t n = 0;
  for (auto& key : command({"KEYS", "{c*}#checkouts"}).elements) {
    n += command({"ZCARD", key.str}).integer;
  }
  return n;
}

std::int64_t RedisServer::calls_in(const std::string& commandstats, const std::string& command) {
  const std::string field = "cmdstat_" + command + ":calls=";
  auto at = commandstats.find(field);
  return at == std::string::npos ? 0 : std::stoll(commandstats.substr(at + field.size()));
}

std::int64_t RedisServer::fcalls() {
  return calls_in(command({"INFO", "commandstats"}).str, "fcall");
}

template <typename Self>
std::map<std::string, std::string> RedisReads<Self>::stock_row(const std::string& inv) {
  auto command = [this](const std::vector<std::string>& a) { return self().command(a); };
  std::map<std::string, std::string> out;
  auto r = command({"HGETALL", keys::stock(inv)});
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) {
    out[r.elements[i].str] = r.elements[i + 1].str;
  }
  return out;
}

std::string redis_kind_name(const ::testing::TestParamInfo<RedisKind>& info) {
  return info.param == RedisKind::cluster ? "cluster" : "standalone";
}

TestRedis::TestRedis(RedisKind kind, std::vector<std::string> extra) {
  if (kind == RedisKind::standalone) {
    server_ = std::make_unique<RedisServer>(std::move(extra));
  } else {
    if (!extra.empty()) throw std::invalid_argument("no extra arguments for a test cluster");
    cluster_ = std::make_unique<RedisCluster>(3, 0);
  }
}

TestRedis::~TestRedis() = default;

std::string TestRedis::url() const {
  return server_ ? server_->url() : cluster_->url();
}

redis::Reply TestRedis::command(const std::vector<std::string>& args) {
  if (server_) return server_->command(args);
  auto on = [&](int port) -> redis::Reply {
    auto& c = nodes_[port];
    if (!c) {
      redis::Endpoint e;
      e.port = port;
      c = redis::sync_connect(e, 2s);
    }
    return redis::sync_command(c.get(), args);
  };
  if (!args.empty() && args[0] == "KEYS") {
    redis::Reply all;
    all.type = redis::Reply::Type::array;
    if (primaries_.empty()) primaries_ = cluster_->primaries();
    for (int port : primaries_) {
      for (auto& k : on(port).elements) all.elements.push_back(std::move(k));
    }
    return all;
  }
  std::vector<std::string_view> views(args.begin(), args.end());
  auto slot = redis::command_slot(views);
  if (!slot) return on(cluster_->ports().at(0));
  int& owner = owners_[*slot];
  if (owner == 0) owner = cluster_->owner_of(*slot);
  return on(owner);
}

namespace {

std::string pg_bin(const std::string& tool) {
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
    auto path = entry.path() / "bin" / tool;
    if (std::filesystem::exists(path)) return path.string();
  }
  throw std::runtime_error("no PostgreSQL server installed (" + tool + ")");
}

}  // namespace

PgServer::PgServer() : port_(free_port()) {
  if (geteuid() == 0) {
    struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr) throw std::runtime_error("no postgres user to run PostgreSQL as");
    run_as_ = RunAs{pw->pw_uid, pw->pw_gid};
    std::filesystem::permissions(dir_.path(), std::filesystem::perms::all);
    if (chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      throw std::runtime_error("cannot hand the PostgreSQL folder to postgres");
    }
  }
  auto data = dir_.path() / "data";
  Process initdb(
      {pg_bin("initdb"), "-D", data.string(), "-A", "trust", "-U", "postgres", "--no-sync"},
      dir_.path() / "initdb.log", run_as_);
  if (initdb.wait() != 0) throw std::runtime_error("initdb failed; see " + dir_.path().string());
  auto log = dir_.path() / "postgres.log";
  auto launch = [&] {
    process_ = std::make_unique<Process>(
        std::vector<std::string>{pg_bin("postgres"), "-D", data.string(), "-p",
                                 std::to_string(port_), "-k", dir_.path().string(), "-c",
                                 "listen_addresses=127.0.0.1", "-c", "fsync=off"},
        log, run_as_);
    bool up = eventually(
        [&] {
          if (!process_->running()) return true;  // ended: not up
          PGconn* c = PQconnectdb(("postgresql://postgres@127.0.0.1:" + std::to_string(port_) +
                                   "/postgres?connect_timeout=2")
                                      .c_str());
          bool ok = PQstatus(c) == CONNECTION_OK;
          if (ok) {  // this one, not another test's server that took the port
            PGresult* r = PQexec(c, "SHOW data_directory");
            std::error_code ec;
            ok = PQresultStatus(r) == PGRES_TUPLES_OK &&
                 std::filesystem::equivalent(PQgetvalue(r, 0, 0), data, ec);
            PQclear(r);
          }
          PQfinish(c);
          return ok;
        },
        30s, 100ms);
    if (up && process_->running()) return true;
    process_->signal(SIGQUIT);  // immediate shutdown: its backends go too
    if (!eventually([&] { return !process_->running(); }, 10s)) process_->signal(SIGKILL);
    process_->wait();
    return false;
  };
  launch_on_a_free_port(port_, launch, log, "PostgreSQL");
}

PgServer::~PgServer() {
  if (process_) {
    process_->signal(SIGINT);  // fast shutdown
    process_->wait();
  }
}

std::string PgServer::new_database(const std::string& name) {
  query_int("postgres", "CREATE DATABASE " + name);
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

std::int64_t PgServer::query_int(const std::string& database, const std::string& sql) {
  PGconn* c = PQconnectdb(
      ("postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + database).c_str());
  PGresult* r = PQexec(c, sql.c_str());
  std::int64_t v = -1;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) v = std::stoll(PQgetvalue(r, 0, 0));
  bool failed = PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK;
  std::string why = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  if (failed) throw std::runtime_error("postgresql: " + why);
  return v;
}

boost::json::value HttpResponse::json() const {
  return boost::json::parse(body);
}

HttpResponse http(int port, const std::string& method, const std::string& target,
                  const std::string& body, const std::map<std::string, std::string>& headers,
                  std::chrono::milliseconds timeout) {
  asio::io_context io;
  bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  req.set(bhttp::field::connection, "close");
  if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
  for (auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  req.prepare_payload();
  boost::beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64 << 20);
  tcp::socket socket(io);
  boost::system::error_code result;
  bool done = false;
  auto end = [&](boost::system::error_code ec) {
    result = ec;
    done = true;
  };
  socket.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
      [&](boost::system::error_code ec) {
        if (ec) return end(ec);
        bhttp::async_write(socket, req, [&](boost::system::error_code ec, std::size_t) {
          if (ec) return end(ec);
          bhttp::async_read(socket, buffer, parser,
                            [&](boost::system::error_code ec, std::size_t) { end(ec); });
        });
      });
  io.run_for(timeout);
  if (!done) throw std::runtime_error("timed out");
  if (result) throw std::runtime_error("http: " + result.message());
  HttpResponse out;
  out.status = parser.get().result_int();
  for (auto& f : parser.get()) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    out.headers[name] = std::string(f.value());
  }
  out.body = parser.get().body();
  return out;
}

Cartd::Cartd(const RedisServer& redis, const std::string& catalog_json,
             std::vector<std::string> extra, std::optional<std::filesystem::path> db,
             std::optional<OpenFileLimit> open_files)
    : Cartd(redis.url(), catalog_json, std::move(extra), std::move(db), open_files) {}

Cartd::Cartd(const std::string& redis_url, const std::string& catalog_json,
             std::vector<std::string> extra, std::optional<std::filesystem::path> db,
             std::optional<OpenFileLimit> open_files)
    : redis_url_(redis_url), extra_(std::move(extra)), port_(free_port()), open_files_(open_files) {
  db_ = db ? *db : dir_.path() / "cartd.db";
  db_url_ = "sqlite:" + db_.string();
  for (std::size_t i = 0; i + 1 < extra_.size(); ++i) {
    if (extra_[i] == "--db") db_url_ = extra_[i + 1];
  }
  std::ofstream(dir_.path() / "catalog.json") << catalog_json;
  start();
}

Cartd::~Cartd() {
  if (!process_) return;
  // Stopped as a supervisor stops it, so that it runs what it runs at exit (in a sanitizer
  // build, the leak check). One still running after its shutdown grace is killed.
  process_->signal(SIGTERM);
  if (!eventually([&] { return !process_->running(); }, kStopTimeout)) process_->signal(SIGKILL);
  process_->wait();
}

void Cartd::start() {
  std::vector<std::string> argv{CARTD_BINARY,
                                "--listen",
                                "127.0.0.1:" + std::to_string(port_),
                                "--redis",
                                redis_url_,
                                "--db",
                                "sqlite:" + db_.string(),
                                "--catalog",
                                (dir_.path() / "catalog.json").string(),
                                "--threads",
                                "2",
                                "--log-level",
                                "debug"};
  argv.insert(argv.end(), extra_.begin(), extra_.end());
  process_ = std::make_unique<Process>(argv, dir_.path() / "cartd.log", std::nullopt, open_files_);
  if (!wait_healthy(15s)) {
    throw std::runtime_error("cartd did not become healthy; its log:\n" + log());
  }
}

bool Cartd::wait_healthy(std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        if (!process_->running()) return false;
        try {
          return get("/healthz").status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      timeout, 50ms);
}

int Cartd::stop(int sig) {
  if (!process_) return -1;
  process_->signal(sig);
  int status = process_->wait();
  process_.reset();
  return status;
}

Cartd::CheckRun Cartd::check() const {
  TempDir dir;
  auto log = dir.path() / "check.log";
  Process p({CARTD_BINARY, "check", "--redis", redis_url_, "--db", db_url_}, log);
  int code = p.wait();
  std::ifstream in(log);
  std::stringstream s;
  s << in.rdbuf();
  return {code, s.str()};
}

std::string Cartd::log() const {
  std::ifstream in(dir_.path() / "cartd.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::int64_t sqlite_int(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    throw std::runtime_error("cannot open " + db.string());
  }
  sqlite3_busy_timeout(h, 5000);
  sqlite3_stmt* st = nullptr;
  std::int64_t v = -1;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return v;
}

void sqlite_exec(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  sqlite3_open(db.c_str(), &h);
  sqlite3_busy_timeout(h, 5000);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  std::string why = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(h);
  if (rc != SQLITE_OK) throw std::runtime_error("sqlite: " + why);
}

template class RedisReads<RedisServer>;
template class RedisReads<TestRedis>;

}  // namespace cartd::test
