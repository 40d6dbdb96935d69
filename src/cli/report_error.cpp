#include <cstdio>

#include "cli/commands.h"

namespace tierlm::cli {

// Every error exits 2, whatever its code (a bad flag or file, a failed read, memory or
// threads that ran out): scripts tell success from failure by one status.
int ReportError(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.message().c_str());
  return 2;
}

}  // namespace tierlm::cli
