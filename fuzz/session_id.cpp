// fuzz_session_id: cart session ids as clients send them (the cart-session-id header, the
// {id} of /v1/carts/{id}, /v1/orders/{order_id}) and the ids of stock rows and products.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "base/ids.hpp"
#include "base/session_id.hpp"
#include "require.hpp"

using namespace cartd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  // An accepted id is the lowercase canonical form, and accepting is idempotent: what
  // reaches a Redis key name is 36 characters of [0-9a-f-].
  if (auto sid = parse_session_id(text)) {
    CARTD_REQUIRE(sid->size() == 36);
    CARTD_REQUIRE(std::all_of(sid->begin(), sid->end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
    }));
    CARTD_REQUIRE(parse_session_id(*sid) == sid);
  }

  // Any 16 bytes make a version-4 UUID that the parser takes back unchanged.
  if (size >= 16) {
    std::array<std::uint8_t, 16> bytes;
    std::memcpy(bytes.data(), data, bytes.size());
    std::string id = format_uuid_v4(bytes);
    CARTD_REQUIRE(id[14] == '4');
    CARTD_REQUIRE(parse_session_id(id) == id);
  }

  if (is_valid_id(text)) {
    CARTD_REQUIRE(!text.empty() && text.size() <= kMaxIdLength);
    CARTD_REQUIRE(text.find_first_of(":{} /%\r\n") == std::string_view::npos);
  }
  return 0;
}
