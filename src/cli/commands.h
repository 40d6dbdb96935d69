// The tierlm subcommands. Each takes the whole argv (argv[1] is its name) and returns the
// process exit status: 0 success, 1 runtime failure, 2 bad input (file, flag, prompt).
#pragma once

#include "core/status.h"

namespace tierlm::cli {

int InspectCommand(int argc, char** argv);
int RunCommand(int argc, char** argv);
int ChatCommand(int argc, char** argv);
int SynthCommand(int argc, char** argv);
int BenchCommand(int argc, char** argv);
int PlanCommand(int argc, char** argv);

// Prints "error: <message>" to stderr and returns the exit status for the status code.
int ReportError(const Status& st);

}  // namespace tierlm::cli
