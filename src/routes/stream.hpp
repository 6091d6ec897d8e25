// stream: GET /v1/stock/stream?inventory_id=a&inventory_id=b, live availability pushed
// to open pages as Server-Sent Events.
//
// A page first gets each row's current counts, read when it opens, then every change the
// instance's poller (stock/live.hpp) hands to its loop, as
//   id: <ms>\nevent: stock\ndata: {"inventory_id","available","on_hand","reserved"}\n\n
// A page never hears the same counts twice in a row. A reconnect (EventSource sends
// Last-Event-ID) starts again from the current counts: they are the whole state, so no
// change is missed. Heartbeat comments keep idle streams open through proxies.
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "http/server.hpp"
#include "stock/live.hpp"
#include "stock/service.hpp"

namespace cartd::stock {

// How often an EventSource that lost its stream tries again (the `retry:` field).
inline constexpr std::chrono::milliseconds kStreamRetry{1000};

// The open streams of one event loop. Everything runs on that loop.
class StockStreams {
 public:
  StockStreams(LiveStock& live, StockService& stock, std::size_t max_rows)
      : live_(live), stock_(stock), max_rows_(max_rows) {}
  ~StockStreams();

  // A poll's changes: each page that watches a changed row hears of it.
  void deliver(const LiveChanges& changes);
  void add_routes(http::Router& router);

 private:
  struct Page {
    std::shared_ptr<http::EventStream> stream;
    std::vector<std::string> ids;
    // What the page last heard of each row, so it never hears the same twice.
    std::unordered_map<std::string, std::optional<LiveCounts>> sent;
  };
  void open(const http::Request& req, http::Respond respond);
  void attach(std::shared_ptr<http::EventStream> stream, std::vector<std::string> ids,
              std::unordered_map<std::string, std::optional<LiveCounts>> sent);
  void detach(std::list<Page>::iterator page);

  LiveStock& live_;
  StockService& stock_;
  const std::size_t max_rows_;
  std::list<Page> pages_;
  std::unordered_map<std::string, std::vector<Page*>> by_row_;
};

// One `stock` event (without its trailing blank line's `id:` when at_ms is 0).
std::string stock_event(std::int64_t at_ms, const std::string& inventory_id,
                        const std::optional<LiveCounts>& counts);

}  // namespace cartd::stock
