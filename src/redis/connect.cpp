#include "redis/connect.hpp"

#include <cstdlib>
#include <string_view>

#include "redis/cluster.hpp"
#include "redis/sync.hpp"

namespace cartd::redis {

namespace {

// Asks the seeds in turn: `ask(connection, seed)` on each until one gives an answer (a
// seed that is down, or whose answer is nullopt, passes to the next).
template <typename Ask>
auto first_answer(const std::vector<Endpoint>& seeds, std::chrono::milliseconds timeout, Ask ask)
    -> decltype(ask(nullptr, seeds.front())) {
  for (const Endpoint& seed : seeds) {
    try {
      auto c = sync_connect(seed, timeout);
      if (auto answer = ask(c.get(), seed)) return answer;
    } catch (const std::exception&) {
      // down: ask the next
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Mode> detect_mode(const std::vector<Endpoint>& seeds,
                                std::chrono::milliseconds timeout) {
  return first_answer(seeds, timeout, [](redisContext* c, const Endpoint&) -> std::optional<Mode> {
    auto info = sync_command(c, {"INFO", "cluster"}).str;
    return info.find("cluster_enabled:1") != std::string::npos ? Mode::cluster : Mode::standalone;
  });
}

std::optional<int> slots_assigned(const std::vector<Endpoint>& seeds,
                                  std::chrono::milliseconds timeout) {
  return first_answer(seeds, timeout, [](redisContext* c, const Endpoint&) -> std::optional<int> {
    constexpr std::string_view field = "cluster_slots_assigned:";
    auto info = sync_command(c, {"CLUSTER", "INFO"}).str;
    auto at = info.find(field);
    if (at == std::string::npos) return std::nullopt;
    return std::atoi(info.c_str() + at + field.size());
  });
}

std::unique_ptr<Commands> make_commands(boost::asio::io_context& io, Mode mode,
                                        const std::vector<Endpoint>& seeds, Client::Options node) {
  if (mode == Mode::standalone) {
    node.endpoint = seeds.front();
    return std::make_unique<Client>(io, std::move(node));
  }
  ClusterClient::Options o;
  o.seeds = seeds;
  o.node = std::move(node);
  return std::make_unique<ClusterClient>(io, std::move(o));
}

std::vector<Shard> sync_shards(const std::vector<Endpoint>& seeds,
                               std::chrono::milliseconds timeout) {
  auto shards =
      first_answer(seeds, timeout,
                   [](redisContext* c, const Endpoint& seed) -> std::optional<std::vector<Shard>> {
                     auto shards = parse_shards(sync_run(c, {"CLUSTER", "SHARDS"}), seed.host);
                     if (shards.empty()) return std::nullopt;
                     return shards;
                   });
  return shards.value_or(std::vector<Shard>{});
}

}  // namespace cartd::redis
