// How GoogleTest prints the parameters of parameterized tests: by name, not as bytes.
#pragma once

#include <cctype>
#include <ostream>
#include <string>

#include "kernels/cpu_features.h"

namespace tierlm {

inline void PrintTo(KernelPath p, std::ostream* os) { *os << KernelPathName(p); }

namespace testing {
// A parameterized test's case name: letters and digits kept, anything else '_'.
inline std::string CaseName(std::string n) {
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}
}  // namespace testing

}  // namespace tierlm
