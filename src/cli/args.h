// A small command-line flag parser: llama.cpp-style short and long flags bound to variables.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tierlm::cli {

class ArgParser {
 public:
  explicit ArgParser(std::string command) : command_(std::move(command)) {}

  // names: e.g. {"-m", "--model"}. A string option refuses an empty value ('-m ""')
  // unless allow_empty: an empty path or name is a mistake, not "the default".
  void Add(std::vector<std::string> names, std::string* out, std::string help, bool allow_empty = false);
  void Add(std::vector<std::string> names, int64_t* out, std::string help);
  void Add(std::vector<std::string> names, int32_t* out, std::string help);
  void Add(std::vector<std::string> names, uint64_t* out, std::string help);
  void Add(std::vector<std::string> names, float* out, std::string help);
  void Flag(std::vector<std::string> names, bool* out, std::string help);
  // A seed: a non-negative integer, or -1 (llama.cpp's "random"): then a seed is drawn
  // from std::random_device into *out and *random is set, so the command can print it.
  void AddSeed(std::vector<std::string> names, uint64_t* out, bool* random, std::string help);
  // Positional arguments are collected here if set; otherwise they are an error.
  void Positional(std::vector<std::string>* out, std::string name) { positional_ = out; positional_name_ = std::move(name); }

  // Parses argv[first..argc). InvalidArgument names the offending flag.
  Status Parse(int argc, char** argv, int first);
  std::string Usage() const;
  bool help_requested() const { return help_; }

 private:
  struct Opt {
    std::vector<std::string> names;
    bool takes_value;
    std::function<Status(const std::string&)> set;
    std::string help;
  };
  std::string command_;
  std::vector<Opt> opts_;
  std::vector<std::string>* positional_ = nullptr;
  std::string positional_name_;
  bool help_ = false;
};

// -t above the cores this process may use (but within kMaxThreads) runs, slower: says so
// on stderr.
void NoteThreads(int64_t requested);

// Parses "6G", "512M", "1.5g", "1024K", "4096" into bytes: units K, M, G, T (powers of
// 1024, either case, optionally followed by "iB" or "B"). Empty, negative, not a number,
// or 2^64 bytes and above is InvalidArgument.
Result<uint64_t> ParseByteSize(const std::string& s);

// "512,1024,4096": non-negative integers, comma-separated; InvalidArgument naming `flag`.
Result<std::vector<int64_t>> ParseIntList(const std::string& flag, const std::string& s);

// "1,2,0.5": finite numbers above 0, comma-separated; InvalidArgument naming `flag`.
Result<std::vector<double>> ParsePositiveList(const std::string& flag, const std::string& s);

}  // namespace tierlm::cli
