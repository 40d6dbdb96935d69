#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "cli/commands.h"

namespace {

void PrintHelp() {
  std::printf(
      "tierlm: run LLMs whose weights, experts and KV cache outgrow fast memory\n"
      "\n"
      "usage: tierlm <command> [options]\n"
      "  run      generate text:        tierlm run -m model.gguf -p \"Once upon a time\" -n 128\n"
      "  chat     interactive chat:     tierlm chat -m model.gguf\n"
      "  inspect  describe a GGUF file: tierlm inspect model.gguf\n"
      "  synth    write a random-weight model of a real shape:\n"
      "                                 tierlm synth --preset tinyllama-1.1b --type q4_0 -o m.gguf\n"
      "  bench    prefill/decode speed: tierlm bench -m model.gguf -p 512 -n 128\n"
      "  plan     placement under a memory budget and predicted speed:\n"
      "                                 tierlm plan -m model.gguf --mem-budget 6G\n"
      "  trace    record MoE routing:   tierlm trace -m moe.gguf -p \"Hello\" -n 64 -o routing.trace\n"
      "  serve    OpenAI-compatible server with continuous batching:\n"
      "                                 tierlm serve -m model.gguf --port 8080 -np 4\n"
      "  moe-report  expert cache hit rates and routing consistency of a trace:\n"
      "                                 tierlm moe-report --trace routing.trace\n"
      "  kv-eval  pass-key accuracy and perplexity of the KV modes on a trained model:\n"
      "                                 tierlm kv-eval -m tests/models/longctx.gguf --text tests/models/longctx-heldout.txt "
      "--modes exact,quest/8\n"
      "  kv-report  recall of the true attention per block-selection policy, from an attention trace:\n"
      "                                 tierlm kv-report -m tests/models/longctx.gguf --text tests/models/longctx-heldout.txt\n"
      "\n"
      "'tierlm <command> --help' lists a command's options.\n");
}

}  // namespace

static int Dispatch(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "help")) {
    PrintHelp();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "run") return tierlm::cli::RunCommand(argc, argv);
  if (cmd == "chat") return tierlm::cli::ChatCommand(argc, argv);
  if (cmd == "inspect") return tierlm::cli::InspectCommand(argc, argv);
  if (cmd == "synth") return tierlm::cli::SynthCommand(argc, argv);
  if (cmd == "bench") return tierlm::cli::BenchCommand(argc, argv);
  if (cmd == "plan") return tierlm::cli::PlanCommand(argc, argv);
  if (cmd == "trace") return tierlm::cli::TraceCommand(argc, argv);
  if (cmd == "moe-report") return tierlm::cli::MoeReportCommand(argc, argv);
  if (cmd == "serve") return tierlm::cli::ServeCommand(argc, argv);
  if (cmd == "kv-eval") return tierlm::cli::KvEvalCommand(argc, argv);
  if (cmd == "kv-report") return tierlm::cli::KvReportCommand(argc, argv);
  std::fprintf(stderr, "error: unknown command '%s' (try 'tierlm --help')\n", cmd.c_str());
  return 2;
}

// Commands report errors as Status values; an exception reaching here (memory that ran
// out in the middle of a command, a thread the OS refused) still ends with one error line
// and status 2, never std::terminate's abort.
int main(int argc, char** argv) {
  try {
    return Dispatch(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "error: unexpected failure\n");
  }
  return 2;
}
