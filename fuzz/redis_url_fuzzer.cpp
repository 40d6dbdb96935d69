// libFuzzer target: the Redis URL parser (prefix/redis_url.h) must answer any string with
// an endpoint or an InvalidArgument naming the URL, never crash or hang; an endpoint it
// accepts keeps its promises (a host or a socket path, a port in range, a db >= 0) and
// survives a round trip through its canonical form, and no message shows its password.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "prefix/redis_url.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tierlm::prefix;
  const std::string_view url(reinterpret_cast<const char*>(data), size);
  auto ep = ParseRedisUrl(url);
  if (!ep.ok()) {
    if (ep.status().code() != tierlm::StatusCode::kInvalidArgument) __builtin_trap();
    if (ep.status().message().find("redis URL '") != 0) __builtin_trap();
    (void)MaskRedisUrlPassword(url);
    return 0;
  }
  const RedisEndpoint& e = *ep;
  if (e.host.empty() == e.socket_path.empty()) __builtin_trap();  // exactly one of them
  if (!e.host.empty() && (e.port < 1 || e.port > 65535)) __builtin_trap();
  if (!e.socket_path.empty() && (e.socket_path[0] != '/' || e.socket_path.size() > 107)) __builtin_trap();
  if (e.db < 0) __builtin_trap();
  if (!e.user.empty() && e.password.empty()) __builtin_trap();
  for (char c : e.host)
    if (c == '/' || c == '@' || c == '[' || c == ']' || static_cast<unsigned char>(c) <= 0x20) __builtin_trap();
  const std::string canonical = FormatRedisUrl(e);
  auto again = ParseRedisUrl(canonical);
  if (!again.ok() || !(*again == e)) __builtin_trap();
  RedisEndpoint anonymous = e;  // a description cannot depend on the user or password
  anonymous.user.clear();
  anonymous.password.clear();
  if (DescribeRedisEndpoint(anonymous) != DescribeRedisEndpoint(e)) __builtin_trap();
  return 0;
}
