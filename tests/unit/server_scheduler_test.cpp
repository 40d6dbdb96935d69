// The continuous-batching scheduler on the trained stories260K model: greedy outputs are the
// same alone, among 15 others, with any prefill chunking and as the plain generator's;
// forked choices equal the single one; stop strings cut exactly; a cancelled request frees
// its blocks; a full queue refuses.
#include "server/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <thread>

#include "kernels/matmul.h"
#include "prefix/prefix_cache.h"
#include "runtime/engine.h"
#include "runtime/generator.h"
#include "test_paths.h"

namespace tierlm::server {
namespace {

using namespace std::chrono_literals;

struct Output {
  std::vector<std::vector<int32_t>> tokens;  // per choice
  std::vector<std::string> text;
  std::vector<FinishReason> finish;
  int64_t prompt_tokens = -1, completion_tokens = -1;
  int64_t steps_waiting = -1, steps_running = -1;
  int error_status = 0;
};

Output Collect(RequestStream& s, int32_t n) {
  Output o;
  o.tokens.resize(static_cast<size_t>(n));
  o.text.resize(static_cast<size_t>(n));
  o.finish.assign(static_cast<size_t>(n), FinishReason::kNone);
  const auto until = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < until) {
    std::vector<StreamEvent> ev;
    s.Wait(&ev, 100ms);
    for (auto& e : ev) {
      switch (e.kind) {
        case StreamEvent::Kind::kDelta:
          o.text[static_cast<size_t>(e.choice)] += e.text;
          for (auto& lp : e.logprobs) o.tokens[static_cast<size_t>(e.choice)].push_back(lp.token);
          break;
        case StreamEvent::Kind::kFinish:
          o.finish[static_cast<size_t>(e.choice)] = e.finish;
          break;
        case StreamEvent::Kind::kDone:
          o.prompt_tokens = e.prompt_tokens;
          o.completion_tokens = e.completion_tokens;
          o.steps_waiting = e.steps_waiting;
          o.steps_running = e.steps_running;
          return o;
        case StreamEvent::Kind::kError:
          o.error_status = e.http_status;
          return o;
      }
    }
  }
  ADD_FAILURE() << "the request did not finish";
  return o;
}

// A paged cache of n_blocks blocks of 16 f16 positions for the model.
std::unique_ptr<kv::PagedKvCache> MakeCache(const LlamaModel& m, int32_t n_blocks) {
  kv::PagedKvOptions o;
  o.n_layer = m.hparams().n_layer;
  o.n_head_kv = m.hparams().n_head_kv;
  o.head_dim = m.hparams().head_dim;
  o.format = {GgmlType::kF16, GgmlType::kF16, 16};
  o.n_blocks = n_blocks;
  auto c = kv::PagedKvCache::Create(o);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return std::move(*c);
}

class ServerSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions eo;
    eo.model_path = testing::StoriesModel().string();
    eo.n_threads = 2;
    eo.n_ctx = 512;
    auto e = Engine::Load(eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
  }

  std::unique_ptr<Scheduler> Make(int32_t slots, int64_t step_tokens, size_t max_queue = 64, int64_t n_ctx = 512) {
    SchedulerOptions o;
    o.n_slots = slots;
    o.n_ctx = n_ctx;
    o.step_tokens = step_tokens;
    o.max_queue = max_queue;
    cache_ = MakeCache(engine_->model(), static_cast<int32_t>(slots * ((n_ctx + 15) / 16)));
    auto s = Scheduler::Create(engine_->model(), engine_->tokenizer(), &engine_->pool(), *cache_, o, &metrics_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(*s);
  }

  // Unified KV over n_blocks blocks of 16: any request may fill them all.
  std::unique_ptr<Scheduler> MakeUnified(int32_t slots, int64_t step_tokens, int32_t n_blocks,
                                         prefix::PrefixCache* pc = nullptr) {
    SchedulerOptions o;
    o.n_slots = slots;
    o.n_ctx = int64_t{n_blocks} * 16;
    o.step_tokens = step_tokens;
    o.unified = true;
    cache_ = MakeCache(engine_->model(), n_blocks);
    auto s = Scheduler::Create(engine_->model(), engine_->tokenizer(), &engine_->pool(), *cache_, o, &metrics_, pc);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(*s);
  }

  GenerationJob Greedy(const std::string& prompt, int64_t max_tokens) {
    GenerationJob j;
    j.prompt = engine_->tokenizer().Encode(prompt, true, true);
    j.max_tokens = max_tokens;
    j.sampling.temperature = 0;
    j.top_logprobs = 0;  // the token ids come back with their logprobs
    return j;
  }

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<kv::PagedKvCache> cache_;  // declared after the engine: freed before it
  Metrics metrics_;
};

const char* kPrompts[16] = {
    "Once upon a time",  "The little dog",      "Lily went to the park", "Tom had a red ball",
    "One day, a bird",   "The sun was",         "Sara and Ben",          "There was a big tree",
    "Mom said",          "The cat sat",         "A boy named Tim",       "In the forest",
    "The girl smiled",   "It was a cold night", "The king",              "Max found a box"};

TEST_F(ServerSchedulerTest, GreedyAloneEqualsTheGenerator) {
  auto s = Make(4, 512);
  for (const char* p : {"Once upon a time", "The little dog"}) {
    GenerationJob j = Greedy(p, 40);
    const std::vector<int32_t> prompt = j.prompt;
    auto stream = s->Submit(j);
    ASSERT_TRUE(stream.ok()) << stream.status().ToString();
    const Output o = Collect(**stream, 1);
    ASSERT_EQ(o.error_status, 0);

    // The generator over the engine's own KV cache (what `tierlm run` uses).
    engine_->kv().set_n_past(0);
    GenerateRequest req;
    req.prompt = prompt;
    req.n_predict = 40;
    req.sampling.temperature = 0;
    std::vector<int32_t> want;
    req.is_eog = [&](int32_t id) {
      const bool eog = engine_->tokenizer().IsEog(id);
      if (eog) want.push_back(id);  // the server counts and reports the end token too
      return eog;
    };
    req.on_token = [&](int32_t id) {
      want.push_back(id);
      return true;
    };
    auto st = Generate(engine_->model(), engine_->kv(), &engine_->pool(), req);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_EQ(o.tokens[0], want) << p;
    EXPECT_EQ(o.prompt_tokens, static_cast<int64_t>(prompt.size()));
    EXPECT_EQ(o.completion_tokens, static_cast<int64_t>(o.tokens[0].size()));
    EXPECT_EQ(o.finish[0], st->stopped_at_eog ? FinishReason::kStop : FinishReason::kLength);
    EXPECT_FALSE(o.text[0].empty());
  }
}

TEST_F(ServerSchedulerTest, SixteenAtOnceEqualEachAloneWithAnyChunking) {
  std::vector<Output> alone;
  {
    auto s = Make(1, 512);
    for (const char* p : kPrompts) {
      auto stream = s->Submit(Greedy(p, 24));
      ASSERT_TRUE(stream.ok());
      alone.push_back(Collect(**stream, 1));
    }
  }
  for (int64_t step : {int64_t{512}, int64_t{5}}) {
    auto s = Make(16, step);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const char* p : kPrompts) {
      auto stream = s->Submit(Greedy(p, 24));
      ASSERT_TRUE(stream.ok());
      streams.push_back(*stream);
    }
    for (size_t i = 0; i < streams.size(); ++i) {
      const Output o = Collect(*streams[i], 1);
      EXPECT_EQ(o.tokens[0], alone[i].tokens[0]) << kPrompts[i] << " step " << step;
      EXPECT_EQ(o.text[0], alone[i].text[0]) << kPrompts[i] << " step " << step;
      EXPECT_EQ(o.completion_tokens, alone[i].completion_tokens);
    }
    // Everything is given back.
    for (int i = 0; i < 100 && s->Snapshot().requests_running > 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(s->Snapshot().requests_running, 0);
    EXPECT_EQ(s->Snapshot().kv_blocks_used, 0);
  }
}

// With a seed, sampling is reproducible too, alone or among others (each request draws
// from its own generator, over logits that do not depend on the batch); n = 2 choices use
// seeds s and s + 1, so they differ.
TEST_F(ServerSchedulerTest, SeededSamplingIsTheSameInAnyBatch) {
  auto sampled = [&](const char* p, uint64_t seed, int32_t n) {
    GenerationJob j = Greedy(p, 24);
    j.sampling.temperature = 1.0f;
    j.sampling.top_k = 0;
    j.sampling.top_p = 1.0f;
    j.sampling.min_p = 0.0f;
    j.sampling.seed = seed;
    j.n = n;
    return j;
  };
  auto s = Make(8, 7);
  auto alone = s->Submit(sampled("The little dog", 42, 2));
  ASSERT_TRUE(alone.ok());
  const Output a = Collect(**alone, 2);
  std::vector<std::shared_ptr<RequestStream>> crowd;
  for (int i = 0; i < 6; ++i) crowd.push_back(*s->Submit(sampled(kPrompts[i], 100 + static_cast<uint64_t>(i), 1)));
  auto again = s->Submit(sampled("The little dog", 42, 2));
  ASSERT_TRUE(again.ok());
  const Output b = Collect(**again, 2);
  for (auto& c : crowd) Collect(*c, 1);
  EXPECT_EQ(b.tokens, a.tokens);
  EXPECT_EQ(b.text, a.text);
  EXPECT_NE(a.tokens[0], a.tokens[1]);  // 24 tokens drawn at temperature 1 from two seeds
  auto other = s->Submit(sampled("The little dog", 43, 1));
  EXPECT_NE(Collect(**other, 1).tokens[0], a.tokens[0]);
}

TEST_F(ServerSchedulerTest, ForkedChoicesEqualTheSingleOne) {
  auto s = Make(4, 512);
  auto one = s->Submit(Greedy("Lily went to the park", 30));
  ASSERT_TRUE(one.ok());
  const Output single = Collect(**one, 1);
  GenerationJob j = Greedy("Lily went to the park", 30);
  j.n = 3;
  auto three = s->Submit(j);
  ASSERT_TRUE(three.ok());
  const Output o = Collect(**three, 3);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(o.tokens[static_cast<size_t>(c)], single.tokens[0]) << "choice " << c;
    EXPECT_EQ(o.text[static_cast<size_t>(c)], single.text[0]) << "choice " << c;
  }
  EXPECT_EQ(o.completion_tokens, 3 * single.completion_tokens);
  EXPECT_EQ(o.prompt_tokens, single.prompt_tokens);
}

TEST_F(ServerSchedulerTest, StopStringCutsExactlyAcrossTokens) {
  auto s = Make(2, 512);
  auto plain = s->Submit(Greedy("Once upon a time", 60));
  ASSERT_TRUE(plain.ok());
  const Output full = Collect(**plain, 1);
  const std::string& text = full.text[0];
  ASSERT_GT(text.size(), 30u) << text;
  // A stop string from the middle of the text: 6 bytes, very likely across a token boundary.
  const std::string stop = text.substr(20, 6);
  GenerationJob j = Greedy("Once upon a time", 60);
  j.stop = {stop};
  auto stopped = s->Submit(j);
  ASSERT_TRUE(stopped.ok());
  const Output o = Collect(**stopped, 1);
  EXPECT_EQ(o.text[0], text.substr(0, text.find(stop)));
  EXPECT_EQ(o.finish[0], FinishReason::kStop);
  EXPECT_LT(o.completion_tokens, full.completion_tokens);
  EXPECT_EQ(o.text[0].find(stop), std::string::npos);
}

TEST_F(ServerSchedulerTest, CancelFreesBlocksAndAFullQueueRefuses) {
  auto s = Make(1, 512, /*max_queue=*/1, /*n_ctx=*/16384);  // long enough to outlast the test's steps
  GenerationJob endless = Greedy("Once upon a time", -1);
  endless.sampling.logit_bias = {{engine_->tokenizer().vocab().eos_id, -100.0f}};  // never ends by itself
  auto a = s->Submit(endless);
  ASSERT_TRUE(a.ok());
  for (int i = 0; i < 500 && s->Snapshot().requests_running == 0; ++i) std::this_thread::sleep_for(2ms);
  ASSERT_EQ(s->Snapshot().requests_running, 1);
  auto b = s->Submit(endless);  // waits for the only slot
  ASSERT_TRUE(b.ok());
  auto c = s->Submit(endless);  // the queue (1) is full
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted);
  (*a)->Cancel();
  (*b)->Cancel();
  const Output oa = Collect(**a, 1), ob = Collect(**b, 1);
  EXPECT_EQ(oa.error_status, 499);
  EXPECT_EQ(ob.error_status, 499);
  for (int i = 0; i < 200 && s->Snapshot().kv_blocks_used > 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(s->Snapshot().kv_blocks_used, 0);
  EXPECT_EQ(s->Snapshot().requests_running, 0);
  EXPECT_EQ(s->Snapshot().requests_queued, 0);
  // A request that runs into the context ends with "length" at exactly the context.
  s.reset();
  s = Make(1, 512);
  GenerationJob ctx = endless;
  auto d = s->Submit(ctx);
  ASSERT_TRUE(d.ok());
  const Output od = Collect(**d, 1);
  EXPECT_EQ(od.finish[0], FinishReason::kLength);
  EXPECT_EQ(od.prompt_tokens + od.completion_tokens, 512 + 1);  // the last token is sampled, not fed
}

TEST_F(ServerSchedulerTest, JobsThatCanNeverRunAreRefused) {
  auto s = Make(2, 512);
  GenerationJob empty;
  EXPECT_EQ(s->Submit(empty).status().code(), StatusCode::kInvalidArgument);
  GenerationJob longp = Greedy("x", 1);
  longp.prompt.assign(513, 5);
  EXPECT_EQ(s->Submit(longp).status().code(), StatusCode::kOutOfRange);
  GenerationJob many = Greedy("x", 1);
  many.n = 3;
  EXPECT_EQ(s->Submit(many).status().code(), StatusCode::kInvalidArgument);
  GenerationJob badtok = Greedy("x", 1);
  badtok.prompt.push_back(100000);
  EXPECT_EQ(s->Submit(badtok).status().code(), StatusCode::kInvalidArgument);
}

// No request starves: every running request advances every step. Counted in scheduler
// steps, not seconds: with whole-prompt steps each of 16 requests together takes at most
// one step more than alone; with 5-token steps the decode tokens fill the budget and the
// prompts advance at least one token a step, so none waits longer than every prompt's
// tokens.
TEST_F(ServerSchedulerTest, NoRequestStarvesEachAdvancesEveryStep) {
  auto job = [&](size_t i) {
    GenerationJob j = Greedy(kPrompts[i], 24);
    j.sampling.logit_bias = {{engine_->tokenizer().vocab().eos_id, -100.0f}};
    return j;
  };
  std::vector<Output> alone;
  int64_t all_prompt_tokens = 0;
  {
    auto s = Make(1, 512);
    for (size_t i = 0; i < 16; ++i) {
      auto stream = s->Submit(job(i));
      ASSERT_TRUE(stream.ok());
      alone.push_back(Collect(**stream, 1));
      ASSERT_EQ(alone.back().completion_tokens, 24);
      EXPECT_EQ(alone.back().steps_running, 24);  // the prefill samples the first token
      all_prompt_tokens += alone.back().prompt_tokens;
    }
  }
  for (int64_t step : {int64_t{512}, int64_t{5}}) {
    auto s = Make(16, step);
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (size_t i = 0; i < 16; ++i) streams.push_back(*s->Submit(job(i)));
    for (size_t i = 0; i < 16; ++i) {
      const Output o = Collect(*streams[i], 1);
      ASSERT_EQ(o.completion_tokens, 24);
      EXPECT_EQ(o.tokens, alone[i].tokens);
      const int64_t bound = step == 512 ? alone[i].steps_running + 1 : alone[i].steps_running + all_prompt_tokens;
      EXPECT_LE(o.steps_running, bound) << kPrompts[i] << " step " << step;
      EXPECT_GE(o.steps_running, alone[i].steps_running) << kPrompts[i];
    }
  }
}

// Unified KV far smaller than what 16 requests need at once: requests are preempted and
// recomputed, and every output (greedy, seeded sampling, n = 2) is the one it has alone, with
// whole and 5-token prefill steps, with and without a memory prefix cache to come back from.
TEST_F(ServerSchedulerTest, UnifiedKvPreemptsAndEveryOutputEqualsItsAloneRun) {
  auto job = [&](size_t i) {
    GenerationJob j = Greedy(kPrompts[i], 40 + static_cast<int64_t>(i % 4) * 10);
    j.sampling.logit_bias = {{engine_->tokenizer().vocab().eos_id, -100.0f}};  // all run their length
    if (i % 3 == 1) {
      j.sampling.temperature = 1.0f;
      j.sampling.top_k = 0;
      j.sampling.top_p = 1.0f;
      j.sampling.min_p = 0.0f;
      j.sampling.seed = 7 + i;
    }
    if (i == 5) j.n = 2;
    return j;
  };
  std::vector<Output> alone;
  {
    auto s = Make(2, 512);
    for (size_t i = 0; i < 16; ++i) {
      auto stream = s->Submit(job(i));
      ASSERT_TRUE(stream.ok());
      alone.push_back(Collect(**stream, job(i).n));
      ASSERT_EQ(alone.back().error_status, 0);
    }
  }
  for (int variant = 0; variant < 3; ++variant) {
    const int64_t step = variant == 1 ? 5 : 512;
    std::unique_ptr<prefix::PrefixCache> pc;
    if (variant == 2) pc = std::make_unique<prefix::PrefixCache>(nullptr, nullptr, /*memory=*/true);
    // 16 blocks of 16 positions; the 16 requests grow to 45..95 positions each.
    auto s = MakeUnified(16, step, 16, pc.get());
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (size_t i = 0; i < 16; ++i) {
      auto stream = s->Submit(job(i));
      ASSERT_TRUE(stream.ok());
      streams.push_back(*stream);
    }
    for (size_t i = 0; i < streams.size(); ++i) {
      const Output o = Collect(*streams[i], job(i).n);
      ASSERT_EQ(o.error_status, 0) << kPrompts[i];
      EXPECT_EQ(o.tokens, alone[i].tokens) << kPrompts[i] << " variant " << variant;
      EXPECT_EQ(o.text, alone[i].text) << kPrompts[i] << " variant " << variant;
      EXPECT_EQ(o.completion_tokens, alone[i].completion_tokens);
    }
    EXPECT_GT(s->Snapshot().requests_preempted, 0) << "variant " << variant;
    for (int i = 0; i < 100 && s->Snapshot().requests_running > 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(s->Snapshot().requests_running, 0);
    EXPECT_EQ(s->Snapshot().requests_queued, 0);
    if (!pc) EXPECT_EQ(s->Snapshot().kv_blocks_used, 0);
    s.reset();
  }
}

// One request may use the whole unified cache, where a slot would have held a quarter.
TEST_F(ServerSchedulerTest, UnifiedKvLetsOneRequestUseEveryBlock) {
  GenerationJob j = Greedy("Once upon a time", 100);
  j.sampling.logit_bias = {{engine_->tokenizer().vocab().eos_id, -100.0f}};
  {
    auto slots = Make(4, 512, 64, /*n_ctx=*/32);  // 4 slots of 32 positions (8 blocks)
    auto st = slots->Submit(j);
    ASSERT_TRUE(st.ok());
    const Output o = Collect(**st, 1);
    EXPECT_EQ(o.finish[0], FinishReason::kLength);
    EXPECT_EQ(o.prompt_tokens + o.completion_tokens, 32 + 1);
  }
  auto s = MakeUnified(4, 512, 8);
  auto st = s->Submit(j);
  ASSERT_TRUE(st.ok());
  const Output o = Collect(**st, 1);
  ASSERT_EQ(o.error_status, 0);
  EXPECT_EQ(o.completion_tokens, 100);
  EXPECT_EQ(s->Snapshot().requests_preempted, 0);
  // A prompt that can never fit is refused up front.
  GenerationJob huge = Greedy("x", 1);
  huge.prompt.assign(129, 5);
  EXPECT_EQ(s->Submit(huge).status().code(), StatusCode::kOutOfRange);
}

// Requests of several choices can fill a unified pool that no preemption could refill
// (their choices unshared would not fit): they end with "length" where the pool ran out,
// their tokens a prefix of the one-choice run, never an error or a hang.
TEST_F(ServerSchedulerTest, UnifiedKvChoicesThatFillThePoolEndWithLength) {
  GenerationJob one = Greedy("Once upon a time", 200);
  one.sampling.logit_bias = {{engine_->tokenizer().vocab().eos_id, -100.0f}};
  std::vector<int32_t> want;
  {
    auto big = MakeUnified(4, 512, 32);
    auto st = big->Submit(one);
    ASSERT_TRUE(st.ok());
    want = Collect(**st, 1).tokens[0];
    ASSERT_EQ(want.size(), 200u);
  }
  GenerationJob two = one;
  two.n = 2;
  for (int n_requests : {1, 2}) {
    auto s = MakeUnified(4, 512, 8);  // 128 positions in all
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (int i = 0; i < n_requests; ++i) streams.push_back(*s->Submit(two));
    int64_t tokens = 0;
    for (auto& st : streams) {
      const Output o = Collect(*st, 2);
      ASSERT_EQ(o.error_status, 0) << n_requests;
      for (int c = 0; c < 2; ++c) {
        EXPECT_EQ(o.finish[static_cast<size_t>(c)], FinishReason::kLength);
        const auto& got = o.tokens[static_cast<size_t>(c)];
        ASSERT_LT(got.size(), want.size());  // the pool, not max_tokens, ended it
        EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin())) << "choice " << c;
        tokens += static_cast<int64_t>(got.size());
      }
    }
    EXPECT_GT(tokens, 0);
    EXPECT_LE(tokens, n_requests * 2 * 128);  // no choice outgrows the pool's 128 positions
    for (int i = 0; i < 100 && s->Snapshot().requests_running > 0; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(s->Snapshot().requests_running, 0);
    EXPECT_EQ(s->Snapshot().kv_blocks_used, 0);
  }
}

// Quantized weights take other matmul kernels for a long batch than for one token, all of
// them batch-invariant (kernels/matmul.h): 8 random prompts at once, prefilled 3 tokens a
// step, give each one's tokens alone.
TEST(ServerSchedulerQuantizedTest, Q4_0AloneEqualsTogether) {
  EngineOptions eo;
  eo.model_path = testing::SynthModel("tiny", "q4_0").string();
  eo.n_threads = 2;
  eo.n_ctx = 128;
  auto e = Engine::Load(eo);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  Engine& engine = **e;
  std::vector<std::unique_ptr<kv::PagedKvCache>> caches;
  auto make = [&](int32_t slots, int64_t step) {
    SchedulerOptions o;
    o.n_slots = slots;
    o.n_ctx = 128;
    o.step_tokens = step;
    caches.push_back(MakeCache(engine.model(), slots * 8));
    auto s = Scheduler::Create(engine.model(), engine.tokenizer(), &engine.pool(), *caches.back(), o, nullptr);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(*s);
  };
  std::mt19937 rng(11);
  std::vector<GenerationJob> jobs(8);
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(engine.model().hparams().n_vocab - 1));
    for (size_t k = 0; k < 10 + 7 * i; ++k) jobs[i].prompt.push_back(tok(rng));
    jobs[i].max_tokens = 12;
    jobs[i].sampling.temperature = 0;
    jobs[i].sampling.logit_bias = {{engine.tokenizer().vocab().eos_id, -100.0f}};
    jobs[i].top_logprobs = 0;
  }
  std::vector<Output> alone;
  {
    auto s = make(1, 512);
    for (const auto& j : jobs) {
      auto st = s->Submit(j);
      ASSERT_TRUE(st.ok()) << st.status().ToString();
      alone.push_back(Collect(**st, 1));
    }
  }
  auto s = make(8, 3);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& j : jobs) streams.push_back(*s->Submit(j));
  for (size_t i = 0; i < streams.size(); ++i) {
    const Output o = Collect(*streams[i], 1);
    ASSERT_EQ(alone[i].tokens[0].size(), 12u);
    EXPECT_EQ(o.tokens[0], alone[i].tokens[0]) << "prompt " << i;
  }
}

}  // namespace
}  // namespace tierlm::server
