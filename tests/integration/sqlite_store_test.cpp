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

// The DB writer's lease on a group can lapse before its write lands (a DB write waits
// for a lock up to --db-timeout-ms); another instance then takes the group and writes a
// newer count first. The late write, of a count read earlier, must change nothing, even
// when the newer write found the count unchanged.
void a_count_read_earlier_never_undoes_one_read_later(db::Store& store) {
  std::vector<db::StockRow> rows = {{"inv-1", "p-1", "One", 100, 9}};
  store.add_missing(rows);
  auto reserved = [&] { return store.stock_rows().at(0).reserved; };
  std::vector<db::ReservedCount> six{{"inv-1", 6}}, five{{"inv-1", 5}}, four{{"inv-1", 4}};
  store.set_reserved(six, 2000);
  EXPECT_EQ(reserved(), 6);
  store.set_reserved(five, 1000);
  EXPECT_EQ(reserved(), 6) << "a count read before the stored one";
  store.set_reserved(six, 3000);  // unchanged, read later
  store.set_reserved(five, 2500);
  EXPECT_EQ(reserved(), 6) << "a count read before an unchanged write";
  store.set_reserved(four, 3000);
  EXPECT_EQ(reserved(), 4) << "a count read at the same moment";
  store.set_reserved(five, 4000);
  EXPECT_EQ(reserved(), 5);
}

TEST(SqliteStore, a_reserved_count_read_earlier_never_undoes_one_read_later) {
  TempDir dir;
  auto path = (dir.path() / "shop.db").string();
  {
    // A main DB from before the fence gets its column.
    auto store = db::open_sqlite_store(path, 5000);
    sqlite_exec(path, "ALTER TABLE inventory DROP COLUMN reserved_read_at");
  }
  auto store = db::open_sqlite_store(path, 5000);
  a_count_read_earlier_never_undoes_one_read_later(*store);
}

TEST(PostgresStore, a_reserved_count_read_earlier_never_undoes_one_read_later) {
  PgServer pg;
  std::string url = pg.new_database("shop");
  {
    auto store = db::open_postgres_store(url, 5000);
    pg.query_int("shop", "ALTER TABLE inventory DROP COLUMN reserved_read_at");
  }
  auto store = db::open_postgres_store(url, 5000);
  a_count_read_earlier_never_undoes_one_read_later(*store);
}

}  // namespace sqlite_store_test
}  // namespace cartd::test
