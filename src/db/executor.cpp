#include "db/executor.hpp"

namespace cartd::db {

Store& Executor::store() {
  // One connection per pool thread; a process runs one Executor.
  thread_local std::unique_ptr<Store> store;
  if (!store) store = open_store(url_, statement_timeout_ms_);
  return *store;
}

}  // namespace cartd::db
