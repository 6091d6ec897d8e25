// Walks docs/openapi.yaml against a running cartd: every documented route exists, every
// request example is accepted, and every status it answers is documented.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

#include "harness.hpp"

namespace cartd::test {
namespace {

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

class OpenApi : public ::testing::Test {
 protected:
  RedisServer redis_;
  Cartd cartd_{redis_, read(CARTD_SOURCE_DIR "/data/catalog.json"), {"--admin-token", kToken}};
  YAML::Node spec_ = YAML::LoadFile(CARTD_SOURCE_DIR "/docs/openapi.yaml");

  // A fresh cart with one line of cap-navy.
  std::string cart_with_a_line() {
    auto r = http(cartd_.port(), "POST", "/add-to-cart",
                  R"({"product_id":"cap-navy","inventory_id":"cap-navy","quantity":1})");
    return std::string(r.json().at("cartSessionId").as_string());
  }
};

TEST_F(OpenApi, every_documented_route_exists_and_accepts_its_examples) {
  std::string order_cart = cart_with_a_line();
  auto order = http(cartd_.port(), "POST", "/v1/carts/" + order_cart + "/checkout", "",
                    {{"Idempotency-Key", "fixture"}});
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
      ASSERT_EQ(target.find('{'), std::string::npos) << "an undocumented path parameter";

      std::map<std::string, std::string> headers;
      if (op.second["security"]) headers["Authorization"] = std::string("Bearer ") + kToken;
      for (auto p : op.second["parameters"]) {
        if (p["in"] && p["in"].as<std::string>() == "header") {
          std::string name = p["name"].as<std::string>();
          headers[name] = name == "cart-session-id" ? cart : p["example"].as<std::string>("x");
        }
      }
      std::string body;
      if (auto rb = op.second["requestBody"]) {
        auto example = rb["content"]["application/json"]["example"];
        ASSERT_TRUE(example) << "a request body without an example";
        body = json::serialize(to_json(example));
      }

      auto r = http(cartd_.port(), method, target, body, headers);
      EXPECT_LT(r.status, 300u) << "the example is accepted: " << body << " -> " << r.body;
      EXPECT_TRUE(op.second["responses"][std::to_string(r.status)])
          << "status " << r.status << " is documented";
    }
  }
  EXPECT_GE(operations, 17);
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

}  // namespace
}  // namespace cartd::test
