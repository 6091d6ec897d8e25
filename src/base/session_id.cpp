#include "base/session_id.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace cartd {
namespace {

constexpr std::size_t kIdBytes = 16;
constexpr std::size_t kBlockIds = 256;  // ids drawn from the kernel per getrandom() call

void fill_random(std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    ssize_t got = getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
    out += got;
    n -= static_cast<std::size_t>(got);
  }
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

}  // namespace

std::string format_uuid_v4(std::array<std::uint8_t, 16> b) {
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0x0f]);
  }
  return out;
}

std::string new_session_id() {
  thread_local std::array<std::uint8_t, kIdBytes * kBlockIds> block;
  thread_local std::size_t used = block.size();
  if (used == block.size()) {
    fill_random(block.data(), block.size());
    used = 0;
  }
  std::array<std::uint8_t, kIdBytes> bytes;
  std::memcpy(bytes.data(), block.data() + used, kIdBytes);
  std::memset(block.data() + used, 0, kIdBytes);  // an id handed out is not kept around
  used += kIdBytes;
  return format_uuid_v4(bytes);
}

std::optional<std::string> parse_session_id(std::string_view id) {
  if (id.size() != 36) return std::nullopt;
  std::string out(id);
  for (char& c : out) {
    std::size_t i = static_cast<std::size_t>(&c - out.data());
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !is_hex(c)) return std::nullopt;
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace cartd
