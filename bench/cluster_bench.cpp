// cluster_bench: what routing over a Redis Cluster costs per command, against a
// standalone Redis, in one run on one machine. The same load (a cart-like hash per
// group: HSET then HGETALL, over cartd's 1024 cart groups, `depth` commands in flight on
// one loop) goes through redis::Client to a standalone redis-server and through
// redis::ClusterClient to a cluster of one primary (every slot on one node, so the
// difference is the cost of cluster mode, not of more machines) and of three.
// Prints commands/s and the CPU time per command of the client and of the Redis nodes.
// Starts its own servers on loopback. Usage: cluster_bench [commands] [depth]
#include <sys/resource.h>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "functions/keys.hpp"
#include "harness.hpp"
#include "redis/client.hpp"
#include "redis/cluster.hpp"
#include "redis/sync.hpp"

using namespace cartd;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double thread_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// used_cpu_user + used_cpu_sys of one node, in seconds.
double node_cpu_seconds(int port) {
  redis::Endpoint e;
  e.port = port;
  auto c = redis::sync_connect(e, 2s);
  std::string info = redis::sync_command(c.get(), {"INFO", "cpu"}).str;
  double total = 0;
  for (const char* field : {"used_cpu_sys:", "used_cpu_user:"}) {
    auto at = info.find(field);
    if (at != std::string::npos) total += std::stod(info.substr(at + std::strlen(field)));
  }
  return total;
}

struct Result {
  double per_second;
  double client_us;  // client CPU per command
  double redis_us;   // every node's CPU per command
};

// Runs `total` commands with `depth` in flight through `send`, on this thread's loop.
Result load(boost::asio::io_context& io,
            const std::function<void(std::vector<std::string>, redis::ReplyHandler)>& send,
            const std::vector<int>& ports, long total, int depth) {
  long sent = 0, done = 0, failed = 0;
  std::function<void()> next = [&] {
    if (sent >= total) return;
    long i = sent++;
    std::uint32_t group = static_cast<std::uint32_t>(i % keys::kGroups);
    std::string key = keys::cart_tag(group) + ":bench" + std::to_string(i % 4096);
    std::vector<std::string> args =
        (i / keys::kGroups) % 2 == 0
            ? std::vector<std::string>{"HSET", key, "sku-" + std::to_string(i % 7), "inv 1"}
            : std::vector<std::string>{"HGETALL", key};
    send(std::move(args), [&](redis::Result r) {
      ++done;
      if (!r || r->is_error()) ++failed;
      next();
    });
  };
  double redis_before = 0;
  for (int p : ports) redis_before += node_cpu_seconds(p);
  double cpu_before = thread_cpu_seconds();
  auto started = Clock::now();
  boost::asio::post(io, [&] {
    for (int d = 0; d < depth; ++d) next();
  });
  while (done < total) io.run_one();
  double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  double client = thread_cpu_seconds() - cpu_before;
  double redis_after = 0;
  for (int p : ports) redis_after += node_cpu_seconds(p);
  if (failed > 0) std::fprintf(stderr, "cluster_bench: %ld commands failed\n", failed);
  return {static_cast<double>(total) / seconds, client / static_cast<double>(total) * 1e6,
          (redis_after - redis_before) / static_cast<double>(total) * 1e6};
}

// Starts `client` (a Client or a ClusterClient), waits until it is ready, loads it.
template <typename C>
Result through(boost::asio::io_context& io, C& client, const std::vector<int>& ports, long total,
               int depth) {
  client.start();
  while (!client.ready()) io.run_one_for(10ms);
  auto r = load(
      io,
      [&](std::vector<std::string> args, redis::ReplyHandler h) {
        std::vector<std::string_view> views(args.begin(), args.end());
        client.command(std::span<const std::string_view>(views), std::move(h));
      },
      ports, total, depth);
  client.stop();
  return r;
}

Result standalone(long total, int depth) {
  test::RedisServer server;
  boost::asio::io_context io;
  redis::Client::Options o;
  o.endpoint.port = server.port();
  o.name = "cartd-bench";
  redis::Client client(io, o);
  return through(io, client, {server.port()}, total, depth);
}

Result cluster(int primaries, long total, int depth) {
  test::RedisCluster nodes(primaries, 0);
  boost::asio::io_context io;
  redis::ClusterClient::Options o;
  o.seeds.push_back(*redis::parse_url(nodes.url()));
  o.node.name = "cartd-bench";
  redis::ClusterClient client(io, o);
  return through(io, client, nodes.ports(), total, depth);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);  // connects and reconnects are not results
  long total = argc > 1 ? std::stol(argv[1]) : 400000;
  int depth = argc > 2 ? std::stoi(argv[2]) : 64;
  Result s = standalone(total, depth);
  Result c1 = cluster(1, total, depth);
  Result c3 = cluster(3, total, depth);
  std::printf(
      "cluster_bench: %ld commands (HSET/HGETALL over 1024 groups), %d in flight, one loop\n",
      total, depth);
  std::printf("%-22s %12s %12s %12s %12s\n", "", "commands/s", "client us", "redis us", "cost x");
  auto row = [&](const char* name, const Result& r) {
    std::printf("%-22s %12.0f %12.2f %12.2f %12.2f\n", name, r.per_second, r.client_us, r.redis_us,
                (r.client_us + r.redis_us) / (s.client_us + s.redis_us));
  };
  row("standalone", s);
  row("cluster, 1 primary", c1);
  row("cluster, 3 primaries", c3);
  auto json = [&](const Result& r) {
    return "{\"per_second\": " + std::to_string(r.per_second) +
           ", \"client_us\": " + std::to_string(r.client_us) +
           ", \"redis_us\": " + std::to_string(r.redis_us) + ", \"cost\": " +
           std::to_string((r.client_us + r.redis_us) / (s.client_us + s.redis_us)) + "}";
  };
  std::printf(
      "json: {\"commands\": %ld, \"depth\": %d, \"standalone\": %s, \"cluster1\": %s, "
      "\"cluster3\": %s}\n",
      total, depth, json(s).c_str(), json(c1).c_str(), json(c3).c_str());
  return 0;
}
