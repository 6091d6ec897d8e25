// asio_adapter: runs a hiredis async context on an Asio io_context.
//
// hiredis asks its event library for five things: start/stop watching for reads,
// start/stop watching for writes, and clean up. This adapter answers them with
// async_wait on the context's socket and nothing more. The write hook only arms a
// wait, so every command issued during one turn of the loop is buffered by hiredis
// and leaves in one write when the wait completes: pipelining without extra code.
#pragma once

#include <boost/asio/io_context.hpp>

struct redisAsyncContext;

namespace cartd::redis {

// Attaches `ctx` (just created, not yet connected) to `io`. The attachment lives until
// hiredis calls its cleanup hook when the context is freed.
void attach(redisAsyncContext* ctx, boost::asio::io_context& io);

}  // namespace cartd::redis
