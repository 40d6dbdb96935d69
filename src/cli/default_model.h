// The embedded default: when no model is given, stories260K (tests/models/README.md), a
// real trained model built into the binary and written once to the user's cache folder; or,
// with --synthetic, a small random-weight model of a real shape.
#pragma once

#include <string>

#include "core/status.h"

namespace tierlm::cli {

// Path of the default model, writing it first if the cache lacks it (or holds another
// file under its name). Prints a notice saying what the model is.
Result<std::string> EnsureDefaultModel(bool synthetic);

}  // namespace tierlm::cli
