// The CLI's progress lines for loading an engine (core/progress.h).
#pragma once

#include <memory>

#include "core/status.h"
#include "runtime/engine.h"

namespace tierlm::cli {

// Engine::Load(options) with progress lines on stderr (none with quiet, none for a load
// under a second): "load: ..." while the weights are read into memory, "lowbit cache:
// ..." while the low-bit expert cache is built.
Result<std::unique_ptr<Engine>> LoadEngineWithProgress(const EngineOptions& options, bool quiet);

}  // namespace tierlm::cli
