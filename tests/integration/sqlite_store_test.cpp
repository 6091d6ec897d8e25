// The SQLite main DB opened by several connections at once: instances started together
// on one file, or the housekeeper, the executor and `cartd check` of one instance.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "db/sql_store.hpp"
#include "harness.hpp"

namespace cartd::test {
namespace sqlite_store_test {

// SQLite answers "database is locked" at once, without waiting for the busy timeout,
// where waiting could deadlock (a reader that wants to write while another writes), so
// creating the schema must not depend on who came first.
TEST(SqliteStore, connections_opening_a_new_file_together_all_succeed) {
  constexpr int kRounds = 30;
  constexpr int kConnections = 6;
  std::vector<db::StockRow> rows = {{"inv-1", "p-1", "One", 100, 5},
                                    {"inv-2", "p-2", "Two", 200, 7}};
  for (int round = 0; round < kRounds; ++round) {
    TempDir dir;
    auto path = (dir.path() / "shared.db").string();
    std::atomic<int> ready = 0;
    std::atomic<std::size_t> added = 0;
    std::vector<std::string> errors(kConnections);
    std::vector<std::thread> threads;
    for (int i = 0; i < kConnections; ++i) {
      threads.emplace_back([&, i] {
        ++ready;
        while (ready < kConnections) std::this_thread::yield();
        try {
          auto store = db::open_sqlite_store(path, 5000);
          added += store->add_missing(rows);
          store->heartbeat();
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(i)] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kConnections; ++i) {
      EXPECT_EQ(errors[static_cast<std::size_t>(i)], "")
          << "round " << round << ", connection " << i;
    }
    EXPECT_EQ(added, rows.size()) << "round " << round;
    auto store = db::open_sqlite_store(path, 5000);
    auto stored = store->stock_rows();
    ASSERT_EQ(stored.size(), rows.size());
    if (::testing::Test::HasFailure()) return;
  }
}

}  // namespace sqlite_store_test
}  // namespace cartd::test
