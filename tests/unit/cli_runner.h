// Runs the tierlm binary (or any command) and captures its output and exit status.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace tierlm::testing {

struct CommandResult {
  int exit_code = -1;  // -1 if it did not exit normally (crash, signal)
  std::string output;  // stdout and stderr together
};

// merge_stderr: capture stderr too; otherwise it is discarded.
inline CommandResult RunShell(const std::string& cmd, bool merge_stderr = true) {
  CommandResult r;
  FILE* p = popen((cmd + (merge_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return r;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

}  // namespace tierlm::testing
