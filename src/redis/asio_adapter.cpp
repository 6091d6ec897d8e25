#include "redis/asio_adapter.hpp"

#include <hiredis/async.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <memory>

namespace cartd::redis {
namespace {

namespace asio = boost::asio;
using wait_type = asio::posix::stream_descriptor::wait_type;

// One per hiredis context. Pending waits hold a shared_ptr to it, so a wait that
// completes after the context is gone finds `ctx == nullptr` and does nothing.
struct Watch : std::enable_shared_from_this<Watch> {
  Watch(redisAsyncContext* c, asio::io_context& io) : ctx(c), socket(io, c->c.fd) {}

  redisAsyncContext* ctx;
  asio::posix::stream_descriptor socket;
  std::shared_ptr<Watch> self;  // the hooks' reference; dropped by cleanup
  bool want_read = false;
  bool want_write = false;
  bool read_armed = false;
  bool write_armed = false;

  void arm_read() {
    if (ctx == nullptr || !want_read || read_armed) return;
    read_armed = true;
    socket.async_wait(wait_type::wait_read, [w = shared_from_this()](boost::system::error_code ec) {
      w->read_armed = false;
      if (ec || w->ctx == nullptr || !w->want_read) return;
      redisAsyncHandleRead(w->ctx);  // may free the context: cleanup clears w->ctx
      w->arm_read();
    });
  }

  void arm_write() {
    if (ctx == nullptr || !want_write || write_armed) return;
    write_armed = true;
    socket.async_wait(wait_type::wait_write,
                      [w = shared_from_this()](boost::system::error_code ec) {
                        w->write_armed = false;
                        if (ec || w->ctx == nullptr || !w->want_write) return;
                        redisAsyncHandleWrite(w->ctx);
                        w->arm_write();
                      });
  }

  static Watch& of(void* data) { return *static_cast<Watch*>(data); }
};

}  // namespace

void attach(redisAsyncContext* ctx, asio::io_context& io) {
  auto watch = std::make_shared<Watch>(ctx, io);
  watch->self = watch;
  ctx->ev.data = watch.get();
  ctx->ev.addRead = [](void* data) {
    Watch& w = Watch::of(data);
    w.want_read = true;
    w.arm_read();
  };
  ctx->ev.delRead = [](void* data) { Watch::of(data).want_read = false; };
  ctx->ev.addWrite = [](void* data) {
    Watch& w = Watch::of(data);
    w.want_write = true;
    w.arm_write();
  };
  ctx->ev.delWrite = [](void* data) { Watch::of(data).want_write = false; };
  ctx->ev.cleanup = [](void* data) {
    Watch& w = Watch::of(data);
    w.ctx = nullptr;
    w.want_read = w.want_write = false;
    w.socket.release();  // hiredis closes the socket itself; pending waits are cancelled
    std::shared_ptr<Watch> last = std::move(w.self);
  };
}

}  // namespace cartd::redis
