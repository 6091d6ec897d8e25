// Walks docs/openapi.yaml against a running cartd: every documented route exists, every
// request example is accepted, and every status it answers is documented.
//
// With CARTD_PRISM set to a `prism` binary (tests/contract, ctest openapi_prism_proxy),
// the walk goes through a Prism validating proxy (`prism proxy --errors`) in front of
// cartd, which checks every request and answer against the whole spec (schemas, formats,
// headers, the error-code enum): any violation fails the test.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "harness.hpp"

namespace cartd::test {
namespace openapi_test {

namespace json = boost::json;
constexpr const char* kToken = "openapi-token";

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// YAML (a JSON-compatible subset) to JSON text.
json::value to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    json::object o;
    for (auto kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
    return o;
  }
  if (n.IsSequence()) {
    json::array a;
    for (auto e : n) a.push_back(to_json(e));
    return a;
  }
  if (n.IsNull()) return nullptr;
  std::string s = n.as<std::string>();
  if (n.Tag() != "!") {  // plain scalars may be numbers or booleans
    try {
      std::size_t used = 0;
      long long v = std::stoll(s, &used);
      if (used == s.size()) return v;
      double d = std::stod(s, &used);
      if (used == s.size()) return d;
    } catch (const std::exception&) {
    }
    if (s == "true") return true;
    if (s == "false") return false;
  }
  return json::value(s);
}

// Prism takes seconds to start (Node.js, and it compiles the spec's schemas).
constexpr auto kPrismStartTimeout = std::chrono::seconds(60);

// `prism proxy --errors docs/openapi.yaml <upstream>` on a free loopback port, stopped when
// it goes out of scope. Prism answers a request that breaks the spec with 422 and an
// answer that breaks it with 500, both as application/problem+json naming the violation.
class PrismProxy {
 public:
  PrismProxy(const std::string& prism, int upstream_port) : port_(free_port()) {
    process_ = std::make_unique<Process>(
        std::vector<std::string>{prism, "proxy", "--errors", "--host", "127.0.0.1", "--port",
                                 std::to_string(port_), CARTD_SOURCE_DIR "/docs/openapi.yaml",
                                 "http://127.0.0.1:" + std::to_string(upstream_port)},
        dir_.path() / "prism.log");
    bool up = eventually(
        [&] {
          if (!process_->running()) return true;
          try {
            return http(port_, "GET", "/livez").status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        kPrismStartTimeout, std::chrono::milliseconds(200));
    if (!up || !process_->running()) throw std::runtime_error("prism did not start: " + log());
  }
  int port() const { return port_; }
  std::string log() const { return read((dir_.path() / "prism.log").string()); }

 private:
  TempDir dir_;
  int port_;
  std::unique_ptr<Process> process_;
};

// An answer Prism found to break the spec (in the request or in cartd's answer).
bool is_violation(const HttpResponse& r) {
  return r.headers.contains("sl-violations") ||
         r.body.find("stoplight.io/prism/errors") != std::string::npos;
}

class OpenApi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* prism = std::getenv("CARTD_PRISM"); prism != nullptr && *prism != '\0') {
      proxy_.emplace(prism, cartd_.port());
    }
  }

  // Where the walk sends its requests: the proxy when there is one, else cartd.
  int api_port() const { return proxy_ ? proxy_->port() : cartd_.port(); }

  // One request of the walk; through the proxy, it must break nothing in the spec.
  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = "",
                    const std::map<std::string, std::string>& headers = {}) {
    auto r = http(api_port(), method, target, body, headers);
    if (proxy_) {
      EXPECT_FALSE(is_violation(r))
          << method << " " << target << " -> " << r.status << " " << r.body << "\nsl-violations: "
          << (r.headers.contains("sl-violations") ? r.headers.at("sl-violations")
                                                  : std::string("none"));
    }
    return r;
  }

  RedisServer redis_;
  Cartd cartd_{redis_, read(CARTD_SOURCE_DIR "/data/catalog.json"), {"--admin-token", kToken}};
  YAML::Node spec_ = YAML::LoadFile(CARTD_SOURCE_DIR "/docs/openapi.yaml");
  std::optional<PrismProxy> proxy_;

  // A fresh cart with one line of cap-navy.
  std::string cart_with_a_line() {
    auto r = call("POST", "/add-to-cart",
                  R"({"product_id":"cap-navy","inventory_id":"cap-navy","quantity":1})");
    return std::string(r.json().at("cartSessionId").as_string());
  }
};

TEST_F(OpenApi, every_documented_route_exists_and_accepts_its_examples) {
  std::string order_cart = cart_with_a_line();
  auto order =
      call("POST", "/v1/carts/" + order_cart + "/checkout", "", {{"Idempotency-Key", "fixture"}});
  ASSERT_EQ(order.status, 201u) << order.body;
  std::string order_id(order.json().at("order_id").as_string());

  int operations = 0;
  for (auto path : spec_["paths"]) {
    std::string pattern = path.first.as<std::string>();
    for (auto op : path.second) {
      std::string method = op.first.as<std::string>();
      if (method == "parameters") continue;
      for (auto& c : method) c = static_cast<char>(std::toupper(c));
      ++operations;
      SCOPED_TRACE(method + " " + pattern);

      std::string cart = cart_with_a_line();
      std::string target = pattern;
      auto replace = [&](const std::string& name, const std::string& value) {
        auto at = target.find("{" + name + "}");
        if (at != std::string::npos) target.replace(at, name.size() + 2, value);
      };
      replace("id", cart);
      replace("product_id", "cap-navy");
      replace("inventory_id", "cap-navy");
      replace("order_id", order_id);
      replace("cart_id", cart);
      ASSERT_EQ(target.find('{'), std::string::npos) << "an undocumented path parameter";

      std::map<std::string, std::string> headers;
      if (op.second["security"] && op.second["security"].size() > 0) {
        headers["Authorization"] = std::string("Bearer ") + kToken;
      }
      for (auto p : op.second["parameters"]) {
        if (p["in"] && p["in"].as<std::string>() == "header") {
          std::string name = p["name"].as<std::string>();
          headers[name] = name == "cart-session-id" ? cart : p["example"].as<std::string>("x");
        }
      }
      // An event stream never ends, so it is opened with its example query and its head
      // read, on cartd itself (Prism's proxy waits for a whole answer).
      if (op.second["responses"]["200"]["content"]["text/event-stream"]) {
        std::string query;
        for (auto p : op.second["parameters"]) {
          if (p["in"] && p["in"].as<std::string>() == "query") {
            for (auto v : p["example"]) {
              query += (query.empty() ? "?" : "&") + p["name"].as<std::string>() + "=" +
                       v.as<std::string>();
            }
          }
        }
        EventStreamClient stream(cartd_.port(), target + query);
        std::string head = stream.head();
        EXPECT_TRUE(head.starts_with("HTTP/1.1 200 ")) << head;
        EXPECT_NE(head.find("Content-Type: text/event-stream"), std::string::npos) << head;
        EXPECT_TRUE(stream.next(std::chrono::seconds(3))) << "a first event: " << stream.raw();
        continue;
      }
      std::string body;
      if (auto rb = op.second["requestBody"]) {
        auto example = rb["content"]["application/json"]["example"];
        ASSERT_TRUE(example) << "a request body without an example";
        body = json::serialize(to_json(example));
      }

      auto r = call(method, target, body, headers);
      // An operation whose example is refused on this catalog says which status it gets
      // (x-example-status): joining a waitlist while the row has units, say.
      if (auto expected = op.second["x-example-status"]) {
        EXPECT_EQ(r.status, expected.as<unsigned>()) << body << " -> " << r.body;
      } else {
        EXPECT_LT(r.status, 300u) << "the example is accepted: " << body << " -> " << r.body;
      }
      EXPECT_TRUE(op.second["responses"][std::to_string(r.status)])
          << "status " << r.status << " is documented";
    }
  }
  EXPECT_GE(operations, 24);
}

// Error answers to requests the spec allows: their bodies (the code enum, the extra
// fields) and statuses must match the spec too. Through the proxy, Prism checks them.
TEST_F(OpenApi, error_answers_to_valid_requests_match_the_spec) {
  std::string cart = cart_with_a_line();
  auto empty = call("POST", "/v1/carts");
  ASSERT_EQ(empty.status, 201u) << empty.body;
  std::string empty_cart(empty.json().at("id").as_string());
  std::string unknown_cart = "00000000-0000-4000-8000-000000000000";
  auto sold = call("POST", "/v1/carts/" + cart_with_a_line() + "/checkout", "",
                   {{"Idempotency-Key", "first"}});
  ASSERT_EQ(sold.status, 201u) << sold.body;
  std::string sold_cart(sold.json().at("cart_id").as_string());

  struct Case {
    std::string method, pattern, target, body;
    std::map<std::string, std::string> headers;
    unsigned status;
    std::string code;
  };
  std::vector<Case> cases{
      {"POST",
       "/v1/carts/{id}/items",
       "/v1/carts/" + cart + "/items",
       R"({"product_id":"lamp-desk","inventory_id":"lamp-desk","quantity":99})",
       {},
       409,
       "insufficient_stock"},
      {"POST",
       "/v1/carts/{id}/items",
       "/v1/carts/" + cart + "/items",
       R"({"product_id":"cap-navy","inventory_id":"no-such-row","quantity":1})",
       {},
       404,
       "unknown_inventory"},
      {"GET", "/v1/carts/{id}", "/v1/carts/" + unknown_cart, "", {}, 404, "cart_not_found"},
      {"POST",
       "/v1/carts/{id}/checkout",
       "/v1/carts/" + empty_cart + "/checkout",
       "",
       {{"Idempotency-Key", "k"}},
       422,
       "cart_empty"},
      {"GET",
       "/v1/products/{product_id}",
       "/v1/products/no-such-product",
       "",
       {},
       404,
       "product_not_found"},
      {"GET",
       "/v1/stock/{inventory_id}",
       "/v1/stock/no-such-row",
       "",
       {},
       404,
       "unknown_inventory"},
      {"GET",
       "/v1/orders/{order_id}",
       "/v1/orders/" + unknown_cart,
       "",
       {},
       404,
       "order_not_found"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + c.target);
    auto r = call(c.method, c.target, c.body, c.headers);
    EXPECT_EQ(r.status, c.status) << r.body;
    std::string method = c.method;
    for (auto& ch : method) ch = static_cast<char>(std::tolower(ch));
    EXPECT_TRUE(spec_["paths"][c.pattern][method]["responses"][std::to_string(r.status)])
        << "status " << r.status << " is documented";
    if (r.status == c.status) {
      EXPECT_EQ(r.json().at("error").at("code").as_string(), c.code);
    }
  }
  // The sold cart is gone: 410 cart_checked_out, a documented status.
  auto gone = call("GET", "/v1/carts/" + sold_cart);
  EXPECT_EQ(gone.status, 410u) << gone.body;
  EXPECT_EQ(gone.json().at("error").at("code").as_string(), "cart_checked_out");
  EXPECT_TRUE(spec_["paths"]["/v1/carts/{id}"]["get"]["responses"]["410"]);
}

// Every code cartd sends is in the spec's enum: a sample of codes from every layer.
TEST_F(OpenApi, error_codes_are_an_enum_that_names_every_code) {
  std::set<std::string> codes;
  for (auto c : spec_["components"]["schemas"]["ErrorCode"]["enum"]) {
    codes.insert(c.as<std::string>());
  }
  for (const char* code : {"invalid_json", "bad_request", "method_not_allowed", "payload_too_large",
                           "headers_too_large", "not_implemented", "cart_checked_out",
                           "negative_on_hand", "idempotency_key_reused", "unavailable"}) {
    EXPECT_TRUE(codes.contains(code)) << code;
  }
  auto r = http(cartd_.port(), "PATCH", "/v1/carts");
  EXPECT_EQ(r.status, 405u);
  EXPECT_TRUE(codes.contains(std::string(r.json().at("error").at("code").as_string())));
  EXPECT_TRUE(spec_["paths"]["/v1/carts"]["post"]["responses"]["405"]);
}

TEST_F(OpenApi, documented_error_statuses_are_answered_as_documented) {
  // A few error answers, checked against the operation's documented statuses.
  struct Case {
    std::string method, pattern, target, body;
  };
  std::string cart = cart_with_a_line();
  std::vector<Case> cases{
      {"get", "/v1/carts/{id}", "/v1/carts/not-a-uuid", ""},
      {"post", "/v1/carts/{id}/items", "/v1/carts/" + cart + "/items",
       R"({"product_id":"lamp-desk","inventory_id":"lamp-desk","quantity":5})"},
      {"post", "/v1/carts/{id}/checkout", "/v1/carts/" + cart + "/checkout", ""},
      {"get", "/v1/products", "/v1/products?limit=0", ""},
      {"post", "/v1/stock", "/v1/stock", "{}"},
  };
  for (const Case& c : cases) {
    auto r = http(cartd_.port(), c.method == "get" ? "GET" : "POST", c.target, c.body);
    EXPECT_GE(r.status, 400u) << c.target;
    EXPECT_TRUE(spec_["paths"][c.pattern][c.method]["responses"][std::to_string(r.status)])
        << c.method << " " << c.target << " answered " << r.status << ": " << r.body;
    EXPECT_TRUE(r.json().as_object().contains("error")) << r.body;
  }
}

}  // namespace openapi_test
}  // namespace cartd::test
