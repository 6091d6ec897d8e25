#include "redis/connect.hpp"

#include <cstdlib>
#include <string_view>

#include "redis/cluster.hpp"
#include "redis/sync.hpp"

namespace cartd::redis {

std::optional<Mode> detect_mode(const std::vector<Endpoint>& seeds,
                                std::chrono::milliseconds timeout) {
  for (const Endpoint& seed : seeds) {
    try {
      auto c = sync_connect(seed, timeout);
      auto info = sync_command(c.get(), {"INFO", "cluster"}).str;
      return info.find("cluster_enabled:1") != std::string::npos ? Mode::cluster : Mode::standalone;
    } catch (const std::exception&) {
      // down: ask the next
    }
  }
  return std::nullopt;
}

std::optional<int> slots_assigned(const std::vector<Endpoint>& seeds,
                                  std::chrono::milliseconds timeout) {
  constexpr std::string_view field = "cluster_slots_assigned:";
  for (const Endpoint& seed : seeds) {
    try {
      auto c = sync_connect(seed, timeout);
      auto info = sync_command(c.get(), {"CLUSTER", "INFO"}).str;
      auto at = info.find(field);
      if (at == std::string::npos) continue;
      return std::atoi(info.c_str() + at + field.size());
    } catch (const std::exception&) {
      // down: ask the next
    }
  }
  return std::nullopt;
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
  for (const Endpoint& seed : seeds) {
    try {
      auto c = sync_connect(seed, timeout);
      auto shards = parse_shards(sync_run(c.get(), {"CLUSTER", "SHARDS"}), seed.host);
      if (!shards.empty()) return shards;
    } catch (const std::exception&) {
      // down: ask the next
    }
  }
  return {};
}

}  // namespace cartd::redis
