// ModelContentIdentity: a 64-bit identity of a model file's content, for keys that must
// never match across models (the prefix KV cache: prefix/kv_identity.h).
//
// A path or an mtime is no identity (a file copied to another machine keeps its content
// and changes both; a file rewritten in place may keep both), and hashing every byte of a
// 40 GiB file at each start is too slow. So the identity is XXH3-64 of:
//   - the file's size and its whole header, [0, data_offset): every metadata key and value
//     (architecture, hyper-parameters, RoPE, vocabulary, chat template) and every tensor's
//     name, type, shape and offset;
//   - of each tensor's data, three 4 KiB windows (its start, middle and end) or all of it
//     when smaller.
// Two files that differ in any header byte differ; two files with the same header (same
// shapes, same vocabulary) whose weights differ anywhere but in the unsampled middle of
// every tensor — a fine-tune, another seed, another quantization — differ too. The cost is
// at most 12 KiB read per tensor (about 2.4 MiB for a 200-tensor model).
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"
#include "format/gguf_file.h"

namespace tierlm {

// IoError naming the file when it cannot be read.
Result<uint64_t> ModelContentIdentity(const gguf::GgufFile& file, const std::string& path);

}  // namespace tierlm
