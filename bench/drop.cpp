// drop: a flash sale against one stock row. ADDS requests POST /add-to-cart, each from a
// new cart (no cart-session-id), over CONNECTIONS keep-alive connections, as fast as
// cartd answers. Prints one JSON line: how many won (200) and were refused (409), the
// units held and oversold at the end, when the row sold out, p50/p99 of winners and of
// refusals, and the Redis function calls per refusal (from INFO commandstats).
// Usage: drop HTTP_PORT REDIS_PORT INVENTORY_ID ADDS CONNECTIONS
#include <hiredis/hiredis.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

namespace {

long long fcall_calls(int redis_port) {
  redisContext* c = redisConnect("127.0.0.1", redis_port);
  long long calls = -1;
  if (c && !c->err) {
    auto* r = static_cast<redisReply*>(redisCommand(c, "INFO commandstats"));
    if (r && r->type == REDIS_REPLY_STRING) {
      const char* at = std::strstr(r->str, "cmdstat_fcall:calls=");
      calls = at ? std::atoll(at + std::strlen("cmdstat_fcall:calls=")) : 0;
    }
    if (r) freeReplyObject(r);
  }
  if (c) redisFree(c);
  return calls;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * v.size()))];
}

http::response<http::string_body> request(beast::tcp_stream& s, http::verb verb,
                                          const std::string& target, const std::string& body) {
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(s, buffer, res);
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: drop HTTP_PORT REDIS_PORT INVENTORY_ID ADDS CONNECTIONS\n");
    return 2;
  }
  std::string port = argv[1], inv = argv[3];
  int redis_port = std::stoi(argv[2]), adds = std::stoi(argv[4]), connections = std::stoi(argv[5]);
  std::string body =
      R"({"product_id":")" + inv + R"(","inventory_id":")" + inv + R"(","quantity":1})";

  std::atomic<int> next{0}, errors{0};
  std::mutex mutex;
  std::vector<double> won_ms, refused_ms;
  Clock::time_point last_win{};
  long long calls_before = fcall_calls(redis_port);
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t) {
    threads.emplace_back([&] {
      std::vector<double> won, refused;
      Clock::time_point my_last_win{};
      try {
        asio::io_context io;
        beast::tcp_stream stream(io);
        stream.connect(asio::ip::tcp::resolver(io).resolve("127.0.0.1", port));
        while (next.fetch_add(1) < adds) {
          auto t0 = Clock::now();
          auto res = request(stream, http::verb::post, "/add-to-cart", body);
          auto t1 = Clock::now();
          double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
          if (res.result_int() == 200) {
            won.push_back(ms);
            my_last_win = t1;
          } else if (res.result_int() == 409) {
            refused.push_back(ms);
          } else {
            ++errors;
          }
        }
      } catch (const std::exception&) {
        ++errors;
      }
      std::lock_guard lock(mutex);
      won_ms.insert(won_ms.end(), won.begin(), won.end());
      refused_ms.insert(refused_ms.end(), refused.begin(), refused.end());
      last_win = std::max(last_win, my_last_win);
    });
  }
  for (auto& t : threads) t.join();
  auto end = Clock::now();
  long long calls_after = fcall_calls(redis_port);

  // The row as cartd sees it now.
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(asio::ip::tcp::resolver(io).resolve("127.0.0.1", port));
  auto row = boost::json::parse(request(stream, http::verb::get, "/v1/stock/" + inv, "").body());
  long long on_hand = row.at("on_hand").as_int64(), reserved = row.at("reserved").as_int64();

  // Every winner made one call; what is left are the calls of refusals (and the few of
  // the housekeeper in the meantime).
  double calls_per_refusal = refused_ms.empty()
                                 ? 0
                                 : static_cast<double>(calls_after - calls_before -
                                                       static_cast<long long>(won_ms.size())) /
                                       static_cast<double>(refused_ms.size());
  std::printf(
      "{\"adds\": %d, \"connections\": %d, \"seconds\": %.3f, \"won\": %zu, \"refused\": %zu, "
      "\"errors\": %d, \"held\": %lld, \"on_hand\": %lld, \"oversold\": %lld, "
      "\"sold_out_ms\": %.1f, \"won_p50_ms\": %.3f, \"won_p99_ms\": %.3f, "
      "\"refused_p50_ms\": %.3f, \"refused_p99_ms\": %.3f, \"redis_calls_per_refusal\": %.4f}\n",
      adds, connections, std::chrono::duration<double>(end - start).count(), won_ms.size(),
      refused_ms.size(), errors.load(), reserved, on_hand, std::max(0LL, reserved - on_hand),
      std::chrono::duration<double, std::milli>(last_win - start).count(), percentile(won_ms, 50),
      percentile(won_ms, 99), percentile(refused_ms, 50), percentile(refused_ms, 99),
      calls_per_refusal);
  return errors.load() == 0 ? 0 : 1;
}
