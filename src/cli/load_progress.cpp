#include "cli/load_progress.h"

#include "core/progress.h"

namespace tierlm::cli {

Result<std::unique_ptr<Engine>> LoadEngineWithProgress(const EngineOptions& options, bool quiet) {
  const ProgressOptions po = ProgressOptions::FromEnvironment(quiet);
  Progress load(po), lowbit(po);
  load.Start("load", 0, Progress::Unit::kBytes);
  lowbit.Start("lowbit cache", 0, Progress::Unit::kItems, "expert slices");
  EngineOptions o = options;
  o.load_progress = load.Reporter();
  o.lowbit_progress = lowbit.Reporter();
  auto engine = Engine::Load(o);
  // On failure the destructors close an open terminal line before the error is printed.
  if (engine.ok()) {
    load.Finish();
    lowbit.Finish();
  }
  return engine;
}

}  // namespace tierlm::cli
