// rules: what a cart request may say, free of I/O so it is tested without sockets.
//
// The atomic version of the hold arithmetic runs inside Redis (src/lua/set_line.lua);
// plan_line_change is its specification in C++, used by the tests as the model the
// script must agree with.
#pragma once

#include <boost/json/object.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/ids.hpp"

namespace cartd::cart {

// Named limits; each is also a flag (see config).
struct Limits {
  std::int64_t max_line_quantity = 100;
  std::int64_t max_lines = 100;
};

// A request that cannot be served as asked. `code` is stable (it is part of the API);
// `message` is for people. `status` is the HTTP status it answers with.
struct Rejection {
  unsigned status = 400;
  std::string code;
  std::string message;
};

// One cart line as a request states it.
struct LineRequest {
  std::string product_id;
  std::string inventory_id;
  std::int64_t quantity = 0;
};

// What a line body must hold.
struct LineSpec {
  bool product_in_body = true;    // false: the path names the product
  std::int64_t min_quantity = 1;  // 0 lets a set remove the line (then inventory_id may go)
};

// Parses a line body {"product_id", "inventory_id", "quantity"} (POST /add-to-cart and
// the /v1 item routes). quantity must be an integer in min_quantity..max_line_quantity.
[[nodiscard]] boost::system::result<LineRequest, Rejection> parse_line_request(
    std::string_view body, const Limits& limits, LineSpec spec = {});

// Building blocks for other JSON bodies: each names the field and the problem.
// parse_object refuses a key given twice in one object (400 duplicate_key) rather than
// letting the last one win.
[[nodiscard]] boost::system::result<boost::json::object, Rejection> parse_object(
    std::string_view body);
[[nodiscard]] boost::system::result<std::string, Rejection> id_field(
    const boost::json::object& body, std::string_view name);
[[nodiscard]] boost::system::result<std::int64_t, Rejection> integer_field(
    const boost::json::object& body, std::string_view name, std::int64_t min, std::int64_t max,
    std::string_view code);

// A line as it is stored: where its units are held from, and how many.
struct Line {
  std::string inventory_id;
  std::int64_t quantity = 0;
};

// The stock a line change moves: units returned to one row and units held from one.
// When the line stays on the same row, only the difference moves (one of the two
// is empty); when it moves rows, the old hold is returned whole and the new one taken.
struct LineChange {
  std::optional<Line> release;
  std::optional<Line> hold;
};
[[nodiscard]] LineChange plan_line_change(const std::optional<Line>& old_line,
                                          const std::optional<Line>& new_line);

}  // namespace cartd::cart
