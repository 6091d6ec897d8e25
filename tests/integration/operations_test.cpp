// What an operator relies on: probes that tell liveness from readiness, --version,
// settings from a config file, the environment and flags, in that order of weight, request
// ids, JSON logs, and an example config that stays in step with the flags.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "harness.hpp"

namespace cartd::test {
namespace operations_test {

using namespace std::chrono_literals;

constexpr const char* kCatalog =
    R"([{"inventory_id": "mug", "product_id": "mug", "name": "Mug", "price_cents": 100, "on_hand": 5}])";

TEST(Probes, livez_stays_up_while_redis_is_down_and_readyz_says_why_not) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  EXPECT_EQ(cartd.get("/livez").status, 200u);
  EXPECT_EQ(cartd.get("/readyz").status, 200u);
  redis.stop();
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 503u; }, 3s));
  auto ready = cartd.get("/readyz");
  EXPECT_NE(ready.body.find("Redis is unavailable"), std::string::npos) << ready.body;
  EXPECT_EQ(cartd.get("/healthz").status, 503u);
  EXPECT_EQ(cartd.get("/livez").status, 200u) << "liveness never depends on Redis";
  redis.start();
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 200u; }, 5s));
}

// Runs a shell command; returns its output and error output.
std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  return out;
}

// Runs the cartd binary with `args` and `env` (NAME=value); returns its output.
std::string run_cartd(const std::string& args, const std::string& env = "") {
  return run_command(env + " " + CARTD_BINARY + " " + args);
}

TEST(Flags, version_names_the_release_and_commit) {
  auto out = run_cartd("--version");
  EXPECT_NE(out.find("cartd "), std::string::npos) << out;
  EXPECT_NE(out.find("(commit "), std::string::npos) << out;
}

TEST(Flags, the_command_line_wins_over_the_environment_which_wins_over_the_config_file) {
  TempDir dir;
  auto file = dir.path() / "cartd.toml";
  std::ofstream(file) << "# cartd settings\ncart-ttl = 111\nmax-lines = 7\n";
  RedisServer redis;
  // The cart's TTL in seconds, as set (the answer's ttl_seconds may be up to a hundredth
  // more: the deadline is rounded up to the bucket quantum).
  auto ttl_of_a_new_cart = [&](std::vector<std::string> flags) {
    Cartd cartd(redis, kCatalog, std::move(flags));
    auto r = cartd.post("/v1/carts", "");
    return r.json().at("ttl_seconds").as_int64();
  };
  EXPECT_NEAR(ttl_of_a_new_cart({"--config", file.string()}), 111, 2);
  setenv("CARTD_CART_TTL", "222", 1);
  EXPECT_NEAR(ttl_of_a_new_cart({"--config", file.string()}), 222, 3);
  EXPECT_NEAR(ttl_of_a_new_cart({"--config", file.string(), "--cart-ttl", "333"}), 333, 4);
  unsetenv("CARTD_CART_TTL");
}

TEST(Flags, a_config_file_naming_an_unknown_setting_stops_cartd) {
  TempDir dir;
  auto file = dir.path() / "cartd.toml";
  std::ofstream(file) << "cart-tll = 5\n";  // a typo must not pass silently as the default
  auto out = run_cartd("--config " + file.string() + " --listen 127.0.0.1:1 --db sqlite:" +
                       (dir.path() / "x.db").string() + " --redis redis://127.0.0.1:1/0");
  EXPECT_NE(out.find("cart-tll"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "x.db")) << "cartd must not have started";
}

TEST(Flags, a_cluster_node_with_no_slots_is_refused_at_once_with_a_clear_message) {
  RedisServer cluster_node({"--cluster-enabled", "yes"});
  TempDir dir;
  auto out = run_cartd("--listen 127.0.0.1:" + std::to_string(free_port()) +
                       " --db sqlite:" + (dir.path() / "x.db").string() + " --redis " +
                       cluster_node.url() + " 2>&1; echo exit=$?");
  EXPECT_NE(out.find("Redis Cluster"), std::string::npos) << out;
  EXPECT_NE(out.find("no slots assigned"), std::string::npos) << out;
  EXPECT_NE(out.find("exit=1"), std::string::npos) << out;
}

bool is_made_request_id(const std::string& id) {
  return std::regex_match(id, std::regex("[0-9a-f]{32}"));
}

TEST(RequestId, a_given_x_request_id_is_echoed_and_one_is_made_otherwise) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog);
  EXPECT_EQ(cartd.get("/livez", {{"X-Request-Id", "edge-7f3a/42"}}).headers["x-request-id"],
            "edge-7f3a/42");
  auto first = cartd.get("/livez").headers["x-request-id"];
  auto second = cartd.get("/livez").headers["x-request-id"];
  EXPECT_TRUE(is_made_request_id(first)) << first;
  EXPECT_NE(first, second);
  for (std::string refused : {std::string(129, 'x'), std::string("two words")}) {
    auto id = cartd.get("/livez", {{"X-Request-Id", refused}}).headers["x-request-id"];
    EXPECT_TRUE(is_made_request_id(id)) << refused << " -> " << id;
  }
  // Every answer, not only the routes': an unknown route, a refused body, a Redis outage.
  EXPECT_EQ(cartd.get("/nowhere", {{"X-Request-Id", "r-404"}}).headers["x-request-id"], "r-404");
  auto too_big = cartd.post("/v1/carts", std::string(64 * 1024, ' '), {{"X-Request-Id", "r-413"}});
  EXPECT_EQ(too_big.status, 413u);
  EXPECT_EQ(too_big.headers["x-request-id"], "r-413");
  redis.stop();
  EXPECT_TRUE(eventually([&] { return cartd.get("/readyz").status == 503u; }, 3s));
  auto down = cartd.post("/v1/carts", "", {{"X-Request-Id", "r-503"}});
  EXPECT_EQ(down.status, 503u);
  EXPECT_EQ(down.headers["x-request-id"], "r-503");
}

// cartd's log, one parsed JSON object per line; a line that is not JSON fails the test.
std::vector<boost::json::object> json_log_lines(const std::string& log) {
  std::vector<boost::json::object> lines;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    EXPECT_FALSE(ec) << "not JSON: " << line;
    if (ec || !v.is_object()) continue;
    auto& o = v.as_object();
    EXPECT_TRUE(o.contains("time") && o.contains("level") && o.contains("msg")) << line;
    lines.push_back(o);
  }
  return lines;
}

const boost::json::object* line_of_request(const std::vector<boost::json::object>& lines,
                                           std::string_view request_id) {
  for (auto& o : lines) {
    if (o.contains("request_id") && o.at("request_id").as_string() == request_id) return &o;
  }
  return nullptr;
}

TEST(JsonLogs, every_line_is_json_and_a_request_line_carries_its_id_and_traceparent) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--log-format", "json", "--access-log"});
  constexpr const char* kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  // Quotes and backslashes are visible ASCII: taken, and escaped in the log.
  const std::string traced_id = R"(say"hi"\bye)";
  auto traced =
      cartd.get("/v1/stock/mug", {{"X-Request-Id", traced_id}, {"traceparent", kTraceparent}});
  EXPECT_EQ(traced.status, 200u);
  auto plain = cartd.get("/v1/stock/nope");
  EXPECT_EQ(plain.status, 404u);
  // A target with a byte that is not UTF-8: its line must still be JSON.
  auto odd = cartd.get("/v1/stock/caf\xff", {{"X-Request-Id", "odd"}});
  ASSERT_EQ(cartd.stop(SIGTERM), 0);

  auto lines = json_log_lines(cartd.log());
  ASSERT_FALSE(lines.empty());
  auto* t = line_of_request(lines, traced_id);
  ASSERT_NE(t, nullptr) << cartd.log();
  EXPECT_EQ(t->at("method").as_string(), "GET");
  EXPECT_EQ(t->at("target").as_string(), "/v1/stock/mug");
  EXPECT_EQ(t->at("status").as_int64(), 200);
  EXPECT_GE(t->at("duration_ms").to_number<double>(), 0.0);
  EXPECT_EQ(t->at("traceparent").as_string(), kTraceparent);
  EXPECT_EQ(t->at("level").as_string(), "info");

  auto* p = line_of_request(lines, plain.headers["x-request-id"]);
  ASSERT_NE(p, nullptr) << cartd.log();
  EXPECT_EQ(p->at("status").as_int64(), 404);
  EXPECT_FALSE(p->contains("traceparent")) << "none was sent";
  auto* o = line_of_request(lines, "odd");
  ASSERT_NE(o, nullptr) << cartd.log();
  EXPECT_EQ(o->at("status").as_int64(), odd.status);
  EXPECT_EQ(o->at("target").as_string(), "/v1/stock/caf\xef\xbf\xbd");
}

TEST(JsonLogs, without_access_log_requests_are_not_logged_at_info) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--log-format", "json", "--log-level", "info"});
  EXPECT_EQ(cartd.get("/livez", {{"X-Request-Id", "quiet"}}).status, 200u);
  ASSERT_EQ(cartd.stop(SIGTERM), 0);
  auto lines = json_log_lines(cartd.log());
  EXPECT_FALSE(lines.empty()) << "start-up lines are logged";
  EXPECT_EQ(line_of_request(lines, "quiet"), nullptr) << cartd.log();
}

// The setting names of a TOML file, commented-out ones included: `# name = value`.
std::set<std::string> config_names(const std::filesystem::path& file) {
  std::set<std::string> names;
  std::ifstream in(file);
  std::string line;
  std::regex setting(R"(^#?\s*([a-z][a-z0-9-]*)\s*=)");
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_search(line, m, setting)) names.insert(m[1]);
  }
  return names;
}

TEST(Deploy, the_example_config_names_every_flag_and_nothing_else) {
  auto example = std::filesystem::path(CARTD_SOURCE_DIR) / "deploy" / "cartd.toml";
  auto help = run_cartd("--help");
  std::set<std::string> flags;
  std::regex flag(R"(--([a-z][a-z0-9-]*))");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), flag); it != std::sregex_iterator();
       ++it) {
    flags.insert((*it)[1]);
  }
  for (const char* not_a_setting : {"help", "version", "config"}) flags.erase(not_a_setting);
  EXPECT_EQ(config_names(example), flags);
}

TEST(Deploy, cartd_starts_with_the_example_config) {
  auto example = std::filesystem::path(CARTD_SOURCE_DIR) / "deploy" / "cartd.toml";
  RedisServer redis;
  // The harness's --listen, --redis, --db, --catalog and --threads win over the file's.
  Cartd cartd(redis, kCatalog, {"--config", example.string()});
  EXPECT_EQ(cartd.get("/readyz").status, 200u);
  EXPECT_EQ(cartd.post("/v1/carts", "").status, 201u);
  ASSERT_EQ(cartd.stop(SIGTERM), 0);
  json_log_lines(cartd.log());  // the example logs JSON
}

TEST(Deploy, the_systemd_unit_passes_systemd_analyze_verify) {
  if (std::system("command -v systemd-analyze > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed";
  }
  auto unit = std::filesystem::path(CARTD_SOURCE_DIR) / "deploy" / "cartd.service";
  std::ifstream in(unit);
  std::stringstream text;
  text << in.rdbuf();
  std::string content = text.str();
  EXPECT_NE(content.find("ExecStart=/usr/local/bin/cartd --config /etc/cartd/cartd.toml"),
            std::string::npos);
  EXPECT_NE(content.find("LimitNOFILE="), std::string::npos);
  // verify wants ExecStart's binary to exist: this build's stands in for the installed one.
  TempDir dir;
  std::string installed = "ExecStart=/usr/local/bin/cartd";
  content.replace(content.find(installed), installed.size(),
                  std::string("ExecStart=") + CARTD_BINARY);
  std::ofstream(dir.path() / "cartd.service") << content;
  // It exits 0 even for unknown keys and bad values, but says so.
  std::string out =
      run_command("systemd-analyze verify " + (dir.path() / "cartd.service").string());
  EXPECT_EQ(out, "") << out;
}

TEST(Flags, currency_is_named_beside_every_price_and_classic_routes_stay_as_they_were) {
  RedisServer redis;
  Cartd cartd(redis, kCatalog, {"--currency", "EUR", "--admin-token", "t"});
  auto cart = cartd.post("/v1/carts", "").json().as_object();
  EXPECT_EQ(cart.at("currency"), "EUR");
  std::string id(cart.at("id").as_string());
  auto line = cartd.post("/v1/carts/" + id + "/items",
                         R"({"product_id":"mug","inventory_id":"mug","quantity":2})");
  EXPECT_EQ(line.json().at("currency"), "EUR") << line.body;
  EXPECT_EQ(line.json().at("lines").at(0).at("currency"), "EUR") << line.body;
  auto product = cartd.get("/v1/products/mug").json();
  EXPECT_EQ(product.at("currency"), "EUR");
  EXPECT_EQ(product.at("stock").at(0).at("currency"), "EUR");
  EXPECT_EQ(cartd.get("/v1/products").json().at("products").at(0).at("currency"), "EUR");
  auto order = cartd.post("/v1/carts/" + id + "/checkout", "", {{"Idempotency-Key", "k"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  EXPECT_EQ(order.json().at("currency"), "EUR");
  EXPECT_EQ(order.json().at("lines").at(0).at("currency"), "EUR");
  EXPECT_EQ(order.headers["location"],
            "/v1/orders/" + std::string(order.json().at("order_id").as_string()));

  // The classic pair knows nothing of money: its answers are as they always were.
  auto added =
      cartd.post("/add-to-cart", R"({"product_id":"mug","inventory_id":"mug","quantity":1})");
  std::string sid = added.headers["cart-session-id"];
  EXPECT_EQ(added.body,
            R"({"message":"Product added to cart successfully","cartSessionId":")" + sid + "\"}");
  EXPECT_EQ(cartd.get("/get-cart", {{"cart-session-id", sid}}).body,
            R"({"message":"Cart retrieved successfully","data":[{"product_id":"mug",)"
            R"("inventory_id":"mug","quantity":1}]})");
}

TEST(Flags, a_currency_is_three_upper_case_letters) {
  for (const char* bad : {"usd", "EURO", "U1D", "\"\""}) {
    auto out = run_cartd(std::string("--currency ") + bad + " --listen nope");
    EXPECT_NE(out.find("--currency"), std::string::npos) << bad << ": " << out;
  }
}

}  // namespace operations_test
}  // namespace cartd::test
