#include "routes/stream.hpp"

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <chrono>

#include "base/clock.hpp"
#include "base/ids.hpp"
#include "base/session_id.hpp"
#include "routes/classic.hpp"
#include "routes/v1.hpp"

namespace cartd::stock {
namespace {

namespace json = boost::json;
using http::error_response;

// A stream's place under --max-streams and its watched rows, from the first read until
// the page is attached (then detach gives them back) or the answer is dropped.
struct Place {
  Place(LiveStock& live, std::vector<std::string> ids) : live(live), ids(std::move(ids)) {}
  Place(const Place&) = delete;
  Place& operator=(const Place&) = delete;
  ~Place() {
    if (handed_over) return;
    live.unwatch(ids);
    live.close_stream();
  }
  LiveStock& live;
  std::vector<std::string> ids;
  bool handed_over = false;
};

// A stream's place and its rows, or nullopt after answering 503 at --max-streams. The
// rows are watched before the page's first read: a change after that read reaches the
// poller, which reads the row again (a new row is news to it), and the page hears it.
std::shared_ptr<Place> take_place(LiveStock& live, std::vector<std::string> ids,
                                  const http::Respond& respond) {
  if (!live.open_stream()) {
    http::Response r = error_response(503, "unavailable",
                                      "cartd has as many streams open as it may (" +
                                          std::to_string(live.max_streams()) + "); retry shortly");
    r.headers.emplace_back("Retry-After", "1");
    respond(std::move(r));
    return nullptr;
  }
  live.watch(ids);
  return std::make_shared<Place>(live, std::move(ids));
}

}  // namespace

std::string stock_event(std::int64_t at_ms, const std::string& inventory_id,
                        const std::optional<LiveCounts>& counts) {
  json::object data{{"inventory_id", inventory_id}};
  if (counts) {
    data["available"] = counts->on_hand - counts->reserved;
    data["on_hand"] = counts->on_hand;
    data["reserved"] = counts->reserved;
  } else {
    // The row was deleted from Redis (or never mirrored): nothing is available.
    data["available"] = 0;
    data["on_hand"] = 0;
    data["reserved"] = 0;
  }
  std::string out;
  if (at_ms != 0) out += "id: " + std::to_string(at_ms) + "\n";
  out += "event: stock\ndata: ";
  out += json::serialize(data);
  out += "\n\n";
  return out;
}

std::string offer_event(const cart::Offer& offer) {
  return "event: offer\ndata: " + json::serialize(cart::offer_json(offer)) + "\n\n";
}

StockStreams::~StockStreams() {
  for (Page& p : pages_) {
    live_.unwatch(p.ids);
    live_.close_stream();
  }
}

void StockStreams::add_routes(http::Router& router) {
  // Before /v1/stock/{inventory_id}, which would take "stream" as an id.
  router.add(http::Verb::get, "/v1/stock/stream",
             [this](const http::Request& req, const http::PathParams&, http::Respond respond) {
               open(req, std::move(respond));
             });
  router.add(http::Verb::get, "/v1/carts/{id}/stream",
             [this](const http::Request&, const http::PathParams& p, http::Respond respond) {
               auto sid = parse_session_id(p[0]);
               if (!sid) {
                 return respond(error_response(400, "invalid_cart_id", "a cart id is a UUID"));
               }
               open_cart(*sid, std::move(respond));
             });
}

void StockStreams::open(const http::Request& req, http::Respond respond) {
  auto target = boost::urls::parse_origin_form(req.target());
  std::vector<std::string> ids;
  if (target) {
    for (auto param : target->params()) {
      if (param.key != "inventory_id") continue;
      if (!is_valid_id(param.value)) {
        return respond(error_response(400, "invalid_id",
                                      "inventory_id must be 1-64 characters of [A-Za-z0-9._-]"));
      }
      if (std::find(ids.begin(), ids.end(), param.value) == ids.end()) ids.push_back(param.value);
      if (ids.size() > max_rows_) {
        return respond(error_response(
            400, "too_many_rows",
            "a stream may watch at most " + std::to_string(max_rows_) + " stock rows",
            {{"max_rows", max_rows_}}));
      }
    }
  }
  if (ids.empty()) {
    return respond(error_response(
        400, "missing_field", "name the stock rows to watch: ?inventory_id=...&inventory_id=..."));
  }
  auto place = take_place(live_, std::move(ids), respond);
  if (!place) return;
  stock_.counts(place->ids, [this, place, respond = std::move(respond)](auto counts) {
    const std::vector<std::string>& ids = place->ids;
    if (!counts) return respond(cart::unavailable(counts.error()));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (!(*counts)[i]) {
        return respond(error_response(404, "unknown_inventory", "Unknown inventory_id",
                                      {{"inventory_id", ids[i]}}));
      }
    }
    std::int64_t at = epoch_ms();
    std::string first = "retry: " + std::to_string(kStreamRetry.count()) + "\n\n";
    std::unordered_map<std::string, std::optional<LiveCounts>> sent;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      first += stock_event(at, ids[i], (*counts)[i]);
      sent.emplace(ids[i], (*counts)[i]);
    }
    http::Response r{200, std::move(first), http::kEventStreamContentType, {}, {}};
    // The server calls r.stream once the head and the first events are written. If the
    // connection ends first (or the request was HEAD), it never does, and `place` gives
    // the stream's place and rows back when the answer is dropped.
    r.stream = [this, place,
                sent = std::move(sent)](std::shared_ptr<http::EventStream> stream) mutable {
      place->handed_over = true;  // detach gives them back now
      attach(Page{std::move(stream), place->ids, std::move(sent), "", {}, {}});
    };
    respond(std::move(r));
  });
}

void StockStreams::open_cart(const std::string& session_id, http::Respond respond) {
  carts_.get_cart(session_id, [this, session_id, respond = std::move(respond)](auto found) mutable {
    if (!found) return respond(cart::unavailable(found.error()));
    if (!found->cart) return respond(cart::missing_cart(found->missing));
    const cart::CartView& cart = *found->cart;
    std::vector<std::string> ids;
    std::unordered_map<std::string, std::string> products;
    json::array waitlist;
    for (const cart::WaitPlace& w : cart.waitlist) {
      ids.push_back(w.inventory_id);
      products[w.inventory_id] = w.product_id;
      waitlist.push_back(cart::wait_place_json(w));
    }
    for (const cart::Offer& o : cart.offers) {
      ids.push_back(o.inventory_id);
      products[o.inventory_id] = o.product_id;
    }
    auto place = take_place(live_, ids, respond);
    if (!place) return;
    std::string first = "retry: " + std::to_string(kStreamRetry.count()) + "\n\n";
    first += "event: waitlist\ndata: " +
             json::serialize(json::object{{"waitlist", std::move(waitlist)}}) + "\n\n";
    std::unordered_map<std::string, std::int64_t> offers_sent;
    for (const cart::Offer& o : cart.offers) {
      first += offer_event(o);
      offers_sent[o.inventory_id] = o.expires_at_ms;
    }
    http::Response r{200, std::move(first), http::kEventStreamContentType, {}, {}};
    r.stream = [this, place, session_id, offers_sent = std::move(offers_sent),
                products = std::move(products)](std::shared_ptr<http::EventStream> stream) mutable {
      place->handed_over = true;
      attach(Page{std::move(stream),
                  place->ids,
                  {},
                  session_id,
                  std::move(offers_sent),
                  std::move(products)});
    };
    respond(std::move(r));
  });
}

void StockStreams::attach(Page page) {
  auto at = pages_.insert(pages_.end(), std::move(page));
  for (const std::string& id : at->ids) by_row_[id].push_back(&*at);
  at->stream->on_close([this, at] { detach(at); });
}

// A cart's page hears each offer of a row to its cart once.
void StockStreams::tell_offers(Page& page, const RowCounts& row) {
  for (const RowOffer& o : row.offers) {
    if (o.session_id != page.cart) continue;
    auto& sent = page.offers_sent[row.inventory_id];
    if (sent == o.expires_at_ms) continue;
    sent = o.expires_at_ms;
    page.stream->send(offer_event(cart::Offer{row.inventory_id, page.products[row.inventory_id],
                                              o.quantity, o.expires_at_ms}));
  }
}

void StockStreams::detach(std::list<Page>::iterator page) {
  for (const std::string& id : page->ids) {
    auto at = by_row_.find(id);
    if (at == by_row_.end()) continue;
    std::erase(at->second, &*page);
    if (at->second.empty()) by_row_.erase(at);
  }
  live_.unwatch(page->ids);
  live_.close_stream();
  pages_.erase(page);
}

void StockStreams::deliver(const LiveChanges& changes) {
  if (changes.heartbeat) {
    auto beat = std::make_shared<const std::string>(": heartbeat\n\n");
    for (Page& p : pages_) p.stream->send(beat);
  }
  // One event text per row, shared by every page that watches it.
  for (const RowCounts& row : changes.rows) {
    auto at = by_row_.find(row.inventory_id);
    if (at == by_row_.end()) continue;
    auto event = std::make_shared<const std::string>(
        stock_event(changes.at_ms, row.inventory_id, row.counts));
    for (Page* p : at->second) {
      if (!p->cart.empty()) {
        tell_offers(*p, row);
        continue;
      }
      auto& last = p->sent[row.inventory_id];
      if (last == row.counts) continue;
      last = row.counts;
      p->stream->send(event);
    }
  }
}

}  // namespace cartd::stock
