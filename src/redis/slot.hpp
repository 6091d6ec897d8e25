// slot: where a key lives on a Redis Cluster (the cluster specification's "key
// distribution model"): CRC16 (XMODEM) of the key's hash tag, mod 16384. The hash tag is
// what lies between the first '{' and the first '}' after it, when that is not empty;
// otherwise the whole key. cartd's keys all carry a tag ({c<n>}, {s<n>}), so a group's
// keys share one slot.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace cartd::redis {

inline constexpr std::uint16_t kSlots = 16384;

std::uint16_t crc16(std::string_view bytes);
// A key's hash tag: what lies between its first '{' and the first '}' after it, braces
// included ("{c7}"), or "" when there is none or it is empty (the whole key is hashed).
std::string_view hash_tag(std::string_view key);
std::uint16_t key_slot(std::string_view key);
// The number of keys of a function call (FCALL, FCALL_RO; 0 when its count is not a
// number), or nullopt for another command.
std::optional<std::size_t> function_keys(std::span<const std::string_view> args);

// The slot a command goes to: that of its first key (FCALL and FCALL_RO name theirs after
// numkeys), or nullopt for a command without keys (any node may answer it).
std::optional<std::uint16_t> command_slot(std::span<const std::string_view> args);

}  // namespace cartd::redis
