// fuzz_json_bodies: request bodies through the JSON decoders of the routes: the line
// bodies of POST /add-to-cart and the /v1 item routes (parse_line_request, each way a
// route calls it) and the building blocks the admin stock bodies use.
#include <cstdint>
#include <string_view>

#include "cart/rules.hpp"
#include "require.hpp"
#include "routes/v1.hpp"

using namespace cartd;
using namespace cartd::cart;

namespace {

// The line bodies as the routes read them: POST /add-to-cart and POST
// /v1/carts/{id}/items (product in the body, 1 unit at least), PUT
// /v1/carts/{id}/items/{product_id} (product in the path, 0 removes the line).
constexpr LineSpec kSpecs[] = {{true, 1}, {false, 0}};

// The admin bodies' integer fields (src/routes/catalog.cpp).
struct IntegerField {
  std::string_view name;
  std::int64_t min, max;
};
constexpr std::int64_t kMaxUnits = 1'000'000'000;
constexpr IntegerField kIntegerFields[] = {{"on_hand", 0, kMaxUnits},
                                           {"price_cents", 0, kMaxUnits},
                                           {"delta", -kMaxUnits, kMaxUnits},
                                           {"quantity", 1, 100}};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  Limits limits;

  for (const LineSpec& spec : kSpecs) {
    auto line = parse_line_request(body, limits, spec);
    if (!line) {
      CARTD_REQUIRE(line.error().status == 400 && !line.error().code.empty());
      continue;
    }
    // Whatever is accepted is safe inside a key name and within the limits.
    CARTD_REQUIRE(!spec.product_in_body || is_valid_id(line->product_id));
    CARTD_REQUIRE(line->quantity >= spec.min_quantity &&
                  line->quantity <= limits.max_line_quantity);
    CARTD_REQUIRE(is_valid_id(line->inventory_id) ||
                  (line->inventory_id.empty() && line->quantity == 0));
  }

  if (auto object = parse_object(body)) {
    for (std::string_view name : {"inventory_id", "product_id"}) {
      if (auto id = id_field(*object, name)) CARTD_REQUIRE(is_valid_id(*id));
    }
    for (const IntegerField& f : kIntegerFields) {
      if (auto v = integer_field(*object, f.name, f.min, f.max, "invalid")) {
        CARTD_REQUIRE(*v >= f.min && *v <= f.max);
      }
    }
  }

  // The Idempotency-Key header of checkout, which becomes part of a Redis value.
  if (is_valid_idempotency_key(body)) CARTD_REQUIRE(size >= 1 && size <= kMaxIdempotencyKey);
  return 0;
}
