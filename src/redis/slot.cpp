#include "redis/slot.hpp"

#include <array>
#include <charconv>

namespace cartd::redis {
namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection.
constexpr std::array<std::uint16_t, 256> make_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned i = 0; i < 256; ++i) {
    auto crc = static_cast<std::uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[i] = crc;
  }
  return table;
}
constexpr auto kTable = make_table();

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

std::uint16_t crc16(std::string_view bytes) {
  std::uint16_t crc = 0;
  for (char c : bytes) {
    crc = static_cast<std::uint16_t>((crc << 8) ^
                                     kTable[((crc >> 8) ^ static_cast<unsigned char>(c)) & 0xff]);
  }
  return crc;
}

std::string_view hash_tag(std::string_view key) {
  auto open = key.find('{');
  if (open == std::string_view::npos) return {};
  auto close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return {};
  return key.substr(open, close - open + 1);
}

std::uint16_t key_slot(std::string_view key) {
  std::string_view tag = hash_tag(key);
  return crc16(tag.empty() ? key : tag.substr(1, tag.size() - 2)) % kSlots;
}

std::optional<std::size_t> function_keys(std::span<const std::string_view> args) {
  if (args.empty() || !(iequals(args[0], "FCALL") || iequals(args[0], "FCALL_RO"))) {
    return std::nullopt;
  }
  if (args.size() < 3) return 0;
  std::size_t numkeys = 0;
  auto [end, ec] = std::from_chars(args[2].data(), args[2].data() + args[2].size(), numkeys);
  if (ec != std::errc{} || end != args[2].data() + args[2].size()) return 0;
  return numkeys;
}

std::optional<std::uint16_t> command_slot(std::span<const std::string_view> args) {
  if (args.empty()) return std::nullopt;
  if (auto numkeys = function_keys(args)) {
    if (*numkeys < 1 || args.size() < 4) return std::nullopt;
    return key_slot(args[3]);
  }
  // Commands without keys that cartd sends.
  for (std::string_view keyless : {"PING", "INFO", "TIME", "FUNCTION", "CLUSTER", "SCAN", "CLIENT",
                                   "CONFIG", "DBSIZE", "WAIT", "ASKING"}) {
    if (iequals(args[0], keyless)) return std::nullopt;
  }
  if (args.size() < 2) return std::nullopt;
  return key_slot(args[1]);
}

}  // namespace cartd::redis
