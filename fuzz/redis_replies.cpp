// fuzz_redis_replies: the decoders that turn a Redis reply into a view (src/cart/service.cpp,
// src/stock/service.cpp), fed reply trees built from the input.
//
// The input is RESP2, the protocol itself, so a seed reads like what Redis sends:
// "*2\r\n+insufficient\r\n:3\r\n". Every reply in the input is decoded with every
// decoder. Counts and nesting are bounded here (hiredis, which parses the real
// replies, is not what is fuzzed).
#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

#include "cart/service.hpp"
#include "redis/reply.hpp"
#include "require.hpp"
#include "stock/service.hpp"

#include <spdlog/spdlog.h>

namespace {

using cartd::redis::Reply;
using Type = Reply::Type;

constexpr int kMaxDepth = 8;
constexpr std::int64_t kMaxElements = 256;

class RespReader {
 public:
  explicit RespReader(std::string_view in) : in_(in) {}
  bool done() const { return in_.empty(); }

  // The next reply, or nullopt when the input does not hold a whole one.
  std::optional<Reply> next(int depth = 0) {
    if (in_.empty() || depth > kMaxDepth) return std::nullopt;
    char kind = in_.front();
    in_.remove_prefix(1);
    auto line = read_line();
    if (!line) return std::nullopt;
    Reply r;
    switch (kind) {
      case '+':
        r.type = Type::status;
        r.str = *line;
        return r;
      case '-':
        r.type = Type::error;
        r.str = *line;
        return r;
      case ':': {
        auto n = number(*line);
        if (!n) return std::nullopt;
        r.type = Type::integer;
        r.integer = *n;
        return r;
      }
      case '$': {
        auto n = number(*line);
        if (!n) return std::nullopt;
        if (*n < 0) return r;  // nil
        auto len = static_cast<std::size_t>(*n);
        if (in_.size() < len + 2 || in_.substr(len, 2) != "\r\n") return std::nullopt;
        r.type = Type::string;
        r.str = in_.substr(0, len);
        in_.remove_prefix(len + 2);
        return r;
      }
      case '*': {
        auto n = number(*line);
        if (!n || *n > kMaxElements) return std::nullopt;
        if (*n < 0) return r;  // nil
        r.type = Type::array;
        for (std::int64_t i = 0; i < *n; ++i) {
          auto e = next(depth + 1);
          if (!e) return std::nullopt;
          r.elements.push_back(std::move(*e));
        }
        return r;
      }
      default:
        return std::nullopt;
    }
  }

 private:
  std::optional<std::string_view> read_line() {
    auto end = in_.find("\r\n");
    if (end == std::string_view::npos) return std::nullopt;
    auto line = in_.substr(0, end);
    in_.remove_prefix(end + 2);
    return line;
  }
  static std::optional<std::int64_t> number(std::string_view s) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
  }
  std::string_view in_;
};

bool sorted(const std::vector<cartd::cart::CartLine>& lines) {
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].product_id < lines[i - 1].product_id) return false;
  }
  return true;
}

void decode_all(const Reply& r) {
  using namespace cartd;
  for (std::size_t i = 0; i <= r.elements.size(); ++i) {
    (void)r.text_at(i);
    (void)r.int_at(i);
  }
  if (auto out = cart::decode_set_line(r); out && out->kind == cart::SetLineOutcome::Kind::ok) {
    CARTD_REQUIRE(sorted(out->cart.lines));
  }
  if (auto out = cart::decode_cart("sid", r); out && out->cart) {
    CARTD_REQUIRE(out->cart->id == "sid");
    CARTD_REQUIRE(sorted(out->cart->lines));
  }
  if (auto out = cart::decode_checkout_start(r)) CARTD_REQUIRE(sorted(out->lines));
  if (auto out = cart::decode_lines("sid", r)) {
    if (r.elements.empty()) CARTD_REQUIRE(!out->cart);
    if (out->cart) {
      CARTD_REQUIRE(out->cart->lines.size() * 2 <= r.elements.size());
      CARTD_REQUIRE(sorted(out->cart->lines));
    }
  }
  if (auto out = stock::decode_stock("inv", r); out && *out) {
    CARTD_REQUIRE((*out)->inventory_id == "inv");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // the decoders log every unexpected reply
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  RespReader reader(std::string_view(reinterpret_cast<const char*>(data), size));
  while (!reader.done()) {
    auto reply = reader.next();
    if (!reply) break;
    decode_all(*reply);
  }
  return 0;
}
