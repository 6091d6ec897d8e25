#include <hiredis/hiredis.h>

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "redis/client.hpp"

namespace cartd::redis {
namespace {

std::string ours(const std::vector<std::string_view>& args) {
  std::string out;
  encode_command(std::span<const std::string_view>(args), out);
  return out;
}

// What hiredis writes for the same arguments: the form every Redis reads.
std::string hiredis(const std::vector<std::string_view>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  std::string out(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
  return out;
}

TEST(EncodeCommand, writes_the_protocols_form) {
  EXPECT_EQ(ours({"GET", "k"}), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
  EXPECT_EQ(ours({"PING"}), "*1\r\n$4\r\nPING\r\n");
}

TEST(EncodeCommand, matches_hiredis_for_empty_binary_and_long_arguments) {
  std::string binary("a\r\nb\0c$*", 9);
  std::string long_arg(100000, 'x');
  std::vector<std::vector<std::string_view>> cases{
      {"FCALL", "cartd_hold", "1", "{s1}:inv", "", "0"},
      {"SET", "k", binary},
      {"SET", "k", long_arg},
      {"HSET", "{c7}:sid", "p1", "inv1 3 0123456789abcdef"},
  };
  for (const auto& args : cases) EXPECT_EQ(ours(args), hiredis(args));
}

TEST(EncodeCommand, appends_to_what_the_buffer_holds) {
  std::string out = "x";
  std::vector<std::string_view> args{"PING"};
  encode_command(std::span<const std::string_view>(args), out);
  EXPECT_EQ(out, "x*1\r\n$4\r\nPING\r\n");
}

}  // namespace
}  // namespace cartd::redis
