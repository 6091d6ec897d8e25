#include "routes/stream.hpp"

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <chrono>

#include "base/ids.hpp"
#include "routes/classic.hpp"

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

std::int64_t epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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
  if (!live_.open_stream()) {
    http::Response r = error_response(503, "unavailable",
                                      "cartd has as many streams open as it may (" +
                                          std::to_string(live_.max_streams()) + "); retry shortly");
    r.headers.emplace_back("Retry-After", "1");
    return respond(std::move(r));
  }
  // Watched before the first read: a change after that read reaches the poller, which
  // reads the row again (a new row is news to it), and the page hears it.
  live_.watch(ids);
  auto place = std::make_shared<Place>(live_, std::move(ids));
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
      attach(std::move(stream), place->ids, std::move(sent));
    };
    respond(std::move(r));
  });
}

void StockStreams::attach(std::shared_ptr<http::EventStream> stream, std::vector<std::string> ids,
                          std::unordered_map<std::string, std::optional<LiveCounts>> sent) {
  auto page = pages_.insert(pages_.end(), Page{stream, std::move(ids), std::move(sent)});
  for (const std::string& id : page->ids) by_row_[id].push_back(&*page);
  stream->on_close([this, page] { detach(page); });
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
    for (Page& p : pages_) p.stream->send(": heartbeat\n\n");
  }
  // One event text per row, shared by every page that watches it.
  for (const RowCounts& row : changes.rows) {
    auto at = by_row_.find(row.inventory_id);
    if (at == by_row_.end()) continue;
    std::string event = stock_event(changes.at_ms, row.inventory_id, row.counts);
    for (Page* p : at->second) {
      auto& last = p->sent[row.inventory_id];
      if (last == row.counts) continue;
      last = row.counts;
      p->stream->send(event);
    }
  }
}

}  // namespace cartd::stock
