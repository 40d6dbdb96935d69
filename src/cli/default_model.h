// The embedded default: when no model is given, a small synthetic model written once to
// the user's cache folder.
#pragma once

#include <string>

#include "core/status.h"

namespace tierlm::cli {

// Path of the default model, writing it first if the cache has none. Prints a notice
// that its weights are random.
Result<std::string> EnsureDefaultModel();

}  // namespace tierlm::cli
