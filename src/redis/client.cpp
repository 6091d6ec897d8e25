#include "redis/client.hpp"

#include <hiredis/async.h>

#include <spdlog/spdlog.h>
#include <charconv>

#include <boost/asio/post.hpp>
#include <memory>
#include <vector>

#include "redis/asio_adapter.hpp"

namespace cartd::redis {
namespace {

using namespace std::chrono_literals;
constexpr std::chrono::milliseconds kFirstBackoff = 50ms;

// The command in the protocol's form, in a buffer the thread reuses (hiredis copies it).
std::string_view encoded(std::span<const std::string_view> args) {
  thread_local std::string out;
  out.clear();
  encode_command(args, out);
  return out;
}

struct Pending {
  ReplyHandler handler;
  std::chrono::steady_clock::time_point sent;  // set only when latency is counted
};

class Category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "cartd.redis"; }
  std::string message(int e) const override {
    switch (static_cast<Errc>(e)) {
      case Errc::unavailable:
        return "Redis is unavailable";
      case Errc::disconnected:
        return "the connection to Redis was lost";
      case Errc::timeout:
        return "Redis did not answer in time";
    }
    return "Redis error";
  }
};

}  // namespace

const boost::system::error_category& category() {
  static const Category instance;
  return instance;
}

Reply copy_reply(const redisReply& r) {
  Reply out;
  switch (r.type) {
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i)
        out.elements.push_back(copy_reply(*r.element[i]));
      break;
    default:
      break;
  }
  return out;
}

std::optional<std::string> Reply::text_at(std::size_t i) const {
  if (i >= elements.size()) return std::nullopt;
  const Reply& e = elements[i];
  if (e.type == Type::string || e.type == Type::status) return e.str;
  if (e.type == Type::integer) return std::to_string(e.integer);
  return std::nullopt;
}

std::optional<std::int64_t> Reply::int_at(std::size_t i) const {
  if (i >= elements.size()) return std::nullopt;
  const Reply& e = elements[i];
  if (e.type == Type::integer) return e.integer;
  if (e.type == Type::string) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(e.str.data(), e.str.data() + e.str.size(), v);
    if (ec == std::errc{} && end == e.str.data() + e.str.size()) return v;
  }
  return std::nullopt;
}

Client::Client(boost::asio::io_context& io, Options options)
    : io_(io), options_(std::move(options)), reconnect_timer_(io), watchdog_(io) {}

Client::~Client() {
  stop();
}

void Client::start() {
  if (state_ != State::stopped) return;
  connect();
  arm_watchdog();
}

void Client::stop() {
  state_ = State::stopped;
  reconnect_timer_.cancel();
  watchdog_.cancel();
  if (ctx_ != nullptr) {
    redisAsyncContext* ctx = std::exchange(ctx_, nullptr);
    redisAsyncFree(ctx);  // pending handlers run now, with Errc::disconnected
  }
}

void Client::connect() {
  state_ = State::connecting;
  last_progress_ = std::chrono::steady_clock::now();
  const Endpoint& e = options_.endpoint;
  redisAsyncContext* ctx = redisAsyncConnect(e.host.c_str(), e.port);
  if (ctx == nullptr || ctx->err) {
    spdlog::warn("redis: cannot connect to {}:{}: {}", e.host, e.port,
                 ctx ? ctx->errstr : "out of memory");
    if (ctx != nullptr) redisAsyncFree(ctx);
    schedule_reconnect();
    return;
  }
  ctx_ = ctx;
  ctx->data = this;
  attach(ctx, io_);
  redisAsyncSetConnectCallback(ctx, [](const redisAsyncContext* c, int status) {
    static_cast<Client*>(c->data)->on_connected(status == REDIS_OK);
  });
  redisAsyncSetDisconnectCallback(ctx, [](const redisAsyncContext* c, int) {
    static_cast<Client*>(c->data)->on_lost(const_cast<redisAsyncContext*>(c));
  });
}

void Client::on_connected(bool ok) {
  if (!ok) {
    // hiredis frees the context itself after a failed connect.
    if (ctx_ != nullptr && backoff_ <= kFirstBackoff) {
      spdlog::warn("redis: cannot connect to {}:{}: {}", options_.endpoint.host,
                   options_.endpoint.port, ctx_->errstr);
    }
    ctx_ = nullptr;
    if (state_ != State::stopped) schedule_reconnect();
    return;
  }
  state_ = State::setting_up;

  // The setup commands leave in one write; the client is ready when all have answered.
  struct Setup {
    Client* client;
    int remaining = 0;
    bool failed = false;
  };
  auto setup = std::make_shared<Setup>(Setup{this});
  auto expect_ok = [this, setup](const char* what) {
    ++setup->remaining;
    return [this, setup, what](Result r) {
      if (!r || r->is_error()) {
        if (!setup->failed) {
          spdlog::error("redis: {} failed: {}", what, r ? r->str : r.error().message());
          setup->failed = true;
          boost::asio::post(io_, [this] { drop_connection("setup failed"); });
        }
        return;
      }
      if (--setup->remaining > 0 || setup->failed) return;
      auto done = [this](bool ok) {
        if (state_ != State::setting_up) return;
        if (!ok) {
          boost::asio::post(io_, [this] { drop_connection("setup step failed"); });
          return;
        }
        state_ = State::ready;
        backoff_ = 0ms;
        spdlog::info("redis: {} connected to {}:{}", options_.name, options_.endpoint.host,
                     options_.endpoint.port);
      };
      if (options_.on_setup) {
        options_.on_setup(*this, done);
      } else {
        done(true);
      }
    };
  };

  const Endpoint& e = options_.endpoint;
  if (!e.password.empty()) {
    if (e.user.empty()) {
      send(std::initializer_list<std::string_view>{"AUTH", e.password}, expect_ok("AUTH"));
    } else {
      send(std::initializer_list<std::string_view>{"AUTH", e.user, e.password}, expect_ok("AUTH"));
    }
  }
  std::string db = std::to_string(e.db);
  send(std::initializer_list<std::string_view>{"SELECT", db}, expect_ok("SELECT"));
  send(std::initializer_list<std::string_view>{"CLIENT", "SETNAME", options_.name},
       expect_ok("CLIENT SETNAME"));
  if (!options_.library.empty()) {
    send(std::initializer_list<std::string_view>{"FUNCTION", "LOAD", "REPLACE", options_.library},
         expect_ok("FUNCTION LOAD"));
  }
}

void Client::on_lost(redisAsyncContext* ctx) {
  if (ctx == ctx_) {
    spdlog::warn("redis: {} lost its connection: {}", options_.name,
                 ctx->errstr ? ctx->errstr : "closed");
    ctx_ = nullptr;
  }
  if (state_ != State::stopped) schedule_reconnect();
}

void Client::drop_connection(const char* why) {
  if (ctx_ == nullptr) return;
  spdlog::warn("redis: {} drops its connection: {}", options_.name, why);
  redisAsyncContext* ctx = std::exchange(ctx_, nullptr);
  redisAsyncFree(ctx);
  if (state_ != State::stopped) schedule_reconnect();
}

void Client::schedule_reconnect() {
  if (reconnect_scheduled_ || state_ == State::stopped) return;
  reconnect_scheduled_ = true;
  state_ = State::connecting;
  backoff_ = backoff_ == 0ms ? kFirstBackoff : std::min(backoff_ * 2, options_.max_backoff);
  reconnect_timer_.expires_after(backoff_);
  reconnect_timer_.async_wait([this](boost::system::error_code ec) {
    reconnect_scheduled_ = false;
    if (ec || state_ == State::stopped) return;
    connect();
  });
}

void Client::arm_watchdog() {
  watchdog_.expires_after(options_.command_timeout / 4);
  watchdog_.async_wait([this](boost::system::error_code ec) {
    if (ec || state_ == State::stopped) return;
    auto overdue = std::chrono::steady_clock::now() - last_progress_ > options_.command_timeout;
    if (overdue && ctx_ != nullptr && (pending_ > 0 || state_ == State::connecting)) {
      drop_connection(pending_ > 0 ? "a reply is overdue" : "connect timed out");
    }
    arm_watchdog();
  });
}

void encode_command(std::span<const std::string_view> args, std::string& out) {
  char digits[24];
  auto put_count = [&](char kind, std::size_t n) {
    out.push_back(kind);
    out.append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
    out.append("\r\n", 2);
  };
  std::size_t size = 16;  // room for each argument and its "$<length>" and CRLFs
  for (std::string_view a : args) size += a.size() + 16;
  out.reserve(out.size() + size);
  put_count('*', args.size());
  for (std::string_view a : args) {
    put_count('$', a.size());
    out.append(a);
    out.append("\r\n", 2);
  }
}

void Client::command(std::span<const std::string_view> args, ReplyHandler handler) {
  command_encoded(encoded(args), std::move(handler));
}

void Client::command_encoded(std::string_view command, ReplyHandler handler) {
  if (state_ != State::ready) {
    handler(Errc::unavailable);
    return;
  }
  send_encoded(command, std::move(handler));
}

void Client::setup_command(std::span<const std::string_view> args, ReplyHandler handler) {
  if (state_ != State::setting_up && state_ != State::ready) {
    handler(Errc::unavailable);
    return;
  }
  send(args, std::move(handler));
}

void Client::send(std::span<const std::string_view> args, ReplyHandler handler) {
  send_encoded(encoded(args), std::move(handler));
}

void Client::send_encoded(std::string_view command, ReplyHandler handler) {
  if (ctx_ == nullptr) {
    handler(Errc::unavailable);
    return;
  }
  auto* pending = new Pending{std::move(handler), {}};
  if (options_.latency != nullptr) pending->sent = std::chrono::steady_clock::now();
  if (redisAsyncFormattedCommand(ctx_, &Client::on_reply, pending, command.data(),
                                 command.size()) != REDIS_OK) {
    std::unique_ptr<Pending> owned(pending);
    owned->handler(Errc::unavailable);
    return;
  }
  if (pending_++ == 0) last_progress_ = std::chrono::steady_clock::now();
}

void Client::subscribe(const std::string& channel,
                       std::function<void(std::string_view)> on_message) {
  on_message_ = std::move(on_message);
  if (ctx_ == nullptr) return;
  const char* argv[] = {"SUBSCRIBE", channel.c_str()};
  std::size_t lens[] = {9, channel.size()};
  // hiredis keeps this callback for every message on the channel; privdata is the
  // client itself, so nothing is freed per message or left behind on disconnect.
  redisAsyncCommandArgv(ctx_, &Client::on_message, this, 2, argv, lens);
}

void Client::on_message(redisAsyncContext*, void* reply, void* privdata) {
  auto* self = static_cast<Client*>(privdata);
  auto* r = static_cast<redisReply*>(reply);
  // A message is ["message", channel, payload]; the first reply confirms the subscription.
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
  if (std::string_view(r->element[0]->str, r->element[0]->len) != "message") return;
  if (self->on_message_)
    self->on_message_(std::string_view(r->element[2]->str, r->element[2]->len));
}

void Client::on_reply(redisAsyncContext* ctx, void* reply, void* privdata) {
  std::unique_ptr<Pending> pending(static_cast<Pending*>(privdata));
  auto* self = static_cast<Client*>(ctx->data);
  --self->pending_;
  self->last_progress_ = std::chrono::steady_clock::now();
  if (self->options_.latency != nullptr && reply != nullptr) {
    self->options_.latency->observe(self->last_progress_ - pending->sent);
  }
  if (reply == nullptr) {
    pending->handler(Errc::disconnected);
  } else {
    pending->handler(copy_reply(*static_cast<redisReply*>(reply)));
  }
}

}  // namespace cartd::redis
