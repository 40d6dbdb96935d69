// Redis URLs: where the Redis tier of the prefix cache (prefix/redis_block_tier.h) connects.
//
//   redis://[[user]:password@]host[:port][/db]       TCP; port 6379, db 0 by default
//   unix://[[user]:password@]/path/to/socket[?db=N]  a local socket
//
// host is a name, an IPv4 address or an IPv6 address in brackets ([::1]). user and password
// may carry any byte percent-encoded (%40 for '@'); a password alone authenticates as
// Redis' default user (AUTH password), a user and a password as that ACL user. Anything
// else is InvalidArgument naming the URL (its password masked) and what is wrong: another
// scheme (rediss://, TLS, is not supported), a bad port or db, a query, a control
// character. Parsing is pure: no name lookup, no connection.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace tierlm::prefix {

struct RedisEndpoint {
  std::string host;         // TCP: a name or an address (IPv6 without brackets); empty for a socket
  int port = 6379;          // TCP only
  std::string socket_path;  // unix://: the socket; empty for TCP
  std::string user;         // empty: the default user
  std::string password;     // empty: no AUTH
  int db = 0;               // SELECT db when nonzero

  bool operator==(const RedisEndpoint&) const = default;
};

Result<RedisEndpoint> ParseRedisUrl(std::string_view url);
// The canonical URL of an endpoint (user and password percent-encoded, port and db
// explicit): ParseRedisUrl gives the endpoint back.
std::string FormatRedisUrl(const RedisEndpoint& endpoint);
// The endpoint for messages and logs, never its password: "127.0.0.1:6379/0",
// "[::1]:6380/2", "unix:/run/redis.sock/0".
std::string DescribeRedisEndpoint(const RedisEndpoint& endpoint);
// `url` with whatever stands between "user:" and "@" replaced by "***", for messages
// about a URL that may not parse.
std::string MaskRedisUrlPassword(std::string_view url);

}  // namespace tierlm::prefix
