// libFuzzer target: the GGUF header parser and the hyper-parameter reader must reject any
// byte string with a Status, never crash, hang or allocate without bound.
#include <cstddef>
#include <cstdint>

#include "format/byte_source.h"
#include "format/gguf_file.h"
#include "model/hparams.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tierlm::MemoryByteSource src(data, size);
  auto f = tierlm::gguf::GgufFile::Parse(src, "fuzz.gguf");
  if (!f.ok()) return 0;
  for (const auto& kv : f->metadata()) (void)kv.value.ToString();
  for (const auto& t : f->tensors()) {
    if (t.file_offset + t.size_bytes > size) __builtin_trap();  // the parser promised this
    (void)t.ShapeString();
  }
  (void)tierlm::ModelHParams::FromGguf(*f);
  (void)f->GetStringArray("tokenizer.ggml.tokens");
  (void)f->GetF32Array("tokenizer.ggml.scores");
  (void)f->GetIntArray("tokenizer.ggml.token_type");
  return 0;
}
