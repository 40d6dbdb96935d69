#include "cli/args.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <random>

#include "core/thread_pool.h"

namespace tierlm::cli {
namespace {

Result<int64_t> ParseInt(const std::string& flag, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0')
    return Status::InvalidArgument(flag + ": expected an integer, got '" + v + "'");
  if (errno == ERANGE) return Status::InvalidArgument(flag + ": value " + v + " is out of range");
  return static_cast<int64_t>(x);
}

}  // namespace

void ArgParser::Add(std::vector<std::string> names, std::string* out, std::string help, bool allow_empty) {
  const std::string flag = names.front();
  opts_.push_back({std::move(names), true, [out, flag, allow_empty](const std::string& v) -> Status {
                     if (v.empty() && !allow_empty) return Status::InvalidArgument(flag + ": the value is empty");
                     *out = v;
                     return Status::Ok();
                   }, std::move(help)});
}

void ArgParser::AddSeed(std::vector<std::string> names, uint64_t* out, bool* random, std::string help) {
  const std::string flag = names.front();
  opts_.push_back({std::move(names), true, [out, random, flag](const std::string& v) -> Status {
                     TIERLM_ASSIGN_OR_RETURN(int64_t x, ParseInt(flag, v));
                     if (x == -1) {
                       *out = std::random_device{}();
                       *random = true;
                       return Status::Ok();
                     }
                     if (x < 0) return Status::InvalidArgument(flag + ": expected a non-negative seed or -1 (random), got " + v);
                     *out = static_cast<uint64_t>(x);
                     *random = false;
                     return Status::Ok();
                   }, std::move(help)});
}

void ArgParser::Add(std::vector<std::string> names, int64_t* out, std::string help) {
  const std::string flag = names.front();
  opts_.push_back({std::move(names), true, [out, flag](const std::string& v) -> Status {
                     TIERLM_ASSIGN_OR_RETURN(*out, ParseInt(flag, v));
                     return Status::Ok();
                   }, std::move(help)});
}

void ArgParser::Add(std::vector<std::string> names, int32_t* out, std::string help) {
  const std::string flag = names.front();
  opts_.push_back({std::move(names), true, [out, flag](const std::string& v) -> Status {
                     TIERLM_ASSIGN_OR_RETURN(int64_t x, ParseInt(flag, v));
                     if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
                       return Status::InvalidArgument(flag + ": value " + v + " is out of range");
                     *out = static_cast<int32_t>(x);
                     return Status::Ok();
                   }, std::move(help)});
}

void ArgParser::Add(std::vector<std::string> names, uint64_t* out, std::string help) {
  const std::string flag = names.front();
  opts_.push_back({std::move(names), true, [out, flag](const std::string& v) -> Status {
                     TIERLM_ASSIGN_OR_RETURN(int64_t x, ParseInt(flag, v));
                     if (x < 0) return Status::InvalidArgument(flag + ": value must not be negative");
                     *out = static_cast<uint64_t>(x);
                     return Status::Ok();
                   }, std::move(help)});
}

void ArgParser::Add(std::vector<std::string> names, float* out, std::string help) {
  const std::string flag = names.front();
  opts_.push_back({std::move(names), true, [out, flag](const std::string& v) -> Status {
                     char* end = nullptr;
                     float x = std::strtof(v.c_str(), &end);
                     if (v.empty() || *end != '\0' || !std::isfinite(x))
                       return Status::InvalidArgument(flag + ": expected a number, got '" + v + "'");
                     *out = x;
                     return Status::Ok();
                   }, std::move(help)});
}

void ArgParser::Flag(std::vector<std::string> names, bool* out, std::string help) {
  opts_.push_back({std::move(names), false, [out](const std::string&) { *out = true; return Status::Ok(); }, std::move(help)});
}

Status ArgParser::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      continue;
    }
    std::string value;
    bool has_inline = false;
    if (arg.rfind("--", 0) == 0) {
      auto eq = arg.find('=');
      if (eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline = true;
      }
    }
    const Opt* found = nullptr;
    for (const auto& o : opts_)
      for (const auto& n : o.names)
        if (n == arg) found = &o;
    if (!found) {
      if (arg.size() > 1 && arg[0] == '-' && !(arg.size() > 1 && std::isdigit(static_cast<unsigned char>(arg[1]))))
        return Status::InvalidArgument(command_ + ": unknown option '" + arg + "' (see 'tierlm " + command_ + " --help')");
      if (!positional_) return Status::InvalidArgument(command_ + ": unexpected argument '" + arg + "'");
      positional_->push_back(arg);
      continue;
    }
    if (found->takes_value) {
      if (!has_inline) {
        if (i + 1 >= argc) return Status::InvalidArgument(command_ + ": option '" + arg + "' needs a value");
        value = argv[++i];
      }
    } else if (has_inline) {
      return Status::InvalidArgument(command_ + ": option '" + arg + "' takes no value");
    }
    TIERLM_RETURN_IF_ERROR(found->set(value));
  }
  return Status::Ok();
}

std::string ArgParser::Usage() const {
  std::string out = "usage: tierlm " + command_ + (positional_ ? " [options] " + positional_name_ : " [options]") + "\n";
  for (const auto& o : opts_) {
    std::string names;
    for (const auto& n : o.names) names += (names.empty() ? "" : ", ") + n;
    if (o.takes_value) names += " N";
    out += "  " + names + std::string(names.size() < 28 ? 28 - names.size() : 1, ' ') + o.help + "\n";
  }
  return out;
}

void NoteThreads(int64_t requested) {
  const int cores = DefaultThreadCount();
  if (requested > cores && requested <= kMaxThreads)
    std::fprintf(stderr, "note: -t %lld is more threads than the %d cores this process may use: expect it to run "
                 "slower than -t %d\n", static_cast<long long>(requested), cores, cores);
}

Result<uint64_t> ParseByteSize(const std::string& s) {
  if (s.empty()) return Status::InvalidArgument("empty size (expected e.g. 6G)");
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || std::isspace(static_cast<unsigned char>(s[0])))
    return Status::InvalidArgument("size '" + s + "' is not a number (expected e.g. 6G, 512M)");
  std::string unit(end);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && (unit.substr(1) == "IB" || unit.substr(1) == "B") && unit[0] != 'B') unit.resize(1);
  double mult = 1;
  if (unit == "" || unit == "B") mult = 1;
  else if (unit == "K") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else return Status::InvalidArgument("size '" + s + "': unknown unit '" + std::string(end) + "' (use K, M, G, T)");
  if (!std::isfinite(x) || !(x >= 0)) return Status::InvalidArgument("size '" + s + "' is not a valid size");
  const double bytes = x * mult;
  if (!(bytes < 18446744073709551616.0)) return Status::InvalidArgument("size '" + s + "' is too large");
  return static_cast<uint64_t>(bytes);
}

Result<std::vector<int64_t>> ParseIntList(const std::string& flag, const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end || v < 0)
      return Status::InvalidArgument(flag + ": expected non-negative integers, comma-separated, got '" + s + "'");
    if (errno == ERANGE) return Status::InvalidArgument(flag + ": " + item + " is out of range");
    out.push_back(v);
  }
  if (out.empty() || s.back() == ',')
    return Status::InvalidArgument(flag + ": expected non-negative integers, comma-separated, got '" + s + "'");
  return out;
}

Result<std::vector<double>> ParsePositiveList(const std::string& flag, const std::string& s) {
  const Status bad = Status::InvalidArgument(flag + ": expected positive numbers, comma-separated, got '" + s + "'");
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(item.c_str(), &end);
    if (item.empty() || *end || !(v > 0) || !std::isfinite(v) || errno == ERANGE) return bad;
    out.push_back(v);
  }
  if (out.empty() || s.back() == ',') return bad;
  return out;
}

}  // namespace tierlm::cli
