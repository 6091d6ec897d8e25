#include "cart/rules.hpp"

#include <algorithm>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_stack.hpp>
#include <cmath>
#include <vector>

namespace cartd::cart {
namespace {

namespace json = boost::json;

Rejection bad_request(std::string code, std::string message) {
  return Rejection{400, std::move(code), std::move(message)};
}

// A duplicate key named in an error message is cut to this length: it came from the client.
constexpr std::size_t kMaxKeyInMessage = 64;

// A boost::json::basic_parser handler that builds the value as json::parse does and
// fails on a key given twice in one object. Boost.JSON keeps the last of duplicate keys
// silently (parse_options has no switch for it in 1.81), so the keys of each open
// object are collected here and compared when the object closes.
class StrictHandler {
 public:
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  json::value_stack stack;
  std::optional<std::string> duplicate;  // the first key found twice

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    keys_.emplace_back();
    return true;
  }
  bool on_object_end(std::size_t n, json::error_code& ec) {
    std::vector<std::string>& keys = keys_.back();
    std::sort(keys.begin(), keys.end());
    if (auto twice = std::adjacent_find(keys.begin(), keys.end()); twice != keys.end()) {
      duplicate = std::move(*twice);
      ec = json::error::syntax;  // any error stops the parser; `duplicate` says which
      return false;
    }
    keys_.pop_back();
    stack.push_object(n);
    return true;
  }
  bool on_array_begin(json::error_code&) { return true; }
  bool on_array_end(std::size_t n, json::error_code&) {
    stack.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    stack.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    keys_.back().push_back(std::move(key_));
    key_.clear();
    stack.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
    stack.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, json::error_code&) {
    stack.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
    stack.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
    stack.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view, json::error_code&) {
    stack.push_double(d);
    return true;
  }
  bool on_bool(bool b, json::error_code&) {
    stack.push_bool(b);
    return true;
  }
  bool on_null(json::error_code&) {
    stack.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  std::string key_;                             // the parts of a key still arriving
  std::vector<std::vector<std::string>> keys_;  // the keys of each open object, innermost last
};

}  // namespace

boost::system::result<json::object, Rejection> parse_object(std::string_view text) {
  json::basic_parser<StrictHandler> parser{json::parse_options{}};
  parser.handler().stack.reset();
  json::error_code ec;
  std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
  if (const auto& key = parser.handler().duplicate) {
    return bad_request("duplicate_key", "the key \"" + key->substr(0, kMaxKeyInMessage) +
                                            "\" appears more than once in one object");
  }
  if (ec || used != text.size()) return bad_request("invalid_json", "the body is not valid JSON");
  json::value doc = parser.handler().stack.release();
  if (!doc.is_object()) return bad_request("invalid_json", "the body must be a JSON object");
  return std::move(doc.get_object());
}

boost::system::result<std::string, Rejection> id_field(const json::object& body,
                                                       std::string_view name) {
  const json::value* v = body.if_contains(name);
  if (v == nullptr) return bad_request("missing_field", std::string(name) + " is required");
  if (!v->is_string() || !is_valid_id(v->get_string())) {
    return bad_request("invalid_id", std::string(name) +
                                         " must be 1-64 characters of letters, digits, '.', '_' "
                                         "or '-'");
  }
  return std::string(v->get_string());
}

boost::system::result<std::int64_t, Rejection> integer_field(const json::object& body,
                                                             std::string_view name,
                                                             std::int64_t min, std::int64_t max,
                                                             std::string_view code) {
  const json::value* q = body.if_contains(name);
  if (q == nullptr) return bad_request("missing_field", std::string(name) + " is required");
  std::string range = std::string(name) + " must be an integer from " + std::to_string(min) +
                      " to " + std::to_string(max);
  std::int64_t value = 0;
  if (q->is_int64()) {
    value = q->get_int64();
  } else if (q->is_double()) {
    // 3.0 is an integer written as a decimal; 2.5 is not. Written so that NaN fails too
    // (Boost.JSON reads -0e606 as NaN): converting it to an integer is undefined.
    double d = q->get_double();
    if (!(d >= -1e15 && d <= 1e15) || d != std::trunc(d)) {
      return bad_request(std::string(code), range);
    }
    value = static_cast<std::int64_t>(d);
  } else {
    return bad_request(std::string(code), range);  // a string, null, or above int64
  }
  if (value < min || value > max) return bad_request(std::string(code), range);
  return boost::system::result<std::int64_t, Rejection>(boost::system::in_place_value, value);
}

boost::system::result<LineRequest, Rejection> parse_line_request(std::string_view text,
                                                                 const Limits& limits,
                                                                 LineSpec spec) {
  auto body = parse_object(text);
  if (!body) return body.error();
  LineRequest req;
  if (spec.product_in_body) {
    auto product = id_field(*body, "product_id");
    if (!product) return product.error();
    req.product_id = std::move(*product);
  }
  bool may_omit_inventory = spec.min_quantity == 0 && !body->contains("inventory_id");
  if (!may_omit_inventory) {
    auto inventory = id_field(*body, "inventory_id");
    if (!inventory) return inventory.error();
    req.inventory_id = std::move(*inventory);
  }
  auto quantity = integer_field(*body, "quantity", spec.min_quantity, limits.max_line_quantity,
                                "invalid_quantity");
  if (!quantity) return quantity.error();
  req.quantity = *quantity;
  if (may_omit_inventory && req.quantity > 0) {
    return bad_request("missing_field", "inventory_id is required");
  }
  return req;
}

LineChange plan_line_change(const std::optional<Line>& old_line,
                            const std::optional<Line>& new_line) {
  LineChange change;
  auto present = [](const std::optional<Line>& l) { return l && l->quantity > 0; };
  if (!present(old_line)) {
    if (present(new_line)) change.hold = new_line;
    return change;
  }
  if (!present(new_line)) {
    change.release = old_line;
    return change;
  }
  if (old_line->inventory_id != new_line->inventory_id) {
    change.release = old_line;
    change.hold = new_line;
    return change;
  }
  std::int64_t delta = new_line->quantity - old_line->quantity;
  if (delta > 0) change.hold = Line{new_line->inventory_id, delta};
  if (delta < 0) change.release = Line{old_line->inventory_id, -delta};
  return change;
}

}  // namespace cartd::cart
