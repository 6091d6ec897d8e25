// fuzz_http_request: the bytes a client sends on one connection, read the way the server
// reads them and answered the way it answers them.
//
// Input: the first byte is how many bytes each read returns (TCP may split a request
// anywhere; 1 reads byte by byte), the rest is what the client sends. Each request is
// read by Beast's parser with the server's limits, a fresh parser for each request of a
// keep-alive connection, as Connection::do_read does; then served as Connection::on_read
// serves it: CORS headers for its Origin, and the Router with every route of cartd but
// /healthz (the admin routes and the event streams too). Redis is never connected, so
// its commands fail at once (503), and the main DB cannot be opened, so DB work fails
// (503): each request is answered from what it says alone. The properties: a handler answers
// exactly once, with an HTTP status, and a JSON answer is JSON.
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "cart/service.hpp"
#include "db/executor.hpp"
#include "http/server.hpp"
#include "http/static_files.hpp"
#include "redis/client.hpp"
#include "require.hpp"
#include "routes/catalog.hpp"
#include "routes/classic.hpp"
#include "routes/stream.hpp"
#include "routes/v1.hpp"
#include "stock/live.hpp"
#include "stock/service.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using namespace cartd;
using namespace std::chrono_literals;

// The seeds use these, so the admin and CORS paths are reached.
constexpr std::string_view kAdminToken = "fuzz-admin-token";
constexpr std::string_view kOrigin = "https://shop.example";
// A handler whose DB work has not answered by then has lost its answer.
constexpr auto kAnswerTimeout = 5s;

// One event loop of cartd (src/app.cpp's Loop) with nothing to talk to. Declared in the
// order that lets each part outlive those built on it.
struct Service {
  Service() {
    limits.cors_origins = {std::string(kOrigin)};
    cart::add_classic_routes(router, carts);
    cart::add_cart_api_routes(router, api);
    streams.add_routes(router);  // before /v1/stock/{inventory_id}, as in cartd
    stock::add_catalog_routes(router, catalog);
    http::add_static_routes(router, "");
  }

  asio::io_context io{1};
  redis::Client redis{io, redis::Client::Options{}};  // never started: commands fail at once
  cart::CartService carts{redis, cart::CartSettings{}};
  stock::StockService stock{redis};
  db::Executor db{"none:", 1, db::kDefaultStatementTimeoutMs};  // not a DB URL: every call fails
  cart::ApiContext api{io, carts, db, 0};
  stock::CatalogContext catalog{io, stock, db, std::string(kAdminToken)};
  stock::LiveStock live{250ms, 15s, 100};  // never started: no poller
  stock::StockStreams streams{live, stock, carts, 100};
  http::ServerLimits limits;
  http::Router router;
};

// The server's own checks of a parsed request before it routes it (what
// Connection::on_read refuses): its refusal as the answer.
std::optional<http::Response> check_request(const http::Request& req) {
  auto refused = http::check_request_head(req);
  if (!refused) return std::nullopt;
  return http::error_response(refused->status, refused->code, refused->message);
}

// Routes one request and waits for its answer, which DB work sends from a pool thread
// through the loop. Checks that it comes exactly once.
http::Response route(Service& s, const http::Request& req) {
  struct Answers {
    int count = 0;
    http::Response last;
  };
  auto answers = std::make_shared<Answers>();
  {
    auto work = asio::make_work_guard(s.io);
    s.io.restart();
    s.router.dispatch(req, [answers](http::Response r) {
      ++answers->count;
      answers->last = std::move(r);
    });
    auto until = std::chrono::steady_clock::now() + kAnswerTimeout;
    while (answers->count == 0 && std::chrono::steady_clock::now() < until) {
      s.io.run_one_for(10ms);
    }
  }
  s.io.poll();  // anything else the handler left behind runs now
  CARTD_REQUIRE(answers->count == 1);
  return answers->last;
}

// What Connection::on_read does with a request Beast has read whole.
void serve(Service& s, const http::Request& req) {
  if (auto origin = req.find(bhttp::field::origin); origin != req.end()) {
    (void)http::cors_headers(s.limits, origin->value());
  }
  // A CORS preflight is answered by the connection itself, without the router.
  if (req.method() == bhttp::verb::options &&
      req.find(bhttp::field::access_control_request_method) != req.end()) {
    return;
  }
  auto refused = check_request(req);
  http::Response r = refused ? std::move(*refused) : route(s, req);
  CARTD_REQUIRE(r.status >= 100 && r.status <= 599);
  if (r.content_type == "application/json") {
    boost::system::error_code ec;
    (void)boost::json::parse(r.body, ec);
    CARTD_REQUIRE(!ec);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // 503s log an error each
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Service& service = *new Service;  // one loop for the whole run, as in cartd
  if (size == 0) return 0;
  std::size_t read_size = data[0] == 0 ? 1 : data[0];
  std::string_view sent(reinterpret_cast<const char*>(data + 1), size - 1);

  asio::io_context io;
  beast::test::stream client_side(io, sent);
  client_side.read_size(read_size);
  client_side.close_remote();  // the client sends nothing more: the end of the data is EOF
  beast::flat_buffer buffer;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.body_limit(service.limits.max_body_bytes);
    parser.header_limit(static_cast<std::uint32_t>(service.limits.max_header_bytes));
    beast::error_code ec;
    bhttp::read(client_side, buffer, parser, ec);
    // A request over a limit or not HTTP is refused and the connection closed; at the end
    // of the data there is nothing to answer.
    if (ec) break;
    serve(service, parser.get());
    if (!parser.get().keep_alive()) break;
  }
  return 0;
}
