#include "redis/slot.hpp"

#include "redis/client.hpp"
#include "redis/cluster.hpp"
#include "replies.hpp"

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

// A function call on a cluster names a key of its slot that never exists, after its own
// keys (no function runs on a slot in migration: cluster.hpp); nothing else changes.
TEST(RedisSlot, a_function_call_names_an_absent_key_of_its_slot) {
  auto sent = [](std::vector<std::string_view> args) {
    std::string out;
    encode_for_cluster(std::span<const std::string_view>(args), out);
    return out;
  };
  auto plain = [](std::vector<std::string_view> args) {
    std::string out;
    encode_command(std::span<const std::string_view>(args), out);
    return out;
  };
  EXPECT_EQ(
      sent({"FCALL", "cartd_hold", "2", "{s9}:inv", "{s9}hc:inv", "inv", "7"}),
      plain({"FCALL", "cartd_hold", "3", "{s9}:inv", "{s9}hc:inv", "{s9}#absent", "inv", "7"}));
  EXPECT_EQ(key_slot("{s9}#absent"), key_slot("{s9}:inv"));
  EXPECT_EQ(sent({"FCALL", "f", "1", "x{c7}:y"}),
            plain({"FCALL", "f", "2", "x{c7}:y", "{c7}#absent"}));
  for (std::vector<std::string_view> same :
       {std::vector<std::string_view>{"FCALL_RO", "cartd_cart_lines", "1", "{c7}:cart", "cart"},
        {"FCALL", "cartd_groups_with_work", "0", "a", "b"},
        {"FCALL", "f", "1", "no-tag"},
        {"FCALL", "f", "1", "{}empty-tag"},
        {"FCALL", "f", "x", "{c7}:y"},
        {"HGETALL", "{c7}:cart"}}) {
    EXPECT_EQ(sent(same), plain(same)) << same[0] << " " << same[1];
  }
}

using test::arr;
using test::num;
using test::str;

Reply node(std::string id, std::string ip, std::string endpoint, int port, std::string role,
           std::string health) {
  return arr({str("id"), str(std::move(id)), str("port"), num(port), str("ip"), str(std::move(ip)),
              str("endpoint"), str(std::move(endpoint)), str("role"), str(std::move(role)),
              str("replication-offset"), num(0), str("health"), str(std::move(health))});
}

Reply shard(std::vector<Reply> slots, std::vector<Reply> nodes) {
  return arr({str("slots"), arr(std::move(slots)), str("nodes"), arr(std::move(nodes))});
}

TEST(ClusterShards, each_shard_is_its_online_primary_and_its_slots) {
  Reply reply = arr({
      shard({num(0), num(99), num(200), num(299)},
            {node("a", "10.0.0.1", "a.example", 7000, "master", "online"),
             node("b", "10.0.0.2", "b.example", 7001, "replica", "online")}),
      // A failover: the old primary failed, its replica was promoted.
      shard({num(100), num(199)}, {node("c", "10.0.0.3", "10.0.0.3", 7002, "master", "fail"),
                                   node("d", "10.0.0.4", "10.0.0.4", 7003, "master", "online")}),
      // No online primary: left out (its slots have no owner).
      shard({num(300), num(399)}, {node("e", "10.0.0.5", "10.0.0.5", 7004, "master", "fail")}),
      // No slots (a primary just added): left out.
      shard({}, {node("f", "10.0.0.6", "10.0.0.6", 7005, "master", "online")}),
      // A node that does not know its address (a cluster of one): where it was asked.
      shard({num(400), num(16383)}, {node("g", "", "", 7006, "master", "online")}),
  });
  auto shards = parse_shards(reply, "127.0.0.9");
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].primary.host, "a.example");  // the endpoint, as MOVED names it
  EXPECT_EQ(shards[0].primary.port, 7000);
  EXPECT_EQ(shards[0].primary_id, "a");
  ASSERT_EQ(shards[0].slots.size(), 2u);
  EXPECT_EQ(shards[0].slots[1], std::make_pair(std::uint16_t{200}, std::uint16_t{299}));
  EXPECT_EQ(shards[1].primary.host, "10.0.0.4");
  EXPECT_EQ(shards[1].primary.port, 7003);
  EXPECT_EQ(shards[2].primary.host, "127.0.0.9");
  EXPECT_EQ(shards[2].primary.port, 7006);
}

}  // namespace
}  // namespace cartd::redis
