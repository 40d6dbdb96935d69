// Scheduler: continuous batching over one model and one paged KV cache.
//
// Requests arrive from HTTP threads (Submit) and wait in a queue; one compute thread runs
// steps. Each step it drops cancelled and timed-out requests (their KV blocks return at
// once), admits queued requests in arrival order while their KV blocks fit (admission by
// blocks: a request that would not fit now waits, Admit::kLater; one that never fits is
// refused, kImpossible), then builds one Batch: a decode token for every running choice,
// and prefill chunks of admitted prompts in the token budget that is left, so that a long
// prompt never stalls the others' streams. After the forward pass each choice with logits
// samples its next token, and its text (detokenized, stop strings held back and cut)
// goes to the request's RequestStream.
//
// A request with n > 1 choices prefills its prompt once; the other choices then Fork the
// prompt's KV blocks (copy on write) and sample from the same logits.
//
// Admission, by default, reserves up front the blocks a request could need in the worst
// case (prompt plus max tokens, at most the context, per choice; forked choices share the
// prompt's full blocks), so a running request never runs out of KV and nothing is
// preempted: each request has its slot's n_ctx positions, as llama-server's slots do.
//
// Unified KV (SchedulerOptions::unified, serve --kv-unified): one pool of blocks for every
// sequence, each request may grow to the whole cache (n_ctx = all positions), and a request
// is admitted when its prompt fits in the blocks free now. Each step plans first what every
// running request adds (oldest first: decode tokens, then prefill chunks in the step's
// token budget) and reserves its room; when the blocks run out the newest running request
// is preempted (vLLM's rule): its blocks are freed (published to the prefix cache when
// there is one, so that they may come back without recomputing) and it goes back to the
// head of the queue with its sampler, detokenizer and stop state kept. Re-admitted, each of
// its choices recomputes its tokens so far (prompt and generated, as a prefill without
// logits) and continues from its pending token: the tokens are those of a run that was
// never preempted (prefill and decode give the same keys and values, bit for bit). An older
// request's prefill takes the blocks that are free first, and preempts a newer request only
// when none is. A request is preempted only if it could be re-admitted (its choices' tokens
// fit in the cache without sharing).
//
// Prefix reuse (prefix/prefix_cache.h, when the caller gives one): at admission a request's
// primary sequence starts from the longest cached prefix of its prompt (blocks still in
// memory, else on disk, else in Redis), and only the rest is prefilled; after every
// forward pass the sequences' newly computed full blocks are published to the lower
// tiers. The number of reused prompt tokens is reported (usage's cached_tokens).
//
// The KV cache is the caller's (the engine's: its budget accounts for it); the scheduler
// uses sequences 1 and up, so sequence 0 (KvCache::kSeq) stays the engine's.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "core/thread_pool.h"
#include "kv/paged_kv_cache.h"
#include "model/llama_model.h"
#include "prefix/prefix_cache.h"
#include "runtime/sampler.h"
#include "server/metrics.h"
#include "server/request_stream.h"
#include "tokenizer/tokenizer.h"

namespace tierlm::server {

struct SchedulerOptions {
  int32_t n_slots = 4;         // sequences (choices) running at once
  int64_t n_ctx = 2048;        // positions per sequence
  int64_t step_tokens = 512;   // tokens per forward pass (decode first, then prefill chunks)
  size_t max_queue = 256;      // requests waiting; Submit refuses more (HTTP 503)
  // One pool of KV blocks, admission by what is free now, preemption when it runs out (see
  // the class comment). n_ctx is then the most positions one request may hold.
  bool unified = false;
  // Bounded KV (serve --kv-evict, kv/kv_evictor.h): the model evicts each sequence's blocks
  // after every forward pass down to the bound, so a request holds at most this many
  // positions' blocks (KvPositionsFor: the bound plus one prompt chunk) however long it
  // runs; its prompt goes in chunks of exactly evict_chunk tokens from position 0, as
  // `tierlm run` feeds it, so that the same positions are observed and the same blocks
  // evicted. 0: no bound.
  int64_t evict_positions = 0;
  int64_t evict_chunk = 0;
};

// One generation: a tokenized prompt and how to continue it.
struct GenerationJob {
  std::vector<int32_t> prompt;
  int32_t n = 1;               // choices
  int64_t max_tokens = -1;     // < 0: until end of generation or a full context
  SamplerParams sampling;      // choice i uses seed + i
  std::vector<std::string> stop;
  int32_t top_logprobs = -1;   // < 0: no logprobs; else this many alternatives per token
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::string cache_salt;      // isolates a tenant's cached prefixes (vLLM's cache_salt)
};

class Scheduler {
 public:
  // The model, tokenizer, pool and cache must outlive the scheduler; metrics may be null.
  // InvalidArgument when the cache cannot hold n_slots sequences of n_ctx positions.
  static Result<std::unique_ptr<Scheduler>> Create(LlamaModel& model, const tokenizer::Tokenizer& tok,
                                                   ThreadPool* pool, kv::PagedKvCache& cache,
                                                   const SchedulerOptions& options, Metrics* metrics,
                                                   prefix::PrefixCache* prefix = nullptr);
  ~Scheduler();  // Shutdown()

  // Stops the compute thread (after its current step) and ends every unfinished request
  // with an error event (503); Submit refuses from then on. Any thread; idempotent.
  void Shutdown();

  // Queues a job. InvalidArgument (HTTP 400) for a job that can never run (empty prompt,
  // prompt longer than the context, more choices than slots); ResourceExhausted (HTTP 503)
  // when the queue is full.
  Result<std::shared_ptr<RequestStream>> Submit(GenerationJob job);

  const SchedulerOptions& options() const { return o_; }
  // Requests running and queued, KV blocks held by sequences and in all, as of the last
  // step (the compute thread publishes them).
  MetricsSnapshot Snapshot() const;

 private:
  struct Choice;
  struct Active;
  struct Piece;
  Scheduler(LlamaModel& model, const tokenizer::Tokenizer& tok, ThreadPool* pool, kv::PagedKvCache& cache,
            const SchedulerOptions& o, Metrics* metrics, prefix::PrefixCache* prefix);
  // Frees a sequence's blocks (after publishing its last ones).
  void FreeSeq(kv::SeqId seq);
  kv::SeqId NextSeq();
  // Worst-case blocks of a job (see the class comment).
  int64_t BlocksNeeded(const GenerationJob& job) const;
  void Loop();
  // One step over the running set; false when there was nothing to do.
  bool Step();
  void Admit();
  // Room for n more positions of seq (of request a), preempting running requests that
  // arrived after a while there is none; false when none is left to preempt (or a failed:
  // a copy on write's I/O error finishes it). Preempted requests leave `plan`.
  bool Room(Active& a, kv::SeqId seq, int64_t n, std::vector<Piece>& plan);
  // The newest running request that arrived after `a` and could be re-admitted; null if none.
  Active* Victim(const Active& a);
  // Whether a could be re-admitted after a preemption: its choices' tokens fit unshared.
  bool Preemptible(const Active& a) const;
  // Frees v's blocks and marks it for the queue's head (see the class comment).
  void Preempt(Active& v, std::vector<Piece>& plan);
  // Blocks to re-admit a preempted request, or to admit a fresh one in unified mode.
  int64_t BlocksToAdmit(const Active& a) const;
  void Finish(Active& a, int http_status, const std::string& error);
  void FinishChoice(Active& a, Choice& c, FinishReason reason);
  void SampleChoice(Active& a, Choice& c, const float* logits);
  int64_t BlocksFor(int64_t positions) const;
  void PublishGauges();

  LlamaModel& model_;
  const tokenizer::Tokenizer& tok_;
  ThreadPool* pool_;
  SchedulerOptions o_;
  Metrics* metrics_;
  kv::PagedKvCache* cache_;
  prefix::PrefixCache* prefix_;
  double prefill_tps_ = 0;  // measured prompt tokens per second (a moving average)
  int64_t committed_blocks_ = 0;  // worst-case blocks of the admitted requests
  int64_t preemptions_ = 0;
  std::atomic<int64_t> steps_{0};  // forward passes run (Submit reads it)
  kv::SeqId next_seq_ = 1;

  // Shared with Submit (HTTP threads).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Active>> queue_;
  bool stop_ = false;
  MetricsSnapshot published_;  // under mu_

  // Compute thread only.
  std::vector<std::unique_ptr<Active>> running_;
  std::vector<float> logits_;
  std::thread thread_;
  std::mutex shutdown_mu_;  // one Shutdown at a time
};

}  // namespace tierlm::server
