// Micro-benchmarks of the pure parts on every request's path, so that a regression
// shows: request parsing and checks, session ids, reply decoding, cart JSON.
#include <benchmark/benchmark.h>

#include <boost/json/serialize.hpp>

#include "base/session_id.hpp"
#include "cart/rules.hpp"
#include "cart/service.hpp"
#include "replies.hpp"
#include "routes/v1.hpp"

namespace {

using namespace cartd;
using redis::Reply;

using test::arr;
using test::num;
using test::str;

Reply three_line_view() {
  return arr({num(1795910288947), str("cap-navy"), str("cap-navy"), num(2), str("Canvas Cap, Navy"),
              num(2499), str("mug-enamel"), str("mug-enamel"), num(1), str("Enamel Camp Mug"),
              num(1499), str("tee-black-m"), str("tee-black-m"), num(3),
              str("Classic Tee, Black, M"), num(1999)});
}

void parse_add_to_cart_body(benchmark::State& state) {
  const std::string body =
      R"({"product_id":"tee-black-m","inventory_id":"tee-black-m","quantity":3})";
  cart::Limits limits;
  for (auto _ : state) benchmark::DoNotOptimize(cart::parse_line_request(body, limits));
}
BENCHMARK(parse_add_to_cart_body);

void check_session_header(benchmark::State& state) {
  const std::string id = cartd::new_session_id();
  for (auto _ : state) benchmark::DoNotOptimize(cartd::parse_session_id(id));
}
BENCHMARK(check_session_header);

void new_session_id(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(cartd::new_session_id());
}
BENCHMARK(new_session_id);

void decode_three_line_cart(benchmark::State& state) {
  Reply r = three_line_view();
  std::string id = cartd::new_session_id();
  for (auto _ : state) benchmark::DoNotOptimize(cart::decode_cart(id, r));
}
BENCHMARK(decode_three_line_cart);

void decode_set_line_reply(benchmark::State& state) {
  Reply r = arr({str("ok"), str(cartd::new_session_id()), num(0), num(1795910288947), num(3),
                 num(0), three_line_view()});
  for (auto _ : state) benchmark::DoNotOptimize(cart::decode_set_line(r));
}
BENCHMARK(decode_set_line_reply);

void serialize_three_line_cart(benchmark::State& state) {
  auto cart = cart::decode_cart(cartd::new_session_id(), three_line_view())->cart;
  for (auto _ : state)
    benchmark::DoNotOptimize(boost::json::serialize(cart::cart_json(*cart, "USD")));
}
BENCHMARK(serialize_three_line_cart);

}  // namespace

BENCHMARK_MAIN();
