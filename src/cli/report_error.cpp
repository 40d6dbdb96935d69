#include <cstdio>

#include "cli/commands.h"

namespace tierlm::cli {

int ReportError(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.message().c_str());
  switch (st.code()) {
    case StatusCode::kInternal:
    case StatusCode::kResourceExhausted:
    case StatusCode::kIoError:
      return 1;
    default:
      return 2;
  }
}

}  // namespace tierlm::cli
