// How GoogleTest prints the parameters of parameterized tests: by name, not as bytes.
#pragma once

#include <ostream>

#include "kernels/cpu_features.h"

namespace tierlm {

inline void PrintTo(KernelPath p, std::ostream* os) { *os << KernelPathName(p); }

}  // namespace tierlm
