// tierlm kv-report: how much of the true attention each block-selection policy reads, from
// an attention trace (eval/kv_trace.h, eval/kv_report.h): recorded here from -m and --text,
// or loaded with --trace; --save-trace keeps a recording for later replays.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/load_progress.h"
#include "eval/kv_report.h"
#include "eval/kv_trace_recorder.h"
#include "eval/passkey_task.h"

namespace tierlm::cli {

int KvReportCommand(int argc, char** argv) {
  EngineOptions eo;
  std::string trace_path, save_path, text_path, budgets = "2,4,8,16";
  int64_t prefill = 2048, steps = 32, offset = 0, threads = 0;
  ArgParser ap("kv-report");
  ap.Add({"--trace"}, &trace_path, "attention trace to replay (from --save-trace); or record one with -m and --text");
  ap.Add({"-m", "--model"}, &eo.model_path, "model to record with (a trained one: tests/models/longctx.gguf)");
  ap.Add({"--text"}, &text_path, "text to record over (tests/models/longctx-heldout.txt)");
  ap.Add({"--prefill"}, &prefill, "tokens prefilled before the recorded steps (default 2048)");
  ap.Add({"--steps"}, &steps, "decode steps recorded, teacher-forced from the text (default 32)");
  ap.Add({"--offset"}, &offset, "where in the text's tokens to start (default 0)");
  ap.Add({"--save-trace"}, &save_path, "also write the recorded trace to this file");
  ap.Add({"--budgets"}, &budgets, "budget divisors D (1/D of the context), comma-separated (default 2,4,8,16)");
  ap.Add({"-c", "--ctx-size"}, &eo.n_ctx, "context size (default: the model's, at most 4096)");
  ap.Add({"-t", "--threads"}, &threads, "threads (default: all cores)");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  auto divs = ParseIntList("--budgets", budgets);
  if (!divs.ok()) return ReportError(divs.status());
  if (trace_path.empty() == eo.model_path.empty())
    return ReportError(Status::InvalidArgument("kv-report: give either --trace FILE or -m MODEL with --text FILE"));
  Result<eval::KvTrace> trace = Status::Internal("unset");
  if (!trace_path.empty()) {
    trace = eval::KvTrace::Load(trace_path);
  } else {
    if (text_path.empty()) return ReportError(Status::InvalidArgument("kv-report: -m needs --text FILE to record over"));
    if (prefill < 1 || steps < 1 || offset < 0)
      return ReportError(Status::InvalidArgument("kv-report: --prefill and --steps must be >= 1, --offset >= 0"));
    std::ifstream in(text_path, std::ios::binary);
    if (!in) return ReportError(Status::NotFound("kv-report: cannot open the text '" + text_path + "'"));
    std::stringstream text;
    text << in.rdbuf();
    NoteThreads(threads);
    eo.n_threads = static_cast<int32_t>(threads > 0 ? threads : 0);
    auto engine = LoadEngineWithProgress(eo, true);
    if (!engine.ok()) return ReportError(engine.status());
    std::vector<int32_t> toks = eval::TokenizeLines((*engine)->tokenizer(), text.str());
    if (offset + prefill + steps - 1 > static_cast<int64_t>(toks.size()))
      return ReportError(Status::InvalidArgument("kv-report: the text has " + std::to_string(toks.size()) +
                                                 " tokens, too few for --offset + --prefill + --steps"));
    std::vector<int32_t> run = {(*engine)->tokenizer().vocab().bos_id};
    run.insert(run.end(), toks.begin() + offset, toks.begin() + offset + prefill + steps - 1);
    trace = eval::RecordKvTrace(**engine, run, prefill);
    if (trace.ok() && !save_path.empty()) {
      if (Status s = trace->Save(save_path); !s.ok()) return ReportError(s);
    }
  }
  if (!trace.ok()) return ReportError(trace.status());
  auto report = eval::ReplayKvTrace(*trace, *divs);
  if (!report.ok()) return ReportError(report.status());
  std::printf("%s", report->Format().c_str());
  return 0;
}

}  // namespace tierlm::cli
