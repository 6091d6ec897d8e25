// connect: which Redis the --redis addresses name (a standalone server or a node of a
// Redis Cluster), and a connection of the right kind on an event loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "redis/client.hpp"
#include "redis/cluster.hpp"
#include "redis/commands.hpp"
#include "redis/url.hpp"

namespace cartd::redis {

enum class Mode { standalone, cluster };

// Asks the seeds in turn (INFO cluster) until one answers; nullopt when none does.
std::optional<Mode> detect_mode(const std::vector<Endpoint>& seeds,
                                std::chrono::milliseconds timeout);

// The slots a Redis Cluster has assigned (CLUSTER INFO cluster_slots_assigned), as the
// first seed that answers says; nullopt when none does.
std::optional<int> slots_assigned(const std::vector<Endpoint>& seeds,
                                  std::chrono::milliseconds timeout);

// A Client (standalone: the first seed) or a ClusterClient (every seed) whose
// connections are made as `node` says (its endpoint aside).
std::unique_ptr<Commands> make_commands(boost::asio::io_context& io, Mode mode,
                                        const std::vector<Endpoint>& seeds, Client::Options node);

// The primaries of a cluster and their slots, read with CLUSTER SHARDS from the first
// seed that answers (a tool's view, outside the event loops); empty when none does.
std::vector<Shard> sync_shards(const std::vector<Endpoint>& seeds,
                               std::chrono::milliseconds timeout);

}  // namespace cartd::redis
