// client: one multiplexed hiredis connection bound to one event loop.
//
// Every caller on the loop shares the connection; commands issued in one loop turn
// leave in one write (see asio_adapter). When Redis is unreachable, commands fail at
// once with Errc::unavailable rather than queue. The client reconnects with
// exponential backoff, and on each connect authenticates, selects the database, loads
// the cartd Redis Functions library and runs the owner's setup step before it takes
// commands again. A watchdog drops the connection when a reply is overdue, so a hung
// Redis turns into errors, not hung requests.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include "metrics/metrics.hpp"
#include "redis/commands.hpp"
#include "redis/reply.hpp"
#include "redis/url.hpp"

struct redisAsyncContext;

namespace cartd::redis {

// Appends a command to `out` in the protocol's own form (RESP: "*<count>", then
// "$<length>" and the bytes of each argument, each ending in CRLF): what hiredis'
// redisFormatCommandArgv writes, at a third of its cost (measured: 0.4 against 1.2 us
// for a row step's 23 arguments; its sdscatfmt parses a format per argument).
void encode_command(std::span<const std::string_view> args, std::string& out);

class Client;
// A connection's setup step (Options::on_setup).
using SetupStep = std::function<void(Client&, std::function<void(bool)>)>;

class Client final : public Commands {
 public:
  struct Options {
    Endpoint endpoint;
    std::string_view library;  // the Redis Functions library, loaded on every connect
    std::chrono::milliseconds command_timeout{2000};
    std::chrono::milliseconds max_backoff{2000};
    std::string name = "cartd";  // CLIENT SETNAME, to tell connections apart
    // Runs once per connect after the library is loaded and before the client is ready;
    // it may send commands with setup_command() and must call done(ok) once.
    std::function<void(Client&, std::function<void(bool)> done)> on_setup;
    // Where each command's time to its reply is counted, written on this client's loop
    // only (none: not counted).
    metrics::LatencyHistogram* latency = nullptr;
  };

  Client(boost::asio::io_context& io, Options options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void start() override;
  void stop() override;
  // Safe to call from any thread (/healthz asks every loop's client).
  boost::asio::io_context& context() override { return io_; }
  bool ready() const override { return state_ == State::ready; }
  const Endpoint& endpoint() const { return options_.endpoint; }

  // Sends one command. The handler runs on this client's loop, exactly once.
  void command(std::span<const std::string_view> args, ReplyHandler handler) override;
  using Commands::command;
  // The same, for a command in the protocol's form already (encode_command): a caller
  // that may send it again keeps it so (ClusterClient, after MOVED, ASK or TRYAGAIN).
  void command_encoded(std::string_view command, ReplyHandler handler);
  // The same while the client runs its setup step (on_setup), before it is ready.
  void setup_command(std::span<const std::string_view> args, ReplyHandler handler);
  void setup_command(std::initializer_list<std::string_view> args, ReplyHandler handler) {
    setup_command(std::span(args.begin(), args.size()), std::move(handler));
  }

  // Turns this connection into a subscriber of `channel` (it takes no other commands
  // after). on_message runs for each message. Call it from on_setup, so that it is
  // subscribed again after every reconnect.
  void subscribe(const std::string& channel, std::function<void(std::string_view)> on_message);

 private:
  enum class State { stopped, connecting, setting_up, ready };

  void connect();
  void on_connected(bool ok);
  void on_lost(redisAsyncContext* ctx);
  void schedule_reconnect();
  void arm_watchdog();
  void send(std::span<const std::string_view> args, ReplyHandler handler);
  void send_encoded(std::string_view command, ReplyHandler handler);
  void drop_connection(const char* why);

  static void on_reply(redisAsyncContext* ctx, void* reply, void* privdata);
  static void on_message(redisAsyncContext* ctx, void* reply, void* privdata);

  boost::asio::io_context& io_;
  Options options_;
  // Atomic only so that ready() may be read from another loop; written on this one.
  std::atomic<State> state_ = State::stopped;
  redisAsyncContext* ctx_ = nullptr;
  boost::asio::steady_timer reconnect_timer_;
  boost::asio::steady_timer watchdog_;
  std::chrono::milliseconds backoff_{0};
  bool reconnect_scheduled_ = false;
  std::size_t pending_ = 0;
  std::chrono::steady_clock::time_point last_progress_;
  std::function<void(std::string_view)> on_message_;
};

}  // namespace cartd::redis
