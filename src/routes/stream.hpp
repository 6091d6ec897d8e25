// stream: GET /v1/stock/stream?inventory_id=a&inventory_id=b, live availability pushed
// to open pages as Server-Sent Events.
//
// A page first gets each row's current counts, read when it opens, then every change the
// instance's poller (stock/live.hpp) hands to its loop, as
//   id: <ms>\nevent: stock\ndata: {"inventory_id","available","on_hand","reserved"}\n\n
// A page never hears the same counts twice in a row. A reconnect (EventSource sends
// Last-Event-ID) starts again from the current counts: they are the whole state, so no
// change is missed. Heartbeat comments keep idle streams open through proxies.
//
// GET /v1/carts/{id}/stream: the page of a cart that waits on sold-out rows hears of its
// offers at once: first `event: waitlist` (its places) and one `event: offer` per offer
// it holds, then an `offer` event for each new one. It watches the rows the cart waited
// on when it opened (a page opens it again after joining another waitlist); the offers
// come with the same poll that reads those rows' counts, so a waiting page costs Redis
// nothing either.
#pragma once

#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cart/service.hpp"
#include "http/server.hpp"
#include "stock/live.hpp"
#include "stock/service.hpp"

namespace cartd::stock {

// How often an EventSource that lost its stream tries again (the `retry:` field).
// Half a second: a restarted cartd has its pages back within about a second and a half.
inline constexpr std::chrono::milliseconds kStreamRetry{500};

// The open streams of one event loop. Everything runs on that loop.
class StockStreams {
 public:
  StockStreams(LiveStock& live, StockService& stock, cart::CartService& carts, std::size_t max_rows)
      : live_(live), stock_(stock), carts_(carts), max_rows_(max_rows) {}
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
    // A cart's page: the cart, and the deadline of each offer it heard of, per row.
    std::string cart;
    std::unordered_map<std::string, std::int64_t> offers_sent;
    std::unordered_map<std::string, std::string> products;  // of the rows it watches
  };
  void open(const http::Request& req, http::Respond respond);
  void open_cart(const std::string& session_id, http::Respond respond);
  void tell_offers(Page& page, const RowCounts& row);
  void attach(Page page);
  void detach(std::list<Page>::iterator page);

  LiveStock& live_;
  StockService& stock_;
  cart::CartService& carts_;
  const std::size_t max_rows_;
  std::list<Page> pages_;
  std::unordered_map<std::string, std::vector<Page*>> by_row_;
};

// One `stock` event (without its trailing blank line's `id:` when at_ms is 0).
std::string stock_event(std::int64_t at_ms, const std::string& inventory_id,
                        const std::optional<LiveCounts>& counts);
// One `offer` event: {"inventory_id", "product_id", "quantity", "expires_at"}.
std::string offer_event(const cart::Offer& offer);

}  // namespace cartd::stock
