#include "stock/mirror.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <optional>
#include "functions/keys.hpp"

#include "redis/client.hpp"
#include "redis/connect.hpp"
#include "stock/service.hpp"

namespace cartd::stock {
namespace {

constexpr std::size_t kRowsPerCall = 500;

// Sends the rows in batches, pipelined, then marks the mirror complete; done(ok) after
// the last answer.
void mirror_rows(redis::Client& client, std::vector<db::StockRow> rows,
                 std::function<void(bool)> finished) {
  auto done = [&client, finished = std::move(finished)](bool ok) {
    if (!ok) return finished(false);
    client.setup_command({"SET", keys::kMirroredKey, "1"},
                         [finished](redis::Result r) { finished(r && !r->is_error()); });
  };
  struct Progress {
    std::size_t remaining;
    bool ok = true;
    std::function<void(bool)> done;
  };
  std::size_t calls = (rows.size() + kRowsPerCall - 1) / kRowsPerCall;
  if (calls == 0) calls = 1;  // an empty catalog is mirrored too
  auto progress = std::make_shared<Progress>(Progress{calls, true, std::move(done)});
  for (std::size_t start = 0; start < rows.size() || (start == 0 && rows.empty());
       start += kRowsPerCall) {
    std::size_t end = std::min(rows.size(), start + kRowsPerCall);
    std::vector<std::string> owned =
        mirror_args(std::vector<db::StockRow>(rows.begin() + static_cast<std::ptrdiff_t>(start),
                                              rows.begin() + static_cast<std::ptrdiff_t>(end)));
    std::vector<std::string_view> args(owned.begin(), owned.end());
    client.setup_command(std::span<const std::string_view>(args), [progress](redis::Result r) {
      if (!r || r->is_error()) {
        spdlog::error("mirror: {}", r ? r->str : r.error().message());
        progress->ok = false;
      }
      if (--progress->remaining == 0) progress->done(progress->ok);
    });
    if (rows.empty()) break;
  }
}

}  // namespace

SetupStep mirror_on_setup(LoadRows load_rows, std::shared_ptr<std::atomic<bool>> mirrored_once) {
  return [load_rows = std::move(load_rows), mirrored_once](redis::Client& client,
                                                           std::function<void(bool)> done) {
    client.setup_command({"EXISTS", keys::kMirroredKey}, [&client, load_rows, mirrored_once,
                                                          done = std::move(done)](redis::Result r) {
      if (!r || r->is_error()) return done(false);
      bool lost = r->integer == 0;
      if (!lost && mirrored_once->exchange(true)) return done(true);
      std::vector<db::StockRow> rows;
      try {
        rows = load_rows();
      } catch (const std::exception& e) {
        spdlog::error("mirror: cannot read stock from the main DB: {}", e.what());
        return done(false);
      }
      if (lost) {
        spdlog::warn("mirror: Redis has no stock mirror (new or lost data); mirroring {} rows",
                     rows.size());
      } else {
        spdlog::info("mirror: mirroring {} stock rows from the main DB", rows.size());
      }
      mirrored_once->store(true);
      mirror_rows(client, std::move(rows), done);
    });
  };
}

bool mirror_cluster(const std::vector<redis::Endpoint>& seeds, std::string_view library,
                    const LoadRows& load_rows, std::chrono::milliseconds command_timeout) {
  using namespace std::chrono_literals;
  std::vector<db::StockRow> rows;
  try {
    rows = load_rows();
  } catch (const std::exception& e) {
    spdlog::critical("mirror: cannot read stock from the main DB: {}", e.what());
    return false;
  }
  boost::asio::io_context io;
  auto redis = redis::make_commands(
      io, redis::Mode::cluster, seeds,
      redis::Client::Options{{}, library, command_timeout, 500ms, "cartd2-mirror", {}, nullptr});
  StockService stock(*redis, true);
  std::optional<bool> ok;
  bool sent = false;
  auto until = std::chrono::steady_clock::now() + 30s;
  redis->start();
  while (!ok && std::chrono::steady_clock::now() < until) {
    if (!sent && redis->ready()) {
      sent = true;
      stock.mirror(rows, [&](boost::system::result<std::int64_t> r) {
        if (!r) spdlog::critical("mirror: {}", r.error().message());
        ok = r.has_value();
      });
    }
    io.run_one_for(50ms);
  }
  redis->stop();
  io.run_for(100ms);
  if (!ok) spdlog::critical("mirror: the Redis Cluster did not take the stock rows within 30 s");
  if (ok.value_or(false))
    spdlog::info("mirror: {} stock rows mirrored into the cluster", rows.size());
  return ok.value_or(false);
}

}  // namespace cartd::stock
