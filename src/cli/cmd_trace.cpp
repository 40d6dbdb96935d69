// tierlm trace: generate from a prompt on an MoE model and save which experts the router
// chose for every token and layer (the input of tierlm moe-report).
#include <cstdio>
#include <fstream>

#include "cli/args.h"
#include "cli/commands.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

namespace tierlm::cli {

void AddTraceOptions(ArgParser& ap, TraceOptions& o) {
  ap.Add({"-m", "--model"}, &o.model, "GGUF model file with experts");
  ap.Add({"-p", "--prompt"}, &o.prompt, "prompt text (may be empty: generation starts from BOS)", /*allow_empty=*/true);
  ap.Add({"-f", "--prompt-file"}, &o.prompt_file,
         "file of prompts, one per line (empty lines skipped): each runs in a fresh context and is a "
         "sequence of its own in the trace");
  ap.Add({"-n", "--n-predict"}, &o.n_predict,
         "tokens to generate after the prompt; < 0: until end of generation or full context (default 32)");
  ap.Add({"-c", "--ctx-size"}, &o.n_ctx, "context size in tokens; 0: the model's, at most 4096 (default 0)");
  ap.Add({"-t", "--threads"}, &o.n_threads, "compute threads, at most 1024 (default and <= 0: all cores)");
  ap.Add({"--temp"}, &o.temperature, "temperature; <= 0 is greedy (argmax) (default 0)");
  ap.AddSeed({"-s", "--seed"}, &o.seed, &o.seed_random, "random seed; -1 draws one and prints it (default 4294967295)");
}

Status CheckTraceOptions(const TraceOptions& o) {
  TIERLM_RETURN_IF_ERROR(ResolveThreadCount(o.n_threads).status());
  NoteThreads(o.n_threads);
  if (!o.prompt_file.empty() && !o.prompt.empty())
    return Status::InvalidArgument("give either -p PROMPT or -f PROMPT_FILE, not both");
  if (o.seed_random)
    std::fprintf(stderr, "seed: %llu (drawn for --seed -1)\n", static_cast<unsigned long long>(o.seed));
  return Status::Ok();
}

Result<RoutingTrace> RecordRoutingTrace(const TraceOptions& o, double* gate_ahead_accuracy) {
  if (o.model.empty()) return Status::InvalidArgument("-m MODEL.gguf is required");
  EngineOptions eo;
  eo.model_path = o.model;
  eo.n_ctx = o.n_ctx;
  eo.n_threads = o.n_threads;
  TIERLM_ASSIGN_OR_RETURN(std::unique_ptr<Engine> e, Engine::Load(eo));
  const ModelHParams& hp = e->model().hparams();
  if (hp.n_expert <= 0)
    return Status::InvalidArgument(o.model + ": the model has no experts (not a Mixture-of-Experts model)");
  RoutingTrace trace(static_cast<int32_t>(hp.n_layer), static_cast<int32_t>(hp.n_expert),
                     static_cast<int32_t>(hp.n_expert_used));
  std::vector<std::string> prompts = {o.prompt};
  if (!o.prompt_file.empty()) {
    std::ifstream in(o.prompt_file);
    if (!in) return Status::IoError(o.prompt_file + ": cannot open the prompt file");
    prompts.clear();
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) prompts.push_back(line);
    if (in.bad()) return Status::IoError(o.prompt_file + ": read failed");
    if (prompts.empty()) return Status::InvalidArgument(o.prompt_file + ": no prompts (every line is empty)");
  }
  MoeFfn& moe = e->model().moe_ffn();
  moe.set_trace(&trace);
  moe.set_gate_ahead(true);
  Status st;
  for (size_t i = 0; i < prompts.size() && st.ok(); ++i) {
    const std::vector<int32_t> prompt =
        e->tokenizer().Encode(prompts[i], /*add_special=*/true, /*parse_special=*/true);
    GenerateRequest req;
    req.prompt = prompt;
    req.n_predict = o.n_predict;
    req.sampling.temperature = o.temperature;
    req.sampling.seed = o.seed;
    req.is_eog = [&](int32_t id) { return e->tokenizer().IsEog(id); };
    req.on_token = [](int32_t) { return true; };
    e->kv().set_n_past(0);  // a fresh context per prompt
    st = trace.BeginSequence();
    if (st.ok()) {
      auto stats = Generate(e->model(), e->kv(), &e->pool(), req);
      if (!stats.ok())
        st = prompts.size() > 1 ? stats.status().WithContext(o.prompt_file + ": prompt " + std::to_string(i + 1))
                                : stats.status();
    }
  }
  moe.set_trace(nullptr);
  moe.set_gate_ahead(false);
  if (!st.ok()) return st;
  if (gate_ahead_accuracy) *gate_ahead_accuracy = moe.gate_ahead_stats().accuracy();
  return trace;
}

int TraceCommand(int argc, char** argv) {
  TraceOptions o;
  std::string out;
  ArgParser ap("trace");
  AddTraceOptions(ap, o);
  ap.Add({"-o", "--output"}, &out, "routing trace file to write");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (Status c = CheckTraceOptions(o); !c.ok()) return ReportError(c);
  if (out.empty()) return ReportError(Status::InvalidArgument("trace: -o FILE is required"));
  double gate_ahead = 0;
  auto trace = RecordRoutingTrace(o, &gate_ahead);
  if (!trace.ok()) return ReportError(trace.status().WithContext("trace"));
  if (Status s = trace->Save(out); !s.ok()) return ReportError(s);
  std::printf("%s: %lld tokens in %zu sequence(s) x %d layers, %d of %d experts each\n", out.c_str(),
              static_cast<long long>(trace->n_tokens()), trace->sequences().size(), trace->n_layer(), trace->n_used(),
              trace->n_expert());
  std::printf("gate-ahead: the next layer's router on this layer's input predicted %.1f%% of the experts chosen\n",
              100.0 * gate_ahead);
  return 0;
}

}  // namespace tierlm::cli
