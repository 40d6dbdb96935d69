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

  // names: e.g. {"-m", "--model"}.
  void Add(std::vector<std::string> names, std::string* out, std::string help);
  void Add(std::vector<std::string> names, int64_t* out, std::string help);
  void Add(std::vector<std::string> names, int32_t* out, std::string help);
  void Add(std::vector<std::string> names, uint64_t* out, std::string help);
  void Add(std::vector<std::string> names, float* out, std::string help);
  void Flag(std::vector<std::string> names, bool* out, std::string help);
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

// Parses "6G", "512M", "1024K", "4096" into bytes.
Result<uint64_t> ParseByteSize(const std::string& s);

}  // namespace tierlm::cli
