// Batch: the tokens of one forward pass, from any number of sequences (llama.cpp's
// llama_batch, a vLLM scheduler step): per token its id, position, sequence and whether
// its logits are wanted. Decode tokens of some sequences and prefill chunks of others go
// in the same batch; each weight matrix is then read once for all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "kv/kv_block_manager.h"

namespace tierlm {

struct Batch {
  std::vector<int32_t> token;
  std::vector<int64_t> pos;
  std::vector<kv::SeqId> seq;
  std::vector<uint8_t> logits;  // nonzero: this token's logits are returned

  void Add(int32_t t, int64_t p, kv::SeqId s, bool want_logits) {
    token.push_back(t);
    pos.push_back(p);
    seq.push_back(s);
    logits.push_back(want_logits ? 1 : 0);
  }
  int64_t size() const { return static_cast<int64_t>(token.size()); }
  int64_t n_logits() const {
    int64_t n = 0;
    for (uint8_t l : logits) n += l != 0;
    return n;
  }
  void Clear() {
    token.clear();
    pos.clear();
    seq.clear();
    logits.clear();
  }
};

}  // namespace tierlm
