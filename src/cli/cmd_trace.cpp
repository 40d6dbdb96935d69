// tierlm trace: generate from a prompt on an MoE model and save which experts the router
// chose for every token and layer (the input of tierlm moe-report).
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "runtime/engine.h"
#include "runtime/generator.h"

namespace tierlm::cli {

void AddTraceOptions(ArgParser& ap, TraceOptions& o) {
  ap.Add({"-m", "--model"}, &o.model, "GGUF model file with experts");
  ap.Add({"-p", "--prompt"}, &o.prompt, "prompt text (may be empty: generation starts from BOS)", /*allow_empty=*/true);
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
  const std::vector<int32_t> prompt = e->tokenizer().Encode(o.prompt, /*add_special=*/true, /*parse_special=*/true);
  GenerateRequest req;
  req.prompt = prompt;
  req.n_predict = o.n_predict;
  req.sampling.temperature = o.temperature;
  req.sampling.seed = o.seed;
  req.is_eog = [&](int32_t id) { return e->tokenizer().IsEog(id); };
  req.on_token = [](int32_t) { return true; };
  MoeFfn& moe = e->model().moe_ffn();
  moe.set_trace(&trace);
  moe.set_gate_ahead(true);
  auto stats = Generate(e->model(), e->kv(), &e->pool(), req);
  moe.set_trace(nullptr);
  moe.set_gate_ahead(false);
  if (!stats.ok()) return stats.status();
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
  std::printf("%s: %lld tokens x %d layers, %d of %d experts each\n", out.c_str(),
              static_cast<long long>(trace->n_tokens()), trace->n_layer(), trace->n_used(), trace->n_expert());
  std::printf("gate-ahead: the next layer's router on this layer's input predicted %.1f%% of the experts chosen\n",
              100.0 * gate_ahead);
  return 0;
}

}  // namespace tierlm::cli
