#include "redis/slot.hpp"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace cartd::redis {
namespace {

// The cluster specification's reference values (the integration test compares every
// cartd key with CLUSTER KEYSLOT of a real cluster).
TEST(RedisSlot, crc16_is_the_xmodem_variant) {
  EXPECT_EQ(crc16("123456789"), 0x31C3);
  EXPECT_EQ(crc16(""), 0);
}

TEST(RedisSlot, the_hash_tag_decides) {
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("foo{}{bar}"), crc16("foo{}{bar}") % kSlots);  // empty tag: whole key
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
  EXPECT_EQ(key_slot("{c7}:cart-1"), key_slot("c7"));
  EXPECT_EQ(key_slot("no close {here"), crc16("no close {here") % kSlots);
}

TEST(RedisSlot, a_command_goes_to_its_first_key) {
  auto slot = [](std::vector<std::string_view> args) {
    return command_slot(std::span<const std::string_view>(args));
  };
  EXPECT_EQ(slot({"HGETALL", "{c7}:cart-1"}), key_slot("c7"));
  EXPECT_EQ(slot({"FCALL", "cartd_set_line", "2", "{c7}:cart-1", "{s9}:inv"}), key_slot("c7"));
  EXPECT_EQ(slot({"fcall_ro", "cartd_get", "1", "{s9}:inv"}), key_slot("s9"));
  EXPECT_EQ(slot({"FCALL", "cartd_layout", "0"}), std::nullopt);
  EXPECT_EQ(slot({"TIME"}), std::nullopt);
  EXPECT_EQ(slot({"CLUSTER", "SHARDS"}), std::nullopt);
  EXPECT_EQ(slot({}), std::nullopt);
}

}  // namespace
}  // namespace cartd::redis
