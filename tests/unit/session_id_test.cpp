#include "base/session_id.hpp"

#include <gtest/gtest.h>

#include <set>

namespace cartd::cart {
namespace {

TEST(SessionId, new_ids_are_lowercase_version_4_uuids) {
  for (int i = 0; i < 1000; ++i) {
    std::string id = new_session_id();
    ASSERT_EQ(parse_session_id(id), id);
    EXPECT_EQ(id[14], '4');
    EXPECT_NE(std::string("89ab").find(id[19]), std::string::npos) << id;
  }
}

TEST(SessionId, new_ids_do_not_repeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) EXPECT_TRUE(seen.insert(new_session_id()).second);
}

TEST(SessionId, format_sets_version_and_variant_bits) {
  std::array<std::uint8_t, 16> ones;
  ones.fill(0xff);
  EXPECT_EQ(format_uuid_v4(ones), "ffffffff-ffff-4fff-bfff-ffffffffffff");
  std::array<std::uint8_t, 16> zeros{};
  EXPECT_EQ(format_uuid_v4(zeros), "00000000-0000-4000-8000-000000000000");
}

TEST(SessionId, parse_lowercases_and_rejects_anything_else) {
  EXPECT_EQ(parse_session_id("0B7A6C4E-1F2D-4C3B-9A8E-7D6C5B4A3F21"),
            "0b7a6c4e-1f2d-4c3b-9a8e-7d6c5b4a3f21");
  for (std::string bad :
       {"", "0b7a6c4e1f2d4c3b9a8e7d6c5b4a3f21", "0b7a6c4e-1f2d-4c3b-9a8e-7d6c5b4a3f2",
        "0b7a6c4e-1f2d-4c3b-9a8e-7d6c5b4a3f211", "0b7a6c4e-1f2d-4c3b-9a8e_7d6c5b4a3f21",
        "g b7a6c4e-1f2d-4c3b-9a8e-7d6c5b4a3f2", "0b7a6c4e-1f2d-4c3b-9a8e-7d6c5b4a}f21"}) {
    EXPECT_FALSE(parse_session_id(bad)) << bad;
  }
}

}  // namespace
}  // namespace cartd::cart
