#include <cstdio>
#include <map>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/format_bytes.h"
#include "format/gguf_file.h"
#include "model/hparams.h"
#include "model/llama_model.h"

namespace tierlm::cli {


int InspectCommand(int argc, char** argv) {
  ArgParser ap("inspect");
  std::vector<std::string> files;
  bool all_tensors = false;
  ap.Positional(&files, "MODEL.gguf");
  ap.Flag({"--tensors"}, &all_tensors, "list every tensor (default: the first 40)");
  Status st = ap.Parse(argc, argv, 2);
  if (ap.help_requested()) {
    std::printf("%s", ap.Usage().c_str());
    return 0;
  }
  if (!st.ok()) return ReportError(st);
  if (files.size() != 1) return ReportError(Status::InvalidArgument("inspect: give exactly one GGUF file"));

  auto file = gguf::GgufFile::Open(files[0]);
  if (!file.ok()) return ReportError(file.status());
  const gguf::GgufFile& f = *file;

  std::printf("file:        %s\n", f.name().c_str());
  std::printf("size:        %s (%llu bytes)\n", FormatBytes(f.file_size()).c_str(),
              static_cast<unsigned long long>(f.file_size()));
  std::printf("gguf:        version %u, alignment %llu, tensor data at offset %llu\n", f.version(),
              static_cast<unsigned long long>(f.alignment()), static_cast<unsigned long long>(f.data_offset()));
  std::printf("\nmetadata (%zu keys):\n", f.metadata().size());
  for (const auto& kv : f.metadata())
    std::printf("  %-44s %s\n", kv.key.c_str(), kv.value.ToString(6).c_str());

  std::map<std::string, std::pair<uint64_t, uint64_t>> by_type;  // type -> (count, bytes)
  uint64_t total = 0;
  for (const auto& t : f.tensors()) {
    auto& e = by_type[std::string(TypeName(t.type))];
    e.first++;
    e.second += t.size_bytes;
    total += t.size_bytes;
  }
  std::printf("\ntensors (%zu, %s):\n", f.tensors().size(), FormatBytes(total).c_str());
  size_t shown = 0;
  for (const auto& t : f.tensors()) {
    if (!all_tensors && shown == 40) {
      std::printf("  ... %zu more (--tensors lists all)\n", f.tensors().size() - shown);
      break;
    }
    std::printf("  %-36s %-6s %-22s %12s\n", t.name.c_str(), std::string(TypeName(t.type)).c_str(),
                t.ShapeString().c_str(), FormatBytes(t.size_bytes).c_str());
    ++shown;
  }
  std::printf("\nbytes by type:\n");
  for (const auto& [name, e] : by_type)
    std::printf("  %-8s %5llu tensors %12s  %5.1f%%\n", name.c_str(), static_cast<unsigned long long>(e.first),
                FormatBytes(e.second).c_str(), total ? 100.0 * e.second / total : 0.0);

  // Problems: everything that would stop `tierlm run`.
  std::printf("\nproblems:\n");
  int problems = 0;
  for (const auto& t : f.tensors())
    if (!TypeTraits(t.type).supported) {
      std::printf("  tensor '%s' has type %s, which tierlm cannot compute with yet\n", t.name.c_str(),
                  std::string(TypeName(t.type)).c_str());
      ++problems;
    }
  auto hp = ModelHParams::FromGguf(f);
  if (!hp.ok()) {
    std::printf("  %s\n", hp.status().message().c_str());
    ++problems;
  } else {
    std::string experts;
    if (hp->n_expert > 0) {
      experts = ", " + std::to_string(hp->n_expert) + " experts (top " + std::to_string(hp->n_expert_used) +
                ", ffn " + std::to_string(hp->n_ff_exp) + ")";
      if (hp->n_ff_shexp > 0) experts += " + shared expert (ffn " + std::to_string(hp->n_ff_shexp) + ")";
    }
    std::printf("  (architecture %s: %lld layers, embedding %lld, %lld heads / %lld kv heads, ffn %lld%s, vocab %lld)\n",
                hp->arch_name.c_str(), static_cast<long long>(hp->n_layer), static_cast<long long>(hp->n_embd),
                static_cast<long long>(hp->n_head), static_cast<long long>(hp->n_head_kv),
                static_cast<long long>(hp->n_ff), experts.c_str(), static_cast<long long>(hp->n_vocab));
    auto model = LlamaModel::Create(f, nullptr);
    if (!model.ok()) {
      std::printf("  %s\n", model.status().message().c_str());
      ++problems;
    }
  }
  if (problems == 0) std::printf("  none: tierlm can run this model\n");
  return 0;
}

}  // namespace tierlm::cli
