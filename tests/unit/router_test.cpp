#include <gtest/gtest.h>

#include "http/server.hpp"

namespace cartd::http {
namespace {

Request request(Verb verb, std::string target) {
  Request r{verb, target, 11};
  return r;
}

struct Captured {
  std::optional<Response> response;
  PathParams params;
};

Router router(Captured& c) {
  Router r;
  r.add(Verb::get, "/v1/stock/{id}", [&c](const Request&, const PathParams& p, Respond respond) {
    c.params = p;
    respond(Response{200, "stock", "text/plain", {}, {}});
  });
  r.add(Verb::get, "/", [](const Request&, const PathParams&, Respond respond) {
    respond(Response{200, "root", "text/plain", {}, {}});
  });
  r.add(Verb::post, "/add-to-cart", [](const Request&, const PathParams&, Respond respond) {
    respond(Response{200, "added", "text/plain", {}, {}});
  });
  return r;
}

Response dispatch(const Router& r, Verb verb, std::string target) {
  std::optional<Response> out;
  r.dispatch(request(verb, target), [&](Response resp) { out = std::move(resp); });
  EXPECT_TRUE(out) << "every request is answered";
  return out.value_or(Response{});
}

TEST(Router, matches_a_parameter_and_decodes_it) {
  Captured c;
  Router r = router(c);
  EXPECT_EQ(dispatch(r, Verb::get, "/v1/stock/cap%2Dnavy?x=1").body, "stock");
  ASSERT_EQ(c.params.size(), 1u);
  EXPECT_EQ(c.params[0], "cap-navy");
}

TEST(Router, unknown_path_is_404_and_wrong_method_is_405) {
  Captured c;
  Router r = router(c);
  EXPECT_EQ(dispatch(r, Verb::get, "/nope").status, 404u);
  EXPECT_EQ(dispatch(r, Verb::get, "/v1/stock").status, 404u);
  EXPECT_EQ(dispatch(r, Verb::get, "/v1/stock/a/b").status, 404u);
  EXPECT_EQ(dispatch(r, Verb::get, "/add-to-cart").status, 405u);
  EXPECT_EQ(dispatch(r, Verb::post, "/add-to-cart/").body, "added");
}

TEST(Router, the_root_path_has_a_route_of_its_own) {
  Captured c;
  Router r = router(c);
  EXPECT_EQ(dispatch(r, Verb::get, "/").body, "root");
  EXPECT_EQ(dispatch(r, Verb::get, "/?x=1").body, "root");
}

TEST(Router, a_target_that_is_not_a_path_is_400) {
  Captured c;
  Router r = router(c);
  EXPECT_EQ(dispatch(r, Verb::get, "http://other/").status, 400u);
}

}  // namespace
}  // namespace cartd::http
