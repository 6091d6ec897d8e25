// executor: runs main-DB work off the event loops. A small pool of threads, each with
// its own connection (opened on first use), so a slow disk or a busy database never
// stalls a loop; the result is posted back to the loop that asked.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/system/result.hpp>
#include <functional>
#include <memory>
#include <string>

#include "db/store.hpp"

namespace cartd::db {

template <typename T>
using DbResult = boost::system::result<T, std::string>;

// Ownership: an Executor posts results into the loops' io_contexts, so it must stop
// (stop() or its destructor) before they are destroyed: declare it after the loops.
class Executor {
 public:
  Executor(std::string url, std::size_t threads, int statement_timeout_ms)
      : url_(std::move(url)), statement_timeout_ms_(statement_timeout_ms), pool_(threads) {}
  ~Executor() { stop(); }

  // Drops the work not yet begun and waits for the work under way, which the statement
  // timeout bounds. Results still posted then go to loops that no longer run them.
  void stop() {
    pool_.stop();
    pool_.join();
  }

  // Runs work(store) on a pool thread, then done(result) on `reply_on`. An exception
  // thrown by work becomes the error. `done` moves to the loop with the result and is
  // destroyed there: what it holds (a connection, through its Respond) belongs to that
  // loop, and a copy left behind here would release it on a pool thread, racing the loop
  // (ThreadSanitizer found ~Connection running on a pool thread).
  template <typename T>
  void run(boost::asio::io_context& reply_on, std::function<T(Store&)> work,
           std::function<void(DbResult<T>)> done) {
    boost::asio::post(
        pool_, [this, &reply_on, work = std::move(work), done = std::move(done)]() mutable {
          DbResult<T> result = boost::system::result<T, std::string>(boost::system::in_place_error,
                                                                     std::string("not run"));
          try {
            result = work(store());
          } catch (const std::exception& e) {
            result = DbResult<T>(boost::system::in_place_error, std::string(e.what()));
          }
          boost::asio::post(reply_on,
                            [done = std::move(done), result = std::move(result)] { done(result); });
        });
  }

 private:
  Store& store();

  std::string url_;
  int statement_timeout_ms_;
  boost::asio::thread_pool pool_;
};

}  // namespace cartd::db
