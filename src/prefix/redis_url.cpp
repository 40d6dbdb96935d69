#include "prefix/redis_url.h"

#include <cstdint>

namespace tierlm::prefix {
namespace {

constexpr size_t kMaxSocketPath = 107;  // sockaddr_un's sun_path, less its terminator
constexpr size_t kMaxHost = 253;        // a DNS name
constexpr int64_t kMaxDb = 999999999;   // nine digits: fits an int, far past any configured count

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
int HexValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
bool IsUnreserved(char c) { return IsAlpha(c) || IsDigit(c) || c == '-' || c == '.' || c == '_' || c == '~'; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// A failure about `url`, its password masked.
Status Bad(std::string_view url, const std::string& what) {
  return Status::InvalidArgument("redis URL '" + MaskRedisUrlPassword(url) + "': " + what);
}

// Percent-decodes a user or a password.
Result<std::string> Decode(std::string_view url, std::string_view s, const char* what) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !IsHexDigit(s[i + 1]) || !IsHexDigit(s[i + 2]))
      return Bad(url, std::string("bad percent-escape in the ") + what + " (expected %XX, XX hexadecimal)");
    out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
    i += 2;
  }
  return out;
}

std::string Encode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    if (IsUnreserved(c)) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

// Digits only, at most `max_digits` of them, within [lo, hi].
Result<int64_t> Number(std::string_view url, std::string_view s, const char* what, size_t max_digits, int64_t lo,
                       int64_t hi) {
  if (s.empty()) return Bad(url, std::string("empty ") + what);
  if (s.size() > max_digits) return Bad(url, std::string(what) + " '" + std::string(s) + "' is too long");
  int64_t v = 0;
  for (char c : s) {
    if (!IsDigit(c)) return Bad(url, std::string(what) + " '" + std::string(s) + "' is not a number");
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi)
    return Bad(url, std::string(what) + " " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "]");
  return v;
}

// "user:password" into the endpoint.
Status ParseUserInfo(std::string_view url, std::string_view info, RedisEndpoint& ep) {
  const size_t colon = info.find(':');
  if (colon == std::string_view::npos)
    return Bad(url, "the part before '@' needs a ':' before the password ([user]:password@)");
  TIERLM_ASSIGN_OR_RETURN(ep.user, Decode(url, info.substr(0, colon), "user"));
  TIERLM_ASSIGN_OR_RETURN(ep.password, Decode(url, info.substr(colon + 1), "password"));
  if (ep.password.empty() && !ep.user.empty()) return Bad(url, "user '" + ep.user + "' has an empty password");
  return Status::Ok();
}

Status ParseHostPort(std::string_view url, std::string_view hp, RedisEndpoint& ep) {
  std::string_view port;
  bool has_port = false;
  if (!hp.empty() && hp[0] == '[') {
    const size_t close = hp.find(']');
    if (close == std::string_view::npos) return Bad(url, "'[' of an IPv6 address without its ']'");
    const std::string_view addr = hp.substr(1, close - 1);
    if (addr.empty()) return Bad(url, "empty IPv6 address");
    if (addr.find(':') == std::string_view::npos) return Bad(url, "'[" + std::string(addr) + "]' is not an IPv6 address");
    for (char c : addr)
      if (!IsHexDigit(c) && c != ':' && c != '.')
        return Bad(url, "'[" + std::string(addr) + "]' is not an IPv6 address");
    ep.host = std::string(addr);
    const std::string_view rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Bad(url, "unexpected '" + std::string(rest) + "' after the IPv6 address");
      port = rest.substr(1);
      has_port = true;
    }
  } else {
    const size_t colon = hp.find(':');
    std::string_view host = hp.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = hp.substr(colon + 1);
      has_port = true;
      if (port.find(':') != std::string_view::npos) return Bad(url, "an IPv6 address needs brackets: [addr]:port");
    }
    if (host.empty()) return Bad(url, "no host");
    if (host.size() > kMaxHost) return Bad(url, "host longer than " + std::to_string(kMaxHost) + " characters");
    for (char c : host)
      if (!IsAlpha(c) && !IsDigit(c) && c != '.' && c != '-' && c != '_')
        return Bad(url, "host '" + std::string(host) + "' has a character a host name cannot have");
    ep.host = std::string(host);
  }
  if (has_port) {
    TIERLM_ASSIGN_OR_RETURN(const int64_t p, Number(url, port, "port", 5, 1, 65535));
    ep.port = static_cast<int>(p);
  }
  return Status::Ok();
}

Result<RedisEndpoint> ParseTcp(std::string_view url, std::string_view rest) {
  RedisEndpoint ep;
  if (rest.find_first_of("?#") != std::string_view::npos)
    return Bad(url, "a query or fragment ('?', '#') is not supported in redis:// (the db is the path: /N)");
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  const size_t at = authority.rfind('@');
  std::string_view hostport = authority;
  if (at != std::string_view::npos) {
    TIERLM_RETURN_IF_ERROR(ParseUserInfo(url, authority.substr(0, at), ep));
    hostport = authority.substr(at + 1);
  }
  TIERLM_RETURN_IF_ERROR(ParseHostPort(url, hostport, ep));
  if (path.size() > 1) {
    TIERLM_ASSIGN_OR_RETURN(const int64_t db, Number(url, path.substr(1), "db", 9, 0, kMaxDb));
    ep.db = static_cast<int>(db);
  }
  return ep;
}

Result<RedisEndpoint> ParseUnix(std::string_view url, std::string_view rest) {
  RedisEndpoint ep;
  if (rest.find('#') != std::string_view::npos) return Bad(url, "a fragment ('#') is not supported");
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return Bad(url, "no socket path (expected unix:///path/to/socket)");
  if (slash > 0) {
    // The user and password end with '@' right before the path; they cannot hold a raw '/'.
    if (rest[slash - 1] != '@')
      return Bad(url, "a unix:// URL has no host (expected unix:///path or unix://[user]:password@/path)");
    TIERLM_RETURN_IF_ERROR(ParseUserInfo(url, rest.substr(0, slash - 1), ep));
  }
  std::string_view path = rest.substr(slash);
  const size_t q = path.find('?');
  if (q != std::string_view::npos) {
    const std::string_view query = path.substr(q + 1);
    path = path.substr(0, q);
    if (query.substr(0, 3) != "db=")
      return Bad(url, "unknown query '" + std::string(query) + "' (the only one is ?db=N)");
    TIERLM_ASSIGN_OR_RETURN(const int64_t db, Number(url, query.substr(3), "db", 9, 0, kMaxDb));
    ep.db = static_cast<int>(db);
  }
  if (path.size() < 2) return Bad(url, "no socket path (expected unix:///path/to/socket)");
  if (path.size() > kMaxSocketPath)
    return Bad(url, "socket path longer than " + std::to_string(kMaxSocketPath) + " bytes");
  ep.socket_path = std::string(path);
  ep.port = 0;
  return ep;
}

}  // namespace

Result<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  for (char c : url) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b >= 0x7f)
      return Bad(url, "a space, control or non-ASCII byte (percent-encode it in the user or password)");
  }
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos)
    return Bad(url, "expected redis://[[user]:password@]host[:port][/db] or unix:///path/to/socket");
  const std::string scheme = Lower(url.substr(0, sep));
  const std::string_view rest = url.substr(sep + 3);
  if (scheme == "redis") return ParseTcp(url, rest);
  if (scheme == "unix") return ParseUnix(url, rest);
  if (scheme == "rediss") return Bad(url, "TLS (rediss://) is not supported");
  return Bad(url, "scheme '" + scheme + "' is not redis:// or unix://");
}

std::string FormatRedisUrl(const RedisEndpoint& ep) {
  std::string userinfo;
  if (!ep.password.empty()) userinfo = Encode(ep.user) + ":" + Encode(ep.password) + "@";
  if (!ep.socket_path.empty()) {
    std::string url = "unix://" + userinfo + ep.socket_path;
    if (ep.db != 0) url += "?db=" + std::to_string(ep.db);
    return url;
  }
  const bool v6 = ep.host.find(':') != std::string::npos;
  return "redis://" + userinfo + (v6 ? "[" + ep.host + "]" : ep.host) + ":" + std::to_string(ep.port) + "/" +
         std::to_string(ep.db);
}

std::string DescribeRedisEndpoint(const RedisEndpoint& ep) {
  if (!ep.socket_path.empty()) return "unix:" + ep.socket_path + "/" + std::to_string(ep.db);
  const bool v6 = ep.host.find(':') != std::string::npos;
  return (v6 ? "[" + ep.host + "]" : ep.host) + ":" + std::to_string(ep.port) + "/" + std::to_string(ep.db);
}

std::string MaskRedisUrlPassword(std::string_view url) {
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) return std::string(url);
  const size_t start = sep + 3;
  // The user and password end at the last '@' before the path (the first '/' after the
  // scheme, or for unix:// the '/' right after that '@').
  size_t end = url.find('/', start);
  if (end == std::string_view::npos) end = url.size();
  const size_t at = url.substr(0, end).rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  const size_t colon = url.substr(0, at).find(':', start);
  if (colon == std::string_view::npos) return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

}  // namespace tierlm::prefix
