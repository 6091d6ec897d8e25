#include "redis/url.hpp"

#include <gtest/gtest.h>

namespace cartd::redis {
namespace {

TEST(RedisUrl, reads_host_port_and_db) {
  auto e = parse_url("redis://127.0.0.1:6380/2");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 6380);
  EXPECT_EQ(e->db, 2);
  EXPECT_TRUE(e->password.empty());
}

TEST(RedisUrl, defaults_port_and_db) {
  auto e = parse_url("redis://localhost");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->port, 6379);
  EXPECT_EQ(e->db, 0);
}

TEST(RedisUrl, reads_user_and_password) {
  auto e = parse_url("redis://shop:s3cret@10.0.0.5:6379/0");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->user, "shop");
  EXPECT_EQ(e->password, "s3cret");
  auto p = parse_url("redis://:only@h:1");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->user, "");
  EXPECT_EQ(p->password, "only");
}

TEST(RedisUrl, rejects_what_it_cannot_use) {
  for (auto bad : {"http://h:1", "redis://", "redis://h:0", "redis://h:70000", "redis://h:1/x",
                   "redis://h:1/-1", "not a url"}) {
    EXPECT_FALSE(parse_url(bad)) << bad;
  }
}

TEST(RedisUrl, redaction_hides_the_password_and_keeps_the_rest) {
  struct Case {
    const char* url;
    const char* printed;
  };
  for (auto [url, printed] : std::initializer_list<Case>{
           {"redis://shop:s3cret@10.0.0.5:6379/0", "redis://shop:***@10.0.0.5:6379/0"},
           {"redis://:s3cret@h:1/2", "redis://:***@h:1/2"},
           {"redis://s3cret@h", "redis://***@h"},  // the password alone
           {"redis://shop:s3%40cret@h:1", "redis://shop:***@h:1"},
           {"redis://h:6379/0", "redis://h:6379/0"},
           {"redis://h", "redis://h"},
           // Malformed: still no password, whatever is wrong with the rest.
           {"redis://shop:s3cret@no host:6379/0", "redis://shop:***@no host:6379/0"},
           {"redis://:s3c@ret@h:1", "redis://:***@h:1"},
           {"redis://:s3c/ret@h:1", "redis://:***@h:1"},
           {"shop:s3cret@h:1", "shop:***@h:1"},
           {"not a url", "not a url"},
       }) {
    EXPECT_EQ(redact_password(url), printed) << url;
  }
}

TEST(RedisUrl, errors_never_show_the_password) {
  for (auto bad : {"redis://shop:s3cret@no host:6379/0", "redis://shop:s3cret@h:0",
                   "redis://shop:s3cret@h:1/x", "http://shop:s3cret@h:1", "redis://:s3c@ret@h:1",
                   "redis://s3cret@h:99999", "shop:s3cret@h"}) {
    auto e = parse_url(bad);
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().find("s3c"), std::string::npos) << e.error();
  }
}

TEST(RedisUrl, several_comma_separated_urls_name_a_clusters_seeds) {
  auto seeds = parse_urls("redis://10.0.0.1:7000,redis://u:p@10.0.0.2:7001/0");
  ASSERT_TRUE(seeds);
  ASSERT_EQ(seeds->size(), 2u);
  EXPECT_EQ((*seeds)[0].host, "10.0.0.1");
  EXPECT_EQ((*seeds)[1].port, 7001);
  EXPECT_EQ((*seeds)[1].password, "p");
  EXPECT_EQ(parse_urls("redis://h:1")->size(), 1u);
  for (auto bad : {"redis://h:1,", ",redis://h:1", "redis://h:1,,redis://h:2",
                   "redis://h:1,redis://shop:s3cret@h:0"}) {
    auto e = parse_urls(bad);
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().find("s3c"), std::string::npos) << e.error();
  }
  EXPECT_EQ(redact_password("redis://a:s3cret@h:1,redis://b:0ther@h:2"),
            "redis://a:***@h:1,redis://b:***@h:2");
}

}  // namespace
}  // namespace cartd::redis
