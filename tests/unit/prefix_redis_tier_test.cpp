// The Redis tier of the prefix cache (prefix/redis_block_tier.h) against real redis-server
// processes of the tests' own (redis_process.h): URL parsing, round trips, sharing between
// tiers, identity namespacing, corrupt values, TTL, Redis' maxmemory eviction, a server
// that dies, comes back, stops answering, or wants a password.
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "prefix/block_record.h"
#include "prefix/redis_block_tier.h"
#include "prefix/redis_url.h"
#include "redis_process.h"
#include "test_paths.h"

namespace tierlm::prefix {
namespace {

using tierlm::testing::RedisProcess;
using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---------------------------------------------------------------------------------------
// URLs

TEST(PrefixRedisUrlTest, ParsesTheGoodForms) {
  // url, then the endpoint: host, port, socket path, user, password, db.
  struct Case {
    const char* url;
    const char* host;
    int port;
    const char* socket_path;
    const char* user;
    const char* password;
    int db;
  };
  const Case cases[] = {
      {"redis://127.0.0.1", "127.0.0.1", 6379, "", "", "", 0},
      {"redis://cache.internal:6380/2", "cache.internal", 6380, "", "", "", 2},
      {"redis://h/", "h", 6379, "", "", "", 0},
      {"REDIS://Cache-1_a:06379", "Cache-1_a", 6379, "", "", "", 0},
      {"redis://:s3cret@h:1/15", "h", 1, "", "", "s3cret", 15},
      {"redis://alice:p%40ss%3Aw%2fd@h", "h", 6379, "", "alice", "p@ss:w/d", 0},
      {"redis://:pa@ss:x@h:7", "h", 7, "", "", "pa@ss:x", 0},
      {"redis://[::1]:6390/3", "::1", 6390, "", "", "", 3},
      {"redis://[2001:db8::7]", "2001:db8::7", 6379, "", "", "", 0},
      {"unix:///run/redis/redis.sock", "", 0, "/run/redis/redis.sock", "", "", 0},
      {"unix://:pw@/tmp/r@x.sock?db=4", "", 0, "/tmp/r@x.sock", "", "pw", 4},
      {"unix://bob:pw@/s", "", 0, "/s", "bob", "pw", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    auto ep = ParseRedisUrl(c.url);
    ASSERT_TRUE(ep.ok()) << ep.status().ToString();
    EXPECT_EQ(ep->host, c.host);
    EXPECT_EQ(ep->port, c.port);
    EXPECT_EQ(ep->socket_path, c.socket_path);
    EXPECT_EQ(ep->user, c.user);
    EXPECT_EQ(ep->password, c.password);
    EXPECT_EQ(ep->db, c.db);
    // The canonical form parses back to the same endpoint, and descriptions hide passwords.
    auto again = ParseRedisUrl(FormatRedisUrl(*ep));
    ASSERT_TRUE(again.ok()) << FormatRedisUrl(*ep) << ": " << again.status().ToString();
    EXPECT_TRUE(*again == *ep) << FormatRedisUrl(*ep);
    if (!ep->password.empty()) {
      EXPECT_EQ(DescribeRedisEndpoint(*ep).find(ep->password), std::string::npos);
    }
  }
  EXPECT_EQ(DescribeRedisEndpoint(*ParseRedisUrl("redis://:pw@[::1]:7/2")), "[::1]:7/2");
  EXPECT_EQ(DescribeRedisEndpoint(*ParseRedisUrl("unix://:pw@/run/r.sock?db=1")), "unix:/run/r.sock/1");
}

TEST(PrefixRedisUrlTest, RejectsTheBadFormsNamingTheUrlAndTheFault) {
  const std::string long_path = "unix:///" + std::string(120, 'p');
  struct Case {
    std::string url;
    const char* fault;
  };
  const Case cases[] = {
      {"", "expected redis://"},
      {"127.0.0.1:6379", "expected redis://"},
      {"http://h", "scheme 'http'"},
      {"rediss://h", "TLS"},
      {"redis://", "no host"},
      {"redis://:pw@", "no host"},
      {"redis://h:", "empty port"},
      {"redis://h:0", "port 0 is out of range"},
      {"redis://h:65536", "port 65536 is out of range"},
      {"redis://h:123456", "port '123456' is too long"},
      {"redis://h:12ab", "port '12ab' is not a number"},
      {"redis://h:-1", "port '-1' is not a number"},
      {"redis://h/x", "db 'x' is not a number"},
      {"redis://h/1/2", "db '1/2' is not a number"},
      {"redis://h/1234567890", "db '1234567890' is too long"},
      {"redis://h?db=1", "query"},
      {"redis://h#f", "query or fragment"},
      {"redis://user@h", "needs a ':'"},
      {"redis://alice:@h", "empty password"},
      {"redis://:%zz@h", "percent-escape in the password"},
      {"redis://%4:x@h", "percent-escape in the user"},
      {"redis://::1:6379", "needs brackets"},
      {"redis://[::1", "without its ']'"},
      {"redis://[]:1", "empty IPv6"},
      {"redis://[1.2.3.4]", "not an IPv6 address"},
      {"redis://[::1]x", "after the IPv6 address"},
      {"redis://h ost", "space, control or non-ASCII"},
      {"redis://h\x01", "space, control or non-ASCII"},
      {"redis://h\xc3\xa9", "space, control or non-ASCII"},
      {"redis://h$", "a character a host name cannot have"},
      {"unix://", "no socket path"},
      {"unix:///", "no socket path"},
      {"unix://host/sock", "has no host"},
      {"unix:///s?x=1", "unknown query 'x=1'"},
      {"unix:///s?db=z", "db 'z' is not a number"},
      {long_path, "longer than 107 bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    auto ep = ParseRedisUrl(c.url);
    ASSERT_FALSE(ep.ok());
    EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ep.status().message().find("redis URL '"), std::string::npos) << ep.status().message();
    EXPECT_NE(ep.status().message().find(c.fault), std::string::npos) << ep.status().message();
  }
  // A password never shows in a message, whatever else is wrong.
  auto ep = ParseRedisUrl("redis://alice:topsecret@h:99999");
  ASSERT_FALSE(ep.ok());
  EXPECT_EQ(ep.status().message().find("topsecret"), std::string::npos) << ep.status().message();
  EXPECT_NE(ep.status().message().find("redis://alice:***@h:99999"), std::string::npos) << ep.status().message();
  EXPECT_EQ(MaskRedisUrlPassword("redis://:a@b@h/1"), "redis://:***@h/1");
  EXPECT_EQ(MaskRedisUrlPassword("unix://:pw@/s@x"), "unix://:***@/s@x");
  EXPECT_EQ(MaskRedisUrlPassword("redis://h:1/2"), "redis://h:1/2");
}

// ---------------------------------------------------------------------------------------
// The tier against a server

// A deterministic payload of `n` bytes for block `seed`.
Bytes Payload(uint64_t seed, size_t n) {
  Bytes out(n);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  return out;
}

std::vector<uint64_t> Chain(uint64_t first, size_t n) {
  std::vector<uint64_t> out;
  for (size_t i = 0; i < n; ++i) out.push_back(first + i * 0x1000193);
  return out;
}

RedisTierOptions Options(const std::string& url) {
  RedisTierOptions o;
  o.url = url;
  o.connect_timeout_s = 0.5;
  o.io_timeout_s = 0.5;
  o.retry_after_s = 0.2;
  return o;
}

std::unique_ptr<RedisBlockTier> OpenTier(const RedisTierOptions& o) {
  auto tier = RedisBlockTier::Open(o);
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  return tier.ok() ? std::move(tier).value() : nullptr;
}

// Loads `hashes`, collecting the payloads the sink was given.
std::vector<Bytes> LoadAll(RedisBlockTier& tier, uint64_t identity, const std::vector<uint64_t>& hashes,
                           uint64_t payload_bytes) {
  std::vector<Bytes> got;
  const size_t n = tier.Load(identity, hashes, payload_bytes, [&](size_t i, std::span<const uint8_t> p) {
    EXPECT_EQ(i, got.size());
    got.emplace_back(p.begin(), p.end());
    return true;
  });
  EXPECT_EQ(n, got.size());
  return got;
}

// Stores payloads Payload(hash, bytes) for the chain and waits for the writer.
void StoreChain(RedisBlockTier& tier, uint64_t identity, const std::vector<uint64_t>& hashes, size_t bytes) {
  for (uint64_t h : hashes) tier.Store(identity, h, Payload(h, bytes));
  tier.Flush();
}

// A plain hiredis connection, for looking at (and tampering with) what the tier wrote.
class RawRedis {
 public:
  explicit RawRedis(int port, const std::string& password = "") {
    ctx_ = redisConnect("127.0.0.1", port);
    if (ctx_ != nullptr && ctx_->err == 0 && !password.empty()) Command({"AUTH", password});
  }
  ~RawRedis() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  RawRedis(const RawRedis&) = delete;
  RawRedis& operator=(const RawRedis&) = delete;

  struct Reply {
    int type = 0;
    long long integer = 0;
    std::string str;
  };
  Reply Command(const std::vector<std::string>& args) {
    Reply out;
    if (ctx_ == nullptr || ctx_->err != 0) {
      ADD_FAILURE() << "raw redis connection: " << (ctx_ != nullptr ? ctx_->errstr : "cannot allocate");
      return out;
    }
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (r == nullptr) {
      ADD_FAILURE() << "raw redis " << args[0] << ": " << ctx_->errstr;
      return out;
    }
    out.type = r->type;
    out.integer = r->integer;
    if (r->str != nullptr) out.str.assign(r->str, r->len);
    freeReplyObject(r);
    return out;
  }
  long long Integer(const std::vector<std::string>& args) {
    const Reply r = Command(args);
    EXPECT_EQ(r.type, REDIS_REPLY_INTEGER) << args[0] << ": " << r.str;
    return r.integer;
  }

 private:
  redisContext* ctx_ = nullptr;
};

constexpr uint64_t kIdentity = 0x1d3a7e5b0c2f4961ull;
constexpr size_t kBlockBytes = 4096;

TEST(PrefixRedisTierTest, OpenChecksItsOptionsButNeedsNoServer) {
  RedisTierOptions bad = Options("http://h");
  EXPECT_EQ(RedisBlockTier::Open(bad).status().code(), StatusCode::kInvalidArgument);
  for (int which = 0; which < 5; ++which) {
    RedisTierOptions o = Options("redis://127.0.0.1:1");
    if (which == 0) o.io_timeout_s = 0;
    if (which == 1) o.connect_timeout_s = -1;
    if (which == 2) o.retry_after_s = -1;
    if (which == 3) o.pipeline_depth = 0;
    if (which == 4) o.ttl_seconds = -5;
    auto tier = RedisBlockTier::Open(o);
    ASSERT_FALSE(tier.ok()) << which;
    EXPECT_EQ(tier.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(tier.status().message().find("redis tier: "), std::string::npos) << tier.status().message();
  }

  // A port where nothing listens (a server's, after it is gone): Open succeeds, every call
  // is a quick miss or drop with a counted error.
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  ASSERT_EQ(redis.Stop().ToString(), "ok");
  auto tier = OpenTier(Options(redis.url()));
  ASSERT_NE(tier, nullptr);
  EXPECT_EQ(tier->name(), "redis");
  const auto hashes = Chain(1, 3);
  const auto t0 = Clock::now();
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 0u);
  EXPECT_TRUE(LoadAll(*tier, kIdentity, hashes, kBlockBytes).empty());
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  EXPECT_LT(SecondsSince(t0), 0.5);
  const TierCounters c = tier->Counters();
  EXPECT_GE(c.errors, 3u);
  EXPECT_EQ(c.dropped, 3u);
  EXPECT_EQ(c.stored, 0u);
  EXPECT_EQ(c.hits, 0u);
  EXPECT_EQ(c.misses, 1u);
  EXPECT_NE(tier->LastError().find("redis 127.0.0.1:" + std::to_string(redis.port())), std::string::npos)
      << tier->LastError();
}

TEST(PrefixRedisTierTest, StoreFlushLoadRoundTripsAtEveryPipelineDepth) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  for (size_t depth : {1, 3, 8, 64}) {
    SCOPED_TRACE("pipeline_depth " + std::to_string(depth));
    RedisTierOptions o = Options(redis.url());
    o.pipeline_depth = depth;
    auto tier = OpenTier(o);
    ASSERT_NE(tier, nullptr);
    const auto hashes = Chain(depth * 1000, 12);
    StoreChain(*tier, kIdentity, hashes, kBlockBytes);
    TierCounters c = tier->Counters();
    EXPECT_EQ(c.stored, 12u);
    EXPECT_EQ(c.dropped, 0u);
    EXPECT_EQ(c.bytes_written, 12u * (kRecordHeaderBytes + kBlockBytes));
    EXPECT_EQ(tier->Contains(kIdentity, hashes), 12u);
    const auto got = LoadAll(*tier, kIdentity, hashes, kBlockBytes);
    ASSERT_EQ(got.size(), 12u);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], Payload(hashes[i], kBlockBytes)) << i;
    c = tier->Counters();
    EXPECT_EQ(c.lookups, 12u);
    EXPECT_EQ(c.hits, 12u);
    EXPECT_EQ(c.misses, 0u);
    EXPECT_EQ(c.errors, 0u) << tier->LastError();
    EXPECT_EQ(c.bytes_read, 12u * kBlockBytes);
    EXPECT_GT(c.load_seconds, 0.0);
    EXPECT_EQ(c.resident_blocks, 0u);  // unknown for Redis
    // payload_bytes 0: any size is taken.
    EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, 0).size(), 12u);
  }
}

TEST(PrefixRedisTierTest, ContainsAndLoadStopAtTheFirstAbsentBlock) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  auto tier = OpenTier(Options(redis.url()));
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(77, 6);
  for (size_t i : {0, 1, 3, 4, 5}) tier->Store(kIdentity, hashes[i], Payload(hashes[i], kBlockBytes));
  tier->Flush();
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 2u);
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 2u);
  const std::vector<uint64_t> tail(hashes.begin() + 2, hashes.end());
  EXPECT_EQ(tier->Contains(kIdentity, tail), 0u);
  EXPECT_EQ(LoadAll(*tier, kIdentity, tail, kBlockBytes).size(), 0u);
  // The replies the stopped calls left behind do not confuse the next ones.
  const std::vector<uint64_t> rest(hashes.begin() + 3, hashes.end());
  EXPECT_EQ(tier->Contains(kIdentity, rest), 3u);
  const auto got = LoadAll(*tier, kIdentity, rest, kBlockBytes);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(got[i], Payload(rest[i], kBlockBytes));
  const TierCounters c = tier->Counters();
  EXPECT_EQ(c.hits, 5u);
  EXPECT_EQ(c.misses, 2u);
  EXPECT_EQ(c.lookups, 7u);
  EXPECT_EQ(c.corrupt, 0u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();
}

TEST(PrefixRedisTierTest, LoadStopsWhenTheSinkDeclinesAndStaysInStep) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  RedisTierOptions o = Options(redis.url());
  o.pipeline_depth = 4;
  auto tier = OpenTier(o);
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(5, 10);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  size_t calls = 0;
  const size_t n = tier->Load(kIdentity, hashes, kBlockBytes, [&](size_t i, std::span<const uint8_t>) {
    ++calls;
    return i < 2;
  });
  EXPECT_EQ(n, 2u);
  EXPECT_EQ(calls, 3u);
  // Four GETs were still in flight; the next calls must see their own replies.
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 10u);
  const auto got = LoadAll(*tier, kIdentity, hashes, kBlockBytes);
  ASSERT_EQ(got.size(), 10u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(got[i], Payload(hashes[i], kBlockBytes)) << i;
  const TierCounters c = tier->Counters();
  EXPECT_EQ(c.hits, 12u);
  EXPECT_EQ(c.misses, 0u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();
}

TEST(PrefixRedisTierTest, TwoTiersOnOneServerShareBlocks) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  auto writer = OpenTier(Options(redis.url()));
  auto reader = OpenTier(Options(redis.url()));
  ASSERT_NE(writer, nullptr);
  ASSERT_NE(reader, nullptr);
  const auto hashes = Chain(900, 8);
  EXPECT_EQ(reader->Contains(kIdentity, hashes), 0u);
  StoreChain(*writer, kIdentity, hashes, 3 * kBlockBytes);
  EXPECT_EQ(reader->Contains(kIdentity, hashes), 8u);
  const auto got = LoadAll(*reader, kIdentity, hashes, 3 * kBlockBytes);
  ASSERT_EQ(got.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(got[i], Payload(hashes[i], 3 * kBlockBytes)) << i;
  EXPECT_EQ(reader->Counters().hits, 8u);
  EXPECT_EQ(reader->Counters().stored, 0u);
  EXPECT_EQ(writer->Counters().stored, 8u);
}

TEST(PrefixRedisTierTest, KeysAreNamespacedByIdentity) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  EXPECT_EQ(RedisBlockKey("tierlm:kv:", 0xab, 0x1234cd), "tierlm:kv:v1:00000000000000ab:00000000001234cd");
  auto tier = OpenTier(Options(redis.url()));
  ASSERT_NE(tier, nullptr);
  const uint64_t other = kIdentity ^ 1;
  const auto hashes = Chain(31, 3);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  RawRedis raw(redis.port());
  for (uint64_t h : hashes) {
    EXPECT_EQ(raw.Integer({"EXISTS", RedisBlockKey("tierlm:kv:", kIdentity, h)}), 1);
    EXPECT_EQ(raw.Integer({"EXISTS", RedisBlockKey("tierlm:kv:", other, h)}), 0);
  }
  EXPECT_EQ(raw.Integer({"DBSIZE"}), 3);
  EXPECT_EQ(tier->Contains(other, hashes), 0u);
  EXPECT_EQ(LoadAll(*tier, other, hashes, kBlockBytes).size(), 0u);
  EXPECT_EQ(tier->Counters().misses, 1u);
  EXPECT_EQ(tier->Counters().corrupt, 0u);

  // Another key prefix is another store on the same server.
  RedisTierOptions o = Options(redis.url());
  o.key_prefix = "elsewhere:";
  auto apart = OpenTier(o);
  ASSERT_NE(apart, nullptr);
  EXPECT_EQ(apart->Contains(kIdentity, hashes), 0u);
  StoreChain(*apart, kIdentity, hashes, kBlockBytes);
  EXPECT_EQ(raw.Integer({"EXISTS", RedisBlockKey("elsewhere:", kIdentity, hashes[0])}), 1);
  EXPECT_EQ(raw.Integer({"DBSIZE"}), 6);
}

TEST(PrefixRedisTierTest, ACorruptValueIsACountedMissAndStopsTheChain) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  auto tier = OpenTier(Options(redis.url()));
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(4242, 4);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  RawRedis raw(redis.port());
  const auto key = [&](size_t i) { return RedisBlockKey("tierlm:kv:", kIdentity, hashes[i]); };

  EXPECT_EQ(raw.Command({"SET", key(2), "garbage, not a record"}).str, "OK");
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 2u);
  TierCounters c = tier->Counters();
  EXPECT_EQ(c.hits, 2u);
  EXPECT_EQ(c.misses, 1u);
  EXPECT_EQ(c.corrupt, 1u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();

  // A record cut short, a record of another block, a payload of the wrong size: all corrupt.
  Bytes record = EncodeRecord(kIdentity, hashes[0], Payload(hashes[0], kBlockBytes));
  EXPECT_EQ(raw.Command({"SET", key(0), std::string(record.begin(), record.end() - 1)}).str, "OK");
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 0u);
  record = EncodeRecord(kIdentity, hashes[3], Payload(hashes[3], kBlockBytes));
  EXPECT_EQ(raw.Command({"SET", key(0), std::string(record.begin(), record.end())}).str, "OK");
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 0u);
  const std::vector<uint64_t> second(hashes.begin() + 1, hashes.begin() + 2);
  EXPECT_EQ(LoadAll(*tier, kIdentity, second, kBlockBytes / 2).size(), 0u);
  c = tier->Counters();
  EXPECT_EQ(c.corrupt, 4u);
  EXPECT_EQ(c.misses, 4u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();

  // A key of the wrong type is an error reply: a miss and an error, the connection kept.
  EXPECT_EQ(raw.Integer({"DEL", key(1)}), 1);
  EXPECT_EQ(raw.Integer({"RPUSH", key(1), "x"}), 1);
  EXPECT_EQ(LoadAll(*tier, kIdentity, second, kBlockBytes).size(), 0u);
  EXPECT_EQ(tier->Counters().errors, 1u);
  EXPECT_NE(tier->LastError().find("WRONGTYPE"), std::string::npos) << tier->LastError();
  const std::vector<uint64_t> last(hashes.begin() + 3, hashes.end());
  EXPECT_EQ(LoadAll(*tier, kIdentity, last, kBlockBytes).size(), 1u);
}

TEST(PrefixRedisTierTest, EverySetGetsTheTtlWhenOneIsAsked) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  RedisTierOptions o = Options(redis.url());
  o.ttl_seconds = 100;
  auto with_ttl = OpenTier(o);
  auto without = OpenTier(Options(redis.url()));
  ASSERT_NE(with_ttl, nullptr);
  ASSERT_NE(without, nullptr);
  StoreChain(*with_ttl, kIdentity, Chain(1, 3), kBlockBytes);
  StoreChain(*without, kIdentity, Chain(100, 1), kBlockBytes);
  RawRedis raw(redis.port());
  for (uint64_t h : Chain(1, 3)) {
    const long long ttl = raw.Integer({"TTL", RedisBlockKey("tierlm:kv:", kIdentity, h)});
    EXPECT_GT(ttl, 90);
    EXPECT_LE(ttl, 100);
  }
  EXPECT_EQ(raw.Integer({"TTL", RedisBlockKey("tierlm:kv:", kIdentity, Chain(100, 1)[0])}), -1);  // no expiry
}

TEST(PrefixRedisTierTest, BlocksRedisEvictedAreMissesThatStopTheChain) {
  RedisProcess redis({"--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"});
  ASSERT_EQ(redis.Start().ToString(), "ok");
  auto tier = OpenTier(Options(redis.url()));
  ASSERT_NE(tier, nullptr);
  constexpr size_t kBig = 32 * 1024;
  const auto hashes = Chain(7, 160);  // 5 MiB of records into 2 MiB
  StoreChain(*tier, kIdentity, hashes, kBig);
  TierCounters c = tier->Counters();
  EXPECT_EQ(c.stored, hashes.size());
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();

  RawRedis raw(redis.port());
  std::vector<uint64_t> kept, evicted;
  size_t first_absent = hashes.size();
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (raw.Integer({"EXISTS", RedisBlockKey("tierlm:kv:", kIdentity, hashes[i])}) == 1) {
      kept.push_back(hashes[i]);
    } else {
      evicted.push_back(hashes[i]);
      first_absent = std::min(first_absent, i);
    }
  }
  ASSERT_GE(kept.size(), 3u);
  ASSERT_FALSE(evicted.empty()) << "nothing was evicted";
  // At maxmemory every command may evict (a reply's buffers count); room made here keeps
  // the reads below from evicting more, so what is there stays there.
  for (size_t i = 2; i + 1 < kept.size(); ++i)
    EXPECT_EQ(raw.Integer({"DEL", RedisBlockKey("tierlm:kv:", kIdentity, kept[i])}), 1);
  kept = {kept[0], kept[1], kept.back()};

  // The chain holds up to its first evicted block, whatever is still there after it.
  EXPECT_EQ(tier->Contains(kIdentity, hashes), first_absent);
  const auto got = LoadAll(*tier, kIdentity, hashes, kBig);
  EXPECT_EQ(got.size(), first_absent);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], Payload(hashes[i], kBig)) << i;
  // Two blocks still there, then an evicted one, then another still there: two.
  const std::vector<uint64_t> mixed = {kept[0], kept[1], evicted[0], kept[2]};
  EXPECT_EQ(tier->Contains(kIdentity, mixed), 2u);
  const auto got_mixed = LoadAll(*tier, kIdentity, mixed, kBig);
  ASSERT_EQ(got_mixed.size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_EQ(got_mixed[i], Payload(mixed[i], kBig)) << i;
  // An evicted block alone is a plain miss, every time.
  for (uint64_t h : evicted) EXPECT_EQ(LoadAll(*tier, kIdentity, {h}, kBig).size(), 0u);
  EXPECT_EQ(LoadAll(*tier, kIdentity, {kept[2]}, kBig).size(), 1u);
  c = tier->Counters();
  EXPECT_EQ(c.misses, 2 + evicted.size());
  EXPECT_EQ(c.hits, first_absent + 3);
  EXPECT_EQ(c.corrupt, 0u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();
  EXPECT_EQ(c.evicted, 0u);  // Redis evicts, not the tier
}

TEST(PrefixRedisTierTest, AServerThatDiesIsAMissAndTheTierReconnectsWhenItIsBack) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  RedisTierOptions o = Options(redis.url());
  o.retry_after_s = 0.3;
  auto tier = OpenTier(o);
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(11, 4);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  ASSERT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 4u);

  ASSERT_EQ(redis.Stop().ToString(), "ok");
  const auto t0 = Clock::now();
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 0u);
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 0u);
  StoreChain(*tier, kIdentity, Chain(500, 3), kBlockBytes);
  EXPECT_LT(SecondsSince(t0), o.io_timeout_s) << "a dead server must fail fast";
  TierCounters c = tier->Counters();
  EXPECT_GE(c.errors, 3u);
  EXPECT_EQ(c.dropped, 3u);
  EXPECT_EQ(c.misses, 1u);
  EXPECT_FALSE(tier->LastError().empty());

  // Back on the same port (empty: nothing was saved); after retry_after_s the same tier
  // works again.
  ASSERT_EQ(redis.Start().ToString(), "ok");
  std::this_thread::sleep_for(std::chrono::duration<double>(o.retry_after_s + 0.1));
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 0u);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 4u);
  const auto got = LoadAll(*tier, kIdentity, hashes, kBlockBytes);
  ASSERT_EQ(got.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(got[i], Payload(hashes[i], kBlockBytes));
  c = tier->Counters();
  EXPECT_EQ(c.stored, 8u);
  EXPECT_EQ(c.hits, 8u);
}

TEST(PrefixRedisTierTest, AConnectionTheServerClosedIsReplacedWithoutAMiss) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  auto tier = OpenTier(Options(redis.url()));
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(21, 4);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  ASSERT_EQ(tier->Contains(kIdentity, hashes), 4u);
  // As the server's idle timeout would: both of the tier's connections are closed.
  RawRedis raw(redis.port());
  EXPECT_EQ(raw.Integer({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"}), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 4u);
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 4u);
  StoreChain(*tier, kIdentity, Chain(300, 2), kBlockBytes);
  const TierCounters c = tier->Counters();
  EXPECT_EQ(c.stored, 6u);
  EXPECT_EQ(c.errors, 0u) << tier->LastError();
}

TEST(PrefixRedisTierTest, AServerThatStopsAnsweringCostsOneTimeoutNotAHang) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  RedisTierOptions o = Options(redis.url());
  o.io_timeout_s = 0.3;
  o.retry_after_s = 0.5;
  const double margin = 0.4;  // scheduling on a busy machine
  auto tier = OpenTier(o);
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(3, 4);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  ASSERT_EQ(tier->Contains(kIdentity, hashes), 4u);

  ASSERT_TRUE(redis.Pause().ok());
  auto t0 = Clock::now();
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 0u);
  EXPECT_LT(SecondsSince(t0), o.io_timeout_s + margin);
  EXPECT_GE(SecondsSince(t0), o.io_timeout_s * 0.9);
  t0 = Clock::now();
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 0u);  // within retry_after_s: at once
  EXPECT_LT(SecondsSince(t0), 0.1 + margin);
  t0 = Clock::now();
  StoreChain(*tier, kIdentity, Chain(600, 20), kBlockBytes);  // the writer's own connection times out
  EXPECT_LT(SecondsSince(t0), o.io_timeout_s + margin);
  TierCounters c = tier->Counters();
  EXPECT_EQ(c.dropped, 20u);
  EXPECT_GE(c.errors, 3u);
  EXPECT_NE(tier->LastError().find("no reply within"), std::string::npos) << tier->LastError();

  // A tier destroyed with writes queued against the stopped server is also bounded.
  {
    auto doomed = OpenTier(o);
    ASSERT_NE(doomed, nullptr);
    for (uint64_t h : Chain(700, 30)) doomed->Store(kIdentity, h, Payload(h, kBlockBytes));
    t0 = Clock::now();
  }
  EXPECT_LT(SecondsSince(t0), o.io_timeout_s + margin);

  ASSERT_TRUE(redis.Resume().ok());
  std::this_thread::sleep_for(std::chrono::duration<double>(o.retry_after_s + 0.1));
  EXPECT_EQ(tier->Contains(kIdentity, hashes), 4u);
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 4u);
  StoreChain(*tier, kIdentity, Chain(600, 2), kBlockBytes);
  EXPECT_EQ(tier->Contains(kIdentity, Chain(600, 2)), 2u);
}

TEST(PrefixRedisTierTest, PasswordUserAndDbComeFromTheUrl) {
  RedisProcess redis({"--requirepass", "s3cret", "--user", "alice", "on", ">alice pw", "~*", "+@all"});
  ASSERT_EQ(redis.Start().ToString(), "ok");
  const std::string at = "@127.0.0.1:" + std::to_string(redis.port());
  auto tier = OpenTier(Options("redis://:s3cret" + at + "/3"));
  auto as_alice = OpenTier(Options("redis://alice:alice%20pw" + at + "/3"));
  ASSERT_NE(tier, nullptr);
  ASSERT_NE(as_alice, nullptr);
  const auto hashes = Chain(1, 3);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  EXPECT_EQ(tier->Counters().stored, 3u) << tier->LastError();
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 3u);
  EXPECT_EQ(LoadAll(*as_alice, kIdentity, hashes, kBlockBytes).size(), 3u) << as_alice->LastError();

  RawRedis raw(redis.port(), "s3cret");
  EXPECT_EQ(raw.Integer({"EXISTS", RedisBlockKey("tierlm:kv:", kIdentity, hashes[0])}), 0);  // db 0
  EXPECT_EQ(raw.Command({"SELECT", "3"}).str, "OK");
  EXPECT_EQ(raw.Integer({"EXISTS", RedisBlockKey("tierlm:kv:", kIdentity, hashes[0])}), 1);
  EXPECT_EQ(tier->Counters().errors, 0u) << tier->LastError();
}

TEST(PrefixRedisTierTest, AWrongOrMissingPasswordIsAMissAndAnError) {
  RedisProcess redis({"--requirepass", "s3cret"});
  ASSERT_EQ(redis.Start().ToString(), "ok");
  const auto hashes = Chain(1, 3);
  {
    auto good = OpenTier(Options("redis://:s3cret@127.0.0.1:" + std::to_string(redis.port())));
    ASSERT_NE(good, nullptr);
    StoreChain(*good, kIdentity, hashes, kBlockBytes);
    ASSERT_EQ(good->Counters().stored, 3u) << good->LastError();
  }
  auto wrong = OpenTier(Options("redis://:guessed@127.0.0.1:" + std::to_string(redis.port())));
  ASSERT_NE(wrong, nullptr);
  EXPECT_EQ(wrong->Contains(kIdentity, hashes), 0u);
  EXPECT_EQ(LoadAll(*wrong, kIdentity, hashes, kBlockBytes).size(), 0u);
  StoreChain(*wrong, kIdentity, Chain(50, 2), kBlockBytes);
  TierCounters c = wrong->Counters();
  EXPECT_GE(c.errors, 3u);
  EXPECT_EQ(c.dropped, 2u);
  EXPECT_EQ(c.hits, 0u);
  EXPECT_NE(wrong->LastError().find("AUTH refused"), std::string::npos) << wrong->LastError();
  EXPECT_EQ(wrong->LastError().find("guessed"), std::string::npos) << wrong->LastError();

  auto none = OpenTier(Options(redis.url()));
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(none->Contains(kIdentity, hashes), 0u);
  EXPECT_EQ(LoadAll(*none, kIdentity, hashes, kBlockBytes).size(), 0u);
  StoreChain(*none, kIdentity, Chain(50, 2), kBlockBytes);
  c = none->Counters();
  EXPECT_EQ(c.errors, 4u);
  EXPECT_EQ(c.dropped, 2u);
  EXPECT_NE(none->LastError().find("NOAUTH"), std::string::npos) << none->LastError();
}

TEST(PrefixRedisTierTest, AUnixSocketUrlWorks) {
  const auto dir = tierlm::testing::ScratchDir("redis-unix");
  const std::string socket = (dir / "redis.sock").string();
  RedisProcess redis({"--unixsocket", socket, "--unixsocketperm", "700"});
  ASSERT_EQ(redis.Start().ToString(), "ok");
  auto tier = OpenTier(Options("unix://" + socket + "?db=2"));
  ASSERT_NE(tier, nullptr);
  const auto hashes = Chain(8, 3);
  StoreChain(*tier, kIdentity, hashes, kBlockBytes);
  EXPECT_EQ(LoadAll(*tier, kIdentity, hashes, kBlockBytes).size(), 3u);
  EXPECT_EQ(tier->Counters().errors, 0u) << tier->LastError();
  RawRedis raw(redis.port());
  EXPECT_EQ(raw.Command({"SELECT", "2"}).str, "OK");
  EXPECT_EQ(raw.Integer({"DBSIZE"}), 3);
  std::filesystem::remove_all(dir);
}

TEST(PrefixRedisTierTest, StoreDropsPastTheQueueBoundAndQueuesABlockOnce) {
  RedisProcess redis;
  ASSERT_EQ(redis.Start().ToString(), "ok");
  RedisTierOptions o = Options(redis.url());
  o.max_queued_bytes = 2 * (kRecordHeaderBytes + kBlockBytes);
  o.io_timeout_s = 0.3;
  auto tier = OpenTier(o);
  ASSERT_NE(tier, nullptr);
  // A stopped server holds the writer on its first block, so the queue stays full.
  ASSERT_TRUE(redis.Pause().ok());
  const auto hashes = Chain(40, 4);
  tier->Store(kIdentity, hashes[0], Payload(hashes[0], kBlockBytes));
  tier->Store(kIdentity, hashes[0], Payload(hashes[0], kBlockBytes));  // queued already: not again
  tier->Store(kIdentity, hashes[1], Payload(hashes[1], kBlockBytes));
  tier->Store(kIdentity, hashes[2], Payload(hashes[2], kBlockBytes));  // past the bound
  tier->Store(kIdentity, hashes[3], Bytes(o.max_queued_bytes));        // larger than the bound
  EXPECT_EQ(tier->Counters().dropped, 2u);
  tier->Flush();
  EXPECT_EQ(tier->Counters().dropped, 4u);  // and the two queued ones, on the timeout
  EXPECT_EQ(tier->Counters().stored, 0u);
  ASSERT_TRUE(redis.Resume().ok());
}

}  // namespace
}  // namespace tierlm::prefix
