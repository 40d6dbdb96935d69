// Recording an attention trace (eval/kv_trace.h) from a model.
#pragma once

#include <cstdint>
#include <span>

#include "core/status.h"
#include "eval/kv_trace.h"
#include "runtime/engine.h"

namespace tierlm::eval {

// Prefills tokens[0, n_prefill) exactly, then decodes the rest one token at a time
// (teacher-forced), recording every decode step. The engine's KV cache is reset before
// and after. InvalidArgument when the tokens do not fit the context or n_prefill is 0.
Result<KvTrace> RecordKvTrace(Engine& engine, std::span<const int32_t> tokens, int64_t n_prefill);

}  // namespace tierlm::eval
