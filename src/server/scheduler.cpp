#include "server/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "server/stop_matcher.h"
#include "tokenizer/detokenizer.h"

namespace tierlm::server {

using Clock = std::chrono::steady_clock;

struct Scheduler::Choice {
  int32_t index = 0;
  kv::SeqId seq = -1;
  Sampler sampler;
  tokenizer::Detokenizer detok;
  StopMatcher stop;
  int64_t n_generated = 0;
  int32_t pending = -1;  // sampled, to be fed at the next step
  bool done = false;
  std::vector<int32_t> fed;     // generated tokens in the KV cache (pending not yet)
  std::vector<int32_t> resume;  // after a preemption: prompt + fed, to recompute first
  int64_t n_resumed = 0;        // of resume, in the cache
  Clock::time_point last_token;

  Choice(const SamplerParams& p, const tokenizer::Tokenizer& tok, tokenizer::Detokenizer::Options d,
         std::vector<std::string> stops)
      : sampler(p), detok(tok, d), stop(std::move(stops)) {}
};

struct Scheduler::Active {
  std::shared_ptr<RequestStream> stream;
  GenerationJob job;
  Clock::time_point arrived;
  int64_t submitted_step = 0, admitted_step = -1;  // Scheduler::steps_ then
  int64_t n_prefilled = 0;   // prompt tokens added to the primary sequence
  bool prefilled = false;    // the prompt's logits have been sampled
  bool first_token_seen = false;
  int64_t committed = 0;     // blocks reserved at admission
  int64_t cached_tokens = 0; // prompt tokens reused from the prefix cache
  std::vector<std::unique_ptr<Choice>> choices;
  bool finished = false;
  bool resuming = false;       // preempted after its prompt: its choices recompute `resume`
  bool preempted_now = false;  // preempted during this step's planning: back to the queue
};

// What one sequence adds in this step: `len` tokens from `tokens`, planned (room reserved)
// before the batch is built.
struct Scheduler::Piece {
  enum class Kind { kDecode, kPrompt, kResume };
  Active* a;
  Choice* c;  // the choice (kPrompt: the primary one)
  kv::SeqId seq;
  Kind kind;
  const int32_t* tokens;
  int64_t len;
};

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
      break;
  }
  return "";
}

Result<std::unique_ptr<Scheduler>> Scheduler::Create(LlamaModel& model, const tokenizer::Tokenizer& tok,
                                                     ThreadPool* pool, kv::PagedKvCache& cache,
                                                     const SchedulerOptions& o, Metrics* metrics,
                                                     prefix::PrefixCache* prefix) {
  if (o.n_slots <= 0) return Status::InvalidArgument("server: the number of slots (-np) must be positive");
  if (o.n_ctx <= 0) return Status::InvalidArgument("server: the context per slot must be positive");
  if (o.step_tokens <= 0) return Status::InvalidArgument("server: the tokens per step must be positive");
  std::unique_ptr<Scheduler> s(new Scheduler(model, tok, pool, cache, o, metrics, prefix));
  if ((o.evict_positions > 0) != (o.evict_chunk > 0))
    return Status::InvalidArgument("server: a KV bound needs both its positions and its prompt chunk");
  if (o.evict_positions > 0 && o.unified)
    return Status::InvalidArgument("--kv-evict and --kv-unified do not combine: choose one");
  const int64_t per_seq = s->BlocksFor(o.evict_positions > 0 ? std::min(o.n_ctx, o.evict_positions) : o.n_ctx);
  const int64_t need = (o.unified ? 1 : static_cast<int64_t>(o.n_slots)) * per_seq;
  if (need > cache.blocks().n_blocks())
    return Status::InvalidArgument("server: " + std::to_string(o.n_slots) + " slots of " + std::to_string(o.n_ctx) +
                                   " positions need " + std::to_string(need) + " KV blocks but the cache has " +
                                   std::to_string(cache.blocks().n_blocks()));
  s->published_.kv_blocks_total = cache.blocks().n_blocks();
  s->PublishGauges();
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

Scheduler::Scheduler(LlamaModel& model, const tokenizer::Tokenizer& tok, ThreadPool* pool, kv::PagedKvCache& cache,
                     const SchedulerOptions& o, Metrics* metrics, prefix::PrefixCache* prefix)
    : model_(model), tok_(tok), pool_(pool), o_(o), metrics_(metrics), cache_(&cache), prefix_(prefix) {}

void Scheduler::FreeSeq(kv::SeqId seq) {
  if (prefix_) {
    prefix_->Publish(*cache_, seq);
    prefix_->Forget(seq);
  }
  cache_->Free(seq);
}

kv::SeqId Scheduler::NextSeq() {
  const kv::SeqId id = next_seq_;
  next_seq_ = next_seq_ == std::numeric_limits<kv::SeqId>::max() ? 1 : next_seq_ + 1;
  return id;
}

int64_t Scheduler::BlocksNeeded(const GenerationJob& job) const {
  const int64_t n_prompt = static_cast<int64_t>(job.prompt.size());
  const int64_t max_new = job.max_tokens >= 0 ? job.max_tokens : o_.n_ctx;
  const int64_t positions = std::min(n_prompt + max_new, o_.n_ctx);
  if (o_.evict_positions > 0) return BlocksFor(std::min(positions, o_.evict_positions));  // n is 1 (Submit)
  if (job.n <= 1) return BlocksFor(positions);
  // The prompt's full blocks are shared; each choice has the rest (its copy of the prompt's
  // partly filled last block included).
  const int64_t shared = n_prompt / cache_->blocks().block_size();
  return shared + job.n * (BlocksFor(positions) - shared);
}

Scheduler::~Scheduler() { Shutdown(); }

void Scheduler::Shutdown() {
  std::lock_guard<std::mutex> once(shutdown_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::deque<std::unique_ptr<Active>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queue_);
  }
  for (auto& a : running_) Finish(*a, 503, "the server is shutting down");
  for (auto& a : queued) Finish(*a, 503, "the server is shutting down");
  running_.clear();
  PublishGauges();
}

int64_t Scheduler::BlocksFor(int64_t positions) const {
  const int64_t bs = cache_->blocks().block_size();
  return (positions + bs - 1) / bs;
}

MetricsSnapshot Scheduler::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

void Scheduler::PublishGauges() {
  MetricsSnapshot s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    published_.requests_running = static_cast<int64_t>(running_.size());
    published_.requests_queued = static_cast<int64_t>(queue_.size());
    published_.kv_blocks_used = cache_->blocks().n_blocks() - cache_->blocks().n_free();
    published_.requests_preempted = preemptions_;
    s = published_;
  }
  if (metrics_) metrics_->SetGauges(s);
}

Result<std::shared_ptr<RequestStream>> Scheduler::Submit(GenerationJob job) {
  const int64_t n_prompt = static_cast<int64_t>(job.prompt.size());
  if (n_prompt == 0) return Status::InvalidArgument("the prompt is empty: nothing to continue from");
  if (n_prompt > o_.n_ctx)
    return Status::OutOfRange("the prompt has " + std::to_string(n_prompt) + " tokens but the context holds " +
                              std::to_string(o_.n_ctx) + " (-c): shorten the prompt");
  if (job.n <= 0 || job.n > o_.n_slots)
    return Status::InvalidArgument("n is " + std::to_string(job.n) + " but the server runs at most " +
                                   std::to_string(o_.n_slots) + " sequences at once (-np)");
  if (job.n > 1 && o_.evict_positions > 0)
    return Status::InvalidArgument("n is " + std::to_string(job.n) +
                                   " but with --kv-evict each choice would evict on its own from the shared prompt; "
                                   "ask for one choice per request");
  const int32_t n_vocab = static_cast<int32_t>(model_.hparams().n_vocab);
  for (int32_t t : job.prompt)
    if (t < 0 || t >= n_vocab)
      return Status::InvalidArgument("prompt token " + std::to_string(t) + " is not in the vocabulary (0.." +
                                     std::to_string(n_vocab - 1) + ")");
  for (const auto& [id, bias] : job.sampling.logit_bias)
    if (id < 0 || id >= n_vocab)
      return Status::InvalidArgument("logit_bias: token " + std::to_string(id) + " is not in the vocabulary");
  auto a = std::make_unique<Active>();
  a->stream = std::make_shared<RequestStream>();
  a->arrived = Clock::now();
  a->submitted_step = steps_.load();
  tokenizer::Detokenizer::Options d;
  d.strip_leading_space = false;  // the text continues the prompt (as `tierlm run` prints it)
  for (int32_t i = 0; i < job.n; ++i) {
    SamplerParams p = job.sampling;
    p.seed = job.sampling.seed + static_cast<uint64_t>(i);
    auto c = std::make_unique<Choice>(p, tok_, d, job.stop);
    c->index = i;
    for (int32_t t : job.prompt) c->sampler.Accept(t);
    a->choices.push_back(std::move(c));
  }
  a->job = std::move(job);
  std::shared_ptr<RequestStream> stream = a->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return Status::ResourceExhausted("the server is shutting down");
    if (queue_.size() >= o_.max_queue)
      return Status::ResourceExhausted("the server is busy: " + std::to_string(queue_.size()) +
                                       " requests are already waiting; try again later");
    queue_.push_back(std::move(a));
    published_.requests_queued = static_cast<int64_t>(queue_.size());
  }
  cv_.notify_all();
  return stream;
}

void Scheduler::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !running_.empty(); });
      if (stop_) return;
    }
    Step();
    PublishGauges();
  }
}

void Scheduler::Finish(Active& a, int http_status, const std::string& error) {
  if (a.finished) return;
  a.finished = true;
  for (auto& c : a.choices)
    if (c->seq >= 0) {
      FreeSeq(c->seq);
      c->seq = -1;
    }
  committed_blocks_ -= a.committed;
  a.committed = 0;
  StreamEvent e;
  if (http_status == 0) {
    e.kind = StreamEvent::Kind::kDone;
    e.prompt_tokens = static_cast<int64_t>(a.job.prompt.size());
    e.cached_tokens = a.cached_tokens;
    const int64_t now = steps_.load(), admitted = a.admitted_step >= 0 ? a.admitted_step : now;
    e.steps_waiting = admitted - a.submitted_step;
    e.steps_running = now - admitted;
    for (auto& c : a.choices) e.completion_tokens += c->n_generated;
  } else {
    e.kind = StreamEvent::Kind::kError;
    e.http_status = http_status;
    e.error = error;
  }
  if (metrics_) metrics_->CountRequestFinished(http_status == 0);
  a.stream->Push(std::move(e));
}

void Scheduler::FinishChoice(Active& a, Choice& c, FinishReason reason) {
  StreamEvent d;
  d.choice = c.index;
  d.text = c.stop.Push(c.detok.Flush());
  d.text += c.stop.Flush();
  if (!d.text.empty()) a.stream->Push(std::move(d));
  c.done = true;
  c.pending = -1;
  if (c.seq >= 0) {
    FreeSeq(c.seq);
    c.seq = -1;
  }
  StreamEvent f;
  f.kind = StreamEvent::Kind::kFinish;
  f.choice = c.index;
  f.finish = reason;
  a.stream->Push(std::move(f));
}

namespace {

// log-softmax of logits at `token`, and the top k alternatives (highest first, lowest id on ties).
TokenLogprob Logprobs(const float* logits, int64_t n_vocab, int32_t token, int32_t k) {
  float mx = logits[0];
  for (int64_t i = 1; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  TokenLogprob lp;
  lp.token = token;
  lp.logprob = static_cast<float>(logits[token] - lse);
  if (k > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
    std::iota(ids.begin(), ids.end(), 0);
    const size_t kk = std::min<size_t>(static_cast<size_t>(k), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kk), ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (size_t i = 0; i < kk; ++i) lp.top.push_back({ids[i], static_cast<float>(logits[ids[i]] - lse)});
  }
  return lp;
}

}  // namespace

void Scheduler::SampleChoice(Active& a, Choice& c, const float* logits) {
  const int64_t n_vocab = model_.hparams().n_vocab;
  const int32_t tok = c.sampler.Sample(std::span<const float>(logits, static_cast<size_t>(n_vocab)));
  c.sampler.Accept(tok);
  ++c.n_generated;
  const auto now = Clock::now();
  if (metrics_) {
    metrics_->AddGeneratedTokens(1);
    if (!a.first_token_seen) metrics_->ObserveTtft(std::chrono::duration<double>(now - a.arrived).count());
    else if (c.n_generated > 1) metrics_->ObserveInterToken(std::chrono::duration<double>(now - c.last_token).count());
  }
  a.first_token_seen = true;
  c.last_token = now;

  StreamEvent d;
  d.choice = c.index;
  if (a.job.top_logprobs >= 0) d.logprobs.push_back(Logprobs(logits, n_vocab, tok, a.job.top_logprobs));
  const bool eog = tok_.IsEog(tok);
  if (!eog) d.text = c.stop.Push(c.detok.Push(tok));
  const bool stopped = c.stop.matched();
  if (!d.text.empty() || !d.logprobs.empty()) a.stream->Push(std::move(d));
  if (eog || stopped) return FinishChoice(a, c, FinishReason::kStop);
  if (a.job.max_tokens >= 0 && c.n_generated >= a.job.max_tokens) return FinishChoice(a, c, FinishReason::kLength);
  if (cache_->blocks().Length(c.seq) >= o_.n_ctx) return FinishChoice(a, c, FinishReason::kLength);
  c.pending = tok;
}

void Scheduler::Admit() {
  const int64_t total = cache_->blocks().n_blocks();
  int32_t running_seqs = 0;
  for (auto& a : running_) running_seqs += a->job.n;
  // Waiting requests whose client left or whose time is up leave the queue wherever they are.
  std::vector<std::unique_ptr<Active>> dropped;
  {
    const auto now = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->stream->cancelled() || now >= (*it)->job.deadline) {
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& a : dropped) {
    if (a->stream->cancelled()) Finish(*a, 499, "cancelled");
    else Finish(*a, 504, "the request timed out while waiting for a slot");
  }
  // Admission by blocks, in arrival order (so that a large request is not starved by small
  // ones): the head waits (Admit::kLater) while the running requests hold what it needs.
  // Unified KV: what the head needs now must be free (less what this call admitted before).
  int64_t promised = 0;
  while (true) {
    std::unique_ptr<Active> a;
    int64_t need = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
      Active& head = *queue_.front();
      need = o_.unified ? BlocksToAdmit(head) : BlocksNeeded(head.job);
      const bool fits = o_.unified ? promised + need <= cache_->blocks().n_free() : committed_blocks_ + need <= total;
      if (need <= total && (!fits || running_seqs + head.job.n > o_.n_slots)) return;
      a = std::move(queue_.front());
      queue_.pop_front();
    }
    if (need > total) {  // Admit::kImpossible
      Finish(*a, 400, "the request needs " + std::to_string(need) + " KV blocks but the cache has " +
                          std::to_string(total));
      continue;
    }
    running_seqs += a->job.n;
    if (a->admitted_step < 0) a->admitted_step = steps_.load();
    if (o_.unified) {
      promised += need;
    } else {
      a->committed = need;
      committed_blocks_ += need;
    }
    if (a->resuming) {
      // Back from a preemption: each unfinished choice recomputes its tokens so far, the
      // prefix cache's blocks first.
      bool ok = true;
      for (auto& c : a->choices) {
        if (c->done) continue;
        c->seq = NextSeq();
        c->n_resumed = 0;
        if (prefix_ && ok) {
          auto hit = prefix_->Attach(*cache_, c->seq, c->resume, prefix::PrefixCache::RootFor(a->job.cache_salt),
                                     prefill_tps_);
          if (!hit.ok()) {
            Finish(*a, 500, "the prefix cache failed: " + hit.status().message());
            ok = false;
            break;
          }
          c->n_resumed = hit->tokens();
        }
      }
      if (ok) running_.push_back(std::move(a));
      continue;
    }
    a->choices[0]->seq = NextSeq();
    if (prefix_) {
      // The longest cached prefix of the prompt: only the rest is prefilled.
      auto hit = prefix_->Attach(*cache_, a->choices[0]->seq, a->job.prompt,
                                 prefix::PrefixCache::RootFor(a->job.cache_salt), prefill_tps_);
      if (!hit.ok()) {
        Finish(*a, 500, "the prefix cache failed: " + hit.status().message());
        continue;
      }
      a->n_prefilled = hit->tokens();
      a->cached_tokens = hit->tokens();
    }
    running_.push_back(std::move(a));
  }
}

int64_t Scheduler::BlocksToAdmit(const Active& a) const {
  // Its tokens so far and room for the next one (within the context).
  auto blocks = [&](int64_t n) { return BlocksFor(std::min(n + 1, o_.n_ctx)); };
  if (!a.resuming) return blocks(static_cast<int64_t>(a.job.prompt.size()));
  int64_t need = 0;
  for (const auto& c : a.choices)
    if (!c->done) need += blocks(static_cast<int64_t>(c->resume.size()));
  return need;
}

bool Scheduler::Preemptible(const Active& a) const {
  // Re-admitting it needs each unfinished choice's tokens so far, unshared.
  int64_t need = 0;
  for (const auto& c : a.choices)
    if (!c->done) need += BlocksFor(std::min((c->seq >= 0 ? cache_->blocks().Length(c->seq) : 0) + 1, o_.n_ctx));
  return need <= cache_->blocks().n_blocks();
}

Scheduler::Active* Scheduler::Victim(const Active& a) {
  Active* v = nullptr;
  for (auto& r : running_) {
    if (r.get() == &a || r->finished || r->preempted_now || r->arrived < a.arrived) continue;
    if (r->arrived == a.arrived && r.get() < &a) continue;
    if (!Preemptible(*r)) continue;
    if (!v || r->arrived > v->arrived) v = r.get();
  }
  return v;
}

void Scheduler::Preempt(Active& v, std::vector<Piece>& plan) {
  std::erase_if(plan, [&](const Piece& p) { return p.a == &v; });
  if (!v.prefilled) {
    // Its prompt is not in yet: it starts over (nothing was sampled).
    if (v.choices[0]->seq >= 0) FreeSeq(v.choices[0]->seq);
    v.choices[0]->seq = -1;
    v.n_prefilled = 0;
    v.cached_tokens = 0;
  } else {
    v.resuming = true;
    for (auto& c : v.choices) {
      if (c->done) continue;
      // What the cache holds of it: the prompt (or what a resume had recomputed) and fed.
      std::vector<int32_t> tokens = v.job.prompt;
      tokens.insert(tokens.end(), c->fed.begin(), c->fed.end());
      c->resume = std::move(tokens);
      c->n_resumed = 0;
      if (c->seq >= 0) FreeSeq(c->seq);
      c->seq = -1;
    }
  }
  committed_blocks_ -= v.committed;
  v.committed = 0;
  v.preempted_now = true;
  ++preemptions_;
}

bool Scheduler::Room(Active& a, kv::SeqId seq, int64_t n, std::vector<Piece>& plan) {
  while (true) {
    auto r = cache_->Reserve(seq, n);
    if (!r.ok()) {
      Finish(a, 500, "the KV cache failed: " + r.status().message());
      return false;
    }
    if (*r == Admit::kOk) return true;
    Active* v = *r == Admit::kLater ? Victim(a) : nullptr;
    if (!v) return false;
    Preempt(*v, plan);
  }
}

bool Scheduler::Step() {
  // Drop requests whose client went away or whose time is up: their blocks free now.
  const auto now = Clock::now();
  for (auto& a : running_) {
    if (a->stream->cancelled()) Finish(*a, 499, "cancelled");
    else if (now >= a->job.deadline) Finish(*a, 504, "the request timed out");
  }
  std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return a->finished; });
  Admit();
  if (running_.empty()) return false;

  // Requests in arrival order: the newest are planned last and preempted first.
  std::stable_sort(running_.begin(), running_.end(),
                   [](const std::unique_ptr<Active>& x, const std::unique_ptr<Active>& y) { return x->arrived < y->arrived; });

  // Plan: what each sequence adds this step, its room reserved. Decode tokens first: every
  // running choice advances one token per step.
  std::vector<Piece> plan;
  std::vector<Active*> waiting;  // could neither grow nor be preempted this step
  int64_t n_decode = 0;
  for (auto& a : running_) {
    if (a->finished || a->preempted_now) continue;
    bool room = true;
    for (auto& c : a->choices) {
      if (c->done || c->pending < 0 || !c->resume.empty()) continue;
      if (!Room(*a, c->seq, 1, plan)) {
        room = false;
        break;
      }
    }
    if (a->finished) continue;
    if (!room) {
      // Nothing newer is left to preempt: this request yields (unless it is alone, which
      // the cache always holds; then the cache is broken). One whose choices would not fit
      // again unshared waits a step instead (room it reserved stays its own).
      const bool alone = std::count_if(running_.begin(), running_.end(), [](const auto& r) {
                           return !r->finished && !r->preempted_now;
                         }) == 1;
      if (alone) {
        // Only a request of several choices can fill the cache alone: the choices that
        // cannot grow have reached the context the pool gives them ("length").
        for (auto& c : a->choices) {
          if (c->done || c->pending < 0 || !c->resume.empty()) continue;
          if (Room(*a, c->seq, 1, plan)) plan.push_back({a.get(), c.get(), c->seq, Piece::Kind::kDecode, &c->pending, 1});
          else if (!a->finished) FinishChoice(*a, *c, FinishReason::kLength);
        }
      } else if (Preemptible(*a)) {
        Preempt(*a, plan);
      } else {
        waiting.push_back(a.get());
      }
      continue;
    }
    for (auto& c : a->choices) {
      if (c->done || c->pending < 0 || !c->resume.empty()) continue;
      plan.push_back({a.get(), c.get(), c->seq, Piece::Kind::kDecode, &c->pending, 1});
    }
  }
  for (const Piece& p : plan) n_decode += p.len;
  // Prefill chunks (prompts, and the recomputation of preempted requests) in the budget
  // left (at least one token, so that prompts advance even when the decode tokens fill the
  // step), oldest request first. A chunk takes the free blocks first; only when none is
  // free does it preempt a newer request; else it waits for a later step.
  int64_t budget = std::max<int64_t>(o_.step_tokens - n_decode, 1);
  auto plan_chunk = [&](Active& a, Choice& c, kv::SeqId seq, Piece::Kind kind, const int32_t* tokens,
                        int64_t want) {
    int64_t len = std::min(budget, want);
    if (o_.evict_chunk > 0) {
      // Under a KV bound: the next whole chunk from position 0, whatever the budget left
      // (its room is inside the bound's, reserved at admission).
      const int64_t at = cache_->blocks().Length(seq);
      len = std::min(want, o_.evict_chunk - at % o_.evict_chunk);
    }
    if (len <= 0) return;
    const kv::KvBlockManager& blocks = cache_->blocks();
    if (blocks.BlocksNeeded(seq, len) > blocks.n_free()) {
      int64_t lo = 0, hi = len;  // the longest chunk the free blocks hold
      while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (blocks.BlocksNeeded(seq, mid) <= blocks.n_free()) lo = mid;
        else hi = mid - 1;
      }
      len = lo > 0 ? lo : std::min<int64_t>(len, blocks.block_size());
    }
    if (!Room(a, seq, len, plan)) return;
    plan.push_back({&a, &c, seq, kind, tokens, len});
    budget -= len;
  };
  for (auto& a : running_) {
    if (a->finished || a->preempted_now || budget <= 0) continue;
    if (a->resuming) {
      for (auto& c : a->choices) {
        if (c->done || c->resume.empty() || a->finished || a->preempted_now) continue;
        plan_chunk(*a, *c, c->seq, Piece::Kind::kResume, c->resume.data() + c->n_resumed,
                   static_cast<int64_t>(c->resume.size()) - c->n_resumed);
      }
    } else if (!a->prefilled) {
      Choice& c0 = *a->choices[0];
      plan_chunk(*a, c0, c0.seq, Piece::Kind::kPrompt, a->job.prompt.data() + a->n_prefilled,
                 static_cast<int64_t>(a->job.prompt.size()) - a->n_prefilled);
    }
  }
  // Nothing can move: requests that cannot be preempted hold every block and each wants one
  // more. The newest of them stops where it is: its choices end with "length" (the context
  // the pool could give them), and its blocks free for the others.
  if (plan.empty() && !waiting.empty()) {
    Active* newest = *std::max_element(waiting.begin(), waiting.end(),
                                       [](const Active* x, const Active* y) { return x->arrived < y->arrived; });
    for (auto& c : newest->choices)
      if (!c->done) FinishChoice(*newest, *c, FinishReason::kLength);
  }
  // Preempted requests go back to the queue, in arrival order (ahead of every request that
  // came after them).
  {
    std::vector<std::unique_ptr<Active>> back;
    for (auto& a : running_)
      if (a->preempted_now && !a->finished) back.push_back(std::move(a));
    std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return !a; });
    if (!back.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& a : back) {
        a->preempted_now = false;
        auto at = std::find_if(queue_.begin(), queue_.end(),
                               [&](const std::unique_ptr<Active>& q) { return q->arrived > a->arrived; });
        queue_.insert(at, std::move(a));
      }
    }
  }

  // Build the batch from the plan: the room is reserved, so recording a token cannot fail;
  // if it does, the cache and the batch no longer agree for anyone: every running request fails.
  Batch batch;
  struct Row {
    Active* a;
    Choice* c;  // null: the prompt's last token (all choices sample from it)
  };
  std::vector<Row> rows;
  auto broken = [&](const Status& st) {
    for (auto& a : running_) Finish(*a, 500, "internal error: " + st.message());
    running_.clear();
    return true;
  };
  for (const Piece& p : plan) {
    if (p.a->finished) continue;
    const int64_t pos = cache_->blocks().Length(p.seq);
    std::span<const int32_t> chunk(p.tokens, static_cast<size_t>(p.len));
    if (Status st = cache_->Append(p.seq, chunk); !st.ok()) return broken(st);
    switch (p.kind) {
      case Piece::Kind::kDecode:
        batch.Add(chunk[0], pos, p.seq, true);
        rows.push_back({p.a, p.c});
        p.c->fed.push_back(p.c->pending);
        p.c->pending = -1;
        break;
      case Piece::Kind::kPrompt: {
        const int64_t n_prompt = static_cast<int64_t>(p.a->job.prompt.size());
        for (int64_t i = 0; i < p.len; ++i) {
          const bool last = p.a->n_prefilled + i + 1 == n_prompt;
          batch.Add(chunk[static_cast<size_t>(i)], pos + i, p.seq, last);
          if (last) rows.push_back({p.a, nullptr});
        }
        p.a->n_prefilled += p.len;
        if (metrics_) metrics_->AddPromptTokens(p.len);
        break;
      }
      case Piece::Kind::kResume:
        for (int64_t i = 0; i < p.len; ++i) batch.Add(chunk[static_cast<size_t>(i)], pos + i, p.seq, false);
        p.c->n_resumed += p.len;
        break;
    }
  }
  // Choices whose recomputation is in the batch decode from the next step on.
  for (auto& a : running_) {
    if (!a->resuming) continue;
    bool all = true;
    for (auto& c : a->choices) {
      if (!c->resume.empty() && c->n_resumed == static_cast<int64_t>(c->resume.size())) {
        c->resume.clear();
        c->n_resumed = 0;
      }
      all &= c->resume.empty();
    }
    if (all) a->resuming = false;
  }
  // Requests whose every choice ended while planning (at the pool's end) are done.
  for (auto& a : running_)
    if (!a->finished && std::all_of(a->choices.begin(), a->choices.end(), [](const auto& c) { return c->done; }))
      Finish(*a, 0, "");
  if (batch.size() == 0) {
    std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return a->finished; });
    return false;
  }

  std::vector<LlamaModel::SeqFailure> failed;
  const int64_t n_prefill = batch.size() - static_cast<int64_t>(rows.size()) +
                            static_cast<int64_t>(std::count_if(rows.begin(), rows.end(), [](const Row& r) { return !r.c; }));
  const auto t_forward = Clock::now();
  const Status forward = model_.Forward(batch, *cache_, &logits_, pool_, &failed);
  steps_.fetch_add(1);
  if (forward.ok() && n_prefill >= 32) {
    // The prefill rate the prefix cache weighs loads against (decode rows ride along).
    const double s = std::chrono::duration<double>(Clock::now() - t_forward).count();
    const double tps = s > 0 ? static_cast<double>(n_prefill) / s : 0;
    prefill_tps_ = prefill_tps_ > 0 ? 0.7 * prefill_tps_ + 0.3 * tps : tps;
  }
  if (Status st = forward; !st.ok()) {
    // Every request in the batch fails (the cache no longer matches their tokens).
    for (auto& a : running_) Finish(*a, 500, "the forward pass failed: " + st.message());
    running_.clear();
    return true;
  }
  // A sequence whose KV blocks could not be had (a spilled cache's I/O error, a full disk)
  // ends its request alone; the others' rows are exact.
  for (const LlamaModel::SeqFailure& f : failed)
    for (auto& a : running_)
      if (!a->finished && std::any_of(a->choices.begin(), a->choices.end(), [&](const auto& c) { return c->seq == f.seq; }))
        Finish(*a, 500, "the KV cache failed: " + f.status.message());

  const int64_t n_vocab = model_.hparams().n_vocab;
  for (size_t r = 0; r < rows.size(); ++r) {
    Active& a = *rows[r].a;
    if (a.finished) continue;
    const float* row = logits_.data() + static_cast<int64_t>(r) * n_vocab;
    if (rows[r].c) {
      SampleChoice(a, *rows[r].c, row);
    } else {
      // The prompt is in: the other choices share its blocks, then every choice samples.
      a.prefilled = true;
      for (size_t i = 1; i < a.choices.size(); ++i) {
        a.choices[i]->seq = NextSeq();
        if (Status st = cache_->Fork(a.choices[0]->seq, a.choices[i]->seq); !st.ok()) {
          Finish(a, 500, st.message());
          break;
        }
        if (prefix_) prefix_->Fork(a.choices[0]->seq, a.choices[i]->seq);
      }
      for (auto& c : a.choices)
        if (!a.finished) SampleChoice(a, *c, row);
    }
  }
  for (auto& a : running_) {
    if (a->finished) continue;
    const bool all_done = std::all_of(a->choices.begin(), a->choices.end(), [](const auto& c) { return c->done; });
    if (all_done) {
      Finish(*a, 0, "");
    } else if (prefix_) {
      for (auto& c : a->choices)
        if (c->seq >= 0) prefix_->Publish(*cache_, c->seq);
    }
  }
  std::erase_if(running_, [](const std::unique_ptr<Active>& a) { return a->finished; });
  return true;
}

}  // namespace tierlm::server
