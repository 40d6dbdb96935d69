// The tierlm subcommands. Each takes the whole argv (argv[1] is its name) and returns the
// process exit status: 0 success, 2 any error (bad file, flag or prompt; a failed read;
// memory or threads that ran out), reported as one "error: ..." line on stderr.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "moe/routing_trace.h"

namespace tierlm::cli {

int InspectCommand(int argc, char** argv);
int RunCommand(int argc, char** argv);
int ChatCommand(int argc, char** argv);
int SynthCommand(int argc, char** argv);
int BenchCommand(int argc, char** argv);
int PlanCommand(int argc, char** argv);
int TraceCommand(int argc, char** argv);
int MoeReportCommand(int argc, char** argv);
int ServeCommand(int argc, char** argv);
int KvEvalCommand(int argc, char** argv);
int KvReportCommand(int argc, char** argv);

// Recording a routing trace (trace, moe-report -m): the options, their flags, the run.
struct TraceOptions {
  std::string model, prompt;
  std::string prompt_file;  // one prompt per line, each a sequence of its own
  int64_t n_predict = 32;
  int64_t n_ctx = 0;
  int32_t n_threads = 0;
  float temperature = 0.0f;
  uint64_t seed = 0xFFFFFFFF;
  bool seed_random = false;  // --seed -1 drew the seed
};
class ArgParser;
void AddTraceOptions(ArgParser& ap, TraceOptions& o);
// Checks the options that need no model (and prints the seed --seed -1 drew).
Status CheckTraceOptions(const TraceOptions& o);
// Gate-ahead runs during the recording; its accuracy goes to *gate_ahead when not null.
Result<RoutingTrace> RecordRoutingTrace(const TraceOptions& o, double* gate_ahead_accuracy = nullptr);

// Prints "error: <message>" to stderr and returns the exit status for an error: 2.
int ReportError(const Status& st);

}  // namespace tierlm::cli
