// session_id: cart session ids, 128 random bits from the kernel's CSPRNG written as a
// lowercase version-4 UUID. An id is checked before it may become part of a key name.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cartd {

// A new random session id. Thread-safe; reads the kernel CSPRNG in blocks.
[[nodiscard]] std::string new_session_id();

// Writes 16 bytes as a UUID, setting the version (4) and variant (RFC 4122) bits.
[[nodiscard]] std::string format_uuid_v4(std::array<std::uint8_t, 16> bytes);

// A canonical UUID (8-4-4-4-12 hex digits, either case) in the lowercase form cartd
// writes, or nullopt. Anything else never reaches a Redis key name.
[[nodiscard]] std::optional<std::string> parse_session_id(std::string_view id);

}  // namespace cartd
