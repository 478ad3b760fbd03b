// The generation loop on a scripted ModelStep (no model): stop rules, cancellation, shortest-first chunked
// prefill interleaved with decode, batching of every decoding sequence, chained launches, micro-batches in flight
// (a pipeline), and the ids handed back for reuse.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "engine/scheduler.h"

namespace {

using k2::DecodeRow;
using k2::GenerationJob;
using k2::JobResult;
using k2::SequenceEnd;

// next id after feeding x = (x * 7 + 3) % 100, the same for every sequence; records what the loop asks for.
class ScriptedStep : public k2::ModelStep {
 public:
  int chunk = 4;
  std::map<int, int> length_;  // seq -> positions
  std::vector<std::pair<int, int>> prefills;  // (seq, tokens) in call order
  std::vector<std::vector<int>> decodes;      // seq ids per decode call
  std::map<int, SequenceEnd> ends;
  std::vector<std::string> log;               // "p<seq>" / "d<rows>" in order

  static int next(int x) { return (x * 7 + 3) % 100; }

  int begin(int seq, const std::vector<int>&, const k2::SamplingParams&) override {
    length_[seq] = 0;
    return 0;
  }
  void prefill(int seq, const std::vector<int>& ids) override {
    length_[seq] += static_cast<int>(ids.size());
    prefills.emplace_back(seq, static_cast<int>(ids.size()));
    log.push_back("p" + std::to_string(seq));
  }
  std::vector<int> decode(const std::vector<DecodeRow>& rows) override {
    std::vector<int> out, seqs;
    for (const DecodeRow& r : rows) {
      ++length_[r.seq];
      out.push_back(next(r.token));
      seqs.push_back(r.seq);
    }
    decodes.push_back(seqs);
    log.push_back("d" + std::to_string(rows.size()));
    return out;
  }
  void end(int seq, SequenceEnd how) override { ends[seq] = std::move(how); }
  std::vector<k2::TokenLogprobs> score_prompt(const std::vector<int>&, int) override { return {}; }
  int length(int seq) const override { return length_.at(seq); }
  int max_positions() const override { return 1000; }
  int vocab_size() const override { return 100; }
  int prefill_chunk(int) const override { return chunk; }
};

GenerationJob job(std::vector<int> prompt, int max_tokens, std::vector<int> stops, JobResult& out) {
  GenerationJob j;
  j.prompt = std::move(prompt);
  j.max_tokens = max_tokens;
  j.stop_tokens = std::move(stops);
  j.on_done = [&out](const JobResult& r) { out = r; };
  return j;
}

void drain(k2::Scheduler& s) {
  for (int i = 0; i < 1000 && !s.idle(); ++i) s.step();
  ASSERT_TRUE(s.idle());
}

TEST(Scheduler, StopIdEndsWithoutBeingEmittedAndHeldIdsAreWhatWasFed) {
  // prompt ends in 1: 1 -> 10 -> 73 -> 14 -> 1 ...; 14 is a stop id.
  ScriptedStep step;
  k2::Scheduler s(step, 4);
  JobResult r;
  s.add(job({5, 6, 1}, 10, {14}, r), std::make_shared<k2::JobHandle>());
  drain(s);
  EXPECT_EQ(r.tokens, (std::vector<int>{10, 73}));
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.stop_token, 14);
  // The cache holds the prompt and both emitted ids (73 was fed to sample 14).
  EXPECT_EQ(step.ends[0].held, (std::vector<int>{5, 6, 1, 10, 73}));
  EXPECT_EQ(step.ends[0].last_emitted, -1);
}

TEST(Scheduler, LengthAndCallerCancellation) {
  ScriptedStep step;
  k2::Scheduler s(step, 4);
  JobResult a, b;
  s.add(job({1}, 2, {}, a), std::make_shared<k2::JobHandle>());
  GenerationJob jb = job({1}, 10, {}, b);
  jb.on_token = [n = 0](int) mutable { return ++n < 3; };  // the caller goes away at its third token
  s.add(std::move(jb), std::make_shared<k2::JobHandle>());
  drain(s);
  EXPECT_EQ(a.tokens, (std::vector<int>{10, 73}));
  EXPECT_EQ(a.finish_reason, "length");
  EXPECT_EQ(step.ends[0].last_emitted, 73);  // emitted, never fed
  EXPECT_EQ(step.ends[0].held, (std::vector<int>{1, 10}));
  EXPECT_EQ(b.tokens, (std::vector<int>{10, 73, 14}));
  EXPECT_EQ(b.finish_reason, "cancelled");
  EXPECT_TRUE(step.ends[1].cancelled);
}

TEST(Scheduler, HandleCancelsBetweenSteps) {
  ScriptedStep step;
  k2::Scheduler s(step, 4);
  JobResult r;
  auto handle = std::make_shared<k2::JobHandle>();
  s.add(job(std::vector<int>(30, 2), 100, {}, r), handle);
  s.step();  // one prefill chunk
  handle->cancel();
  drain(s);
  EXPECT_EQ(r.finish_reason, "cancelled");
  EXPECT_TRUE(r.tokens.empty());
  EXPECT_EQ(step.prefills.size(), 1u);
  EXPECT_EQ(step.ends[0].held.size(), 4u);  // the chunk that ran stays valid for reuse
}

TEST(Scheduler, ShortPrefillGoesFirstAndIsInterleavedWithOneBatchedDecode) {
  ScriptedStep step;
  k2::Scheduler s(step, 4);
  JobResult lone, longer, shorter;
  s.add(job({1}, 6, {}, lone), std::make_shared<k2::JobHandle>());  // decoding from the first step
  s.add(job(std::vector<int>(13, 3), 2, {}, longer), std::make_shared<k2::JobHandle>());  // 12 to prefill: 3 chunks
  s.step();
  s.add(job({4, 4, 4, 1}, 2, {}, shorter), std::make_shared<k2::JobHandle>());  // arrives during the long prefill
  drain(s);
  // Step 1: chunk of seq 1, decode [0]. Step 2: the newcomer (3 tokens left, seq 1 has 8) gets its only chunk,
  // decode [0, 2]; step 3: seq 1 again.
  ASSERT_GE(step.log.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(step.log.begin(), step.log.begin() + 6),
            (std::vector<std::string>{"p1", "d1", "p2", "d2", "p1", "d2"}));
  EXPECT_EQ(step.decodes[1], (std::vector<int>{0, 2}));
  // Every sequence gets what it would get alone: the script depends on the fed id only.
  EXPECT_EQ(lone.tokens, (std::vector<int>{10, 73, 14, 1, 10, 73}));
  EXPECT_EQ(shorter.tokens, (std::vector<int>{10, 73}));
  EXPECT_EQ(longer.tokens, (std::vector<int>{24, 71}));
  for (auto& [seq, n] : step.prefills) EXPECT_LE(n, 4) << "seq " << seq;
}

// The script again, launched in the background: read() returns what launch() computed; a chained row feeds the id
// the sequence's previous launch sampled. Logs "l<rows>" per launch and "r" per read.
class ChainingStep : public ScriptedStep {
 public:
  std::set<int> no_chain;   // sequences whose sampler needs fed ids
  std::map<int, int> last;  // seq -> id its latest launch sampled
  int chained_rows = 0;

  class Launched : public k2::LaunchedDecode {
   public:
    Launched(std::vector<int> ids, std::vector<std::string>& log) : ids_(std::move(ids)), log_(log) {}
    std::vector<int> read() override {
      log_.push_back("r");
      return ids_;
    }

   private:
    std::vector<int> ids_;
    std::vector<std::string>& log_;
  };
  std::unique_ptr<k2::LaunchedDecode> launch(const std::vector<DecodeRow>& rows) override {
    std::vector<int> out;
    for (const DecodeRow& r : rows) {
      if (r.chained) {
        EXPECT_TRUE(chains(r.seq)) << "seq " << r.seq;
        ++chained_rows;
      }
      ++length_[r.seq];
      out.push_back(last[r.seq] = next(r.chained ? last.at(r.seq) : r.token));
    }
    log.push_back("l" + std::to_string(rows.size()));
    return std::make_unique<Launched>(std::move(out), log);
  }
  bool chains(int seq) const override { return !no_chain.count(seq); }
};

TEST(Scheduler, NextDecodeIsLaunchedBeforeThePreviousIsReadWithTheSameTokens) {
  ChainingStep step;
  k2::Scheduler s(step, 4);
  JobResult a, b;
  s.add(job({1}, 6, {}, a), std::make_shared<k2::JobHandle>());
  s.add(job({5, 6, 1}, 10, {14}, b), std::make_shared<k2::JobHandle>());
  drain(s);
  // What the synchronous loop gives (the tests above).
  EXPECT_EQ(a.tokens, (std::vector<int>{10, 73, 14, 1, 10, 73}));
  EXPECT_EQ(a.finish_reason, "length");
  EXPECT_EQ(b.tokens, (std::vector<int>{10, 73}));
  EXPECT_EQ(b.finish_reason, "stop");
  // Step 1 prefills b and launches both first rows; from step 2 on each launch comes before the previous read.
  ASSERT_GE(step.log.size(), 5u);
  EXPECT_EQ(std::vector<std::string>(step.log.begin(), step.log.begin() + 5),
            (std::vector<std::string>{"p1", "l2", "l2", "r", "l2"}));
  EXPECT_GT(step.chained_rows, 0);
  // b's row launched on its stop id ran, but the ids held for reuse are the fed ones only; a's last id (the
  // token limit) got no row.
  EXPECT_EQ(step.ends[1].held, (std::vector<int>{5, 6, 1, 10, 73}));
  EXPECT_EQ(step.length_[1], 6);
  EXPECT_EQ(step.ends[0].held, (std::vector<int>{1, 10, 73, 14, 1, 10}));
  EXPECT_EQ(step.ends[0].last_emitted, 73);
  EXPECT_EQ(step.length_[0], 6);
}

TEST(Scheduler, ASequenceThatCannotChainIsReadBeforeTheNextLaunch) {
  ChainingStep step;
  step.no_chain = {0};
  k2::Scheduler s(step, 4);
  JobResult a;
  s.add(job({1}, 4, {}, a), std::make_shared<k2::JobHandle>());
  drain(s);
  EXPECT_EQ(a.tokens, (std::vector<int>{10, 73, 14, 1}));
  EXPECT_EQ(step.chained_rows, 0);
  EXPECT_EQ(step.log, (std::vector<std::string>{"l1", "r", "l1", "r", "l1", "r", "l1", "r"}));
}

// A pipeline's step: launches stay unread until the loop reads them, in launch order (as the last rank answers);
// micro_batches() of them may be in flight. Logs "l<seqs>" per launch and "r" per read.
class MicroBatchStep : public ScriptedStep {
 public:
  int micro = 2;
  size_t most_in_flight = 0;
  std::vector<std::shared_ptr<std::vector<int>>> unread;  // launched, oldest first

  class Launched : public k2::LaunchedDecode {
   public:
    Launched(MicroBatchStep& step, std::shared_ptr<std::vector<int>> ids) : step_(step), ids_(std::move(ids)) {}
    std::vector<int> read() override {
      EXPECT_FALSE(step_.unread.empty());
      if (!step_.unread.empty()) {
        EXPECT_EQ(step_.unread.front(), ids_) << "launches are read in launch order";
        step_.unread.erase(step_.unread.begin());
      }
      step_.log.push_back("r");
      return *ids_;
    }

   private:
    MicroBatchStep& step_;
    std::shared_ptr<std::vector<int>> ids_;
  };
  std::unique_ptr<k2::LaunchedDecode> launch(const std::vector<DecodeRow>& rows) override {
    std::string seqs;
    auto ids = std::make_shared<std::vector<int>>();
    for (const DecodeRow& r : rows) {
      EXPECT_FALSE(r.chained);
      ++length_[r.seq];
      ids->push_back(next(r.token));
      seqs += std::to_string(r.seq);
    }
    unread.push_back(ids);
    most_in_flight = std::max(most_in_flight, unread.size());
    log.push_back("l" + seqs);
    return std::make_unique<Launched>(*this, ids);
  }
  int micro_batches() const override { return micro; }
};

TEST(Scheduler, MicroBatchesOfDifferentSequencesAreInFlightTogetherWithTheSameTokens) {
  MicroBatchStep step;
  k2::Scheduler s(step, 4);
  JobResult a, b, c;
  s.add(job({1}, 6, {}, a), std::make_shared<k2::JobHandle>());
  s.add(job({5, 6, 1}, 10, {14}, b), std::make_shared<k2::JobHandle>());
  s.add(job({2}, 3, {}, c), std::make_shared<k2::JobHandle>());
  drain(s);
  // What the synchronous loop gives: the script depends on the fed id only.
  EXPECT_EQ(a.tokens, (std::vector<int>{10, 73, 14, 1, 10, 73}));
  EXPECT_EQ(b.tokens, (std::vector<int>{10, 73}));
  EXPECT_EQ(b.finish_reason, "stop");
  EXPECT_EQ(c.tokens, (std::vector<int>{17, 22, 57}));
  EXPECT_EQ(step.most_in_flight, 2u);
  EXPECT_TRUE(step.unread.empty());
  // Step 1 prefills b's two tokens before its last; three sequences decode, two micro-batches of at most two:
  // a and b, then c while they are in flight; step 3 reads a and b and launches them again, step 4 reads c.
  ASSERT_GE(step.log.size(), 6u);
  EXPECT_EQ(std::vector<std::string>(step.log.begin(), step.log.begin() + 6),
            (std::vector<std::string>{"p1", "l01", "l2", "r", "l01", "r"}));
  // No sequence is in two launches at once: each launch is read before its sequences launch again.
  EXPECT_EQ(step.ends[1].held, (std::vector<int>{5, 6, 1, 10, 73}));
}

TEST(Scheduler, OneSequenceOnMicroBatchesIsReadBeforeEachLaunch) {
  MicroBatchStep step;
  step.micro = 3;
  k2::Scheduler s(step, 4);
  JobResult a;
  s.add(job({1}, 3, {}, a), std::make_shared<k2::JobHandle>());
  drain(s);
  EXPECT_EQ(a.tokens, (std::vector<int>{10, 73, 14}));
  EXPECT_EQ(step.log, (std::vector<std::string>{"l0", "r", "l0", "r", "l0", "r"}));
}

TEST(Scheduler, StepTokenBudgetIsSharedByDecodeRowsAndPrefillChunks) {
  ScriptedStep step;
  step.chunk = 100;  // without the budget the long prompt would run in one chunk
  k2::Scheduler s(step, 4, 6);
  JobResult lone, longer, shorter;
  s.add(job({1}, 8, {}, lone), std::make_shared<k2::JobHandle>());                       // one decode row
  s.add(job(std::vector<int>(30, 3), 2, {}, longer), std::make_shared<k2::JobHandle>());  // 29 to prefill
  s.step();
  s.add(job({4, 4, 4, 1}, 2, {}, shorter), std::make_shared<k2::JobHandle>());  // arrives during the long prefill
  s.step();
  // Step 1: 6 - 1 decode row = 5 prompt tokens. Step 2: the newcomer's 3, which end the step's prefill (it is
  // ready), and it decodes in the same step. Step 3: 6 - 2 rows = 4 more of the long prompt.
  s.step();
  ASSERT_GE(step.prefills.size(), 3u);
  EXPECT_EQ(step.prefills[0], std::make_pair(1, 5));
  EXPECT_EQ(step.prefills[1], std::make_pair(2, 3));
  EXPECT_EQ(step.prefills[2], std::make_pair(1, 4));
  EXPECT_EQ(step.decodes[1], (std::vector<int>{0, 2}));
  drain(s);
  for (size_t i = 3; i < step.prefills.size(); ++i) EXPECT_LE(step.prefills[i].second, 5) << "prefill " << i;
  EXPECT_EQ(lone.tokens, (std::vector<int>{10, 73, 14, 1, 10, 73, 14, 1}));
  EXPECT_EQ(shorter.tokens, (std::vector<int>{10, 73}));
  EXPECT_EQ(longer.tokens, (std::vector<int>{24, 71}));
  EXPECT_THROW(k2::Scheduler(step, 4, -1), k2::InputError);
}

TEST(Scheduler, BadJobsEndAtOnceWithAnInputError) {
  ScriptedStep step;
  k2::Scheduler s(step, 2);
  JobResult empty, outside, zero;
  s.add(job({}, 4, {}, empty), std::make_shared<k2::JobHandle>());
  s.add(job({1, 100}, 4, {}, outside), std::make_shared<k2::JobHandle>());
  s.add(job({1}, 0, {}, zero), std::make_shared<k2::JobHandle>());
  EXPECT_TRUE(s.idle());
  ASSERT_TRUE(empty.error);
  EXPECT_THROW(std::rethrow_exception(empty.error), k2::InputError);
  try {
    std::rethrow_exception(outside.error);
  } catch (const k2::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("token id 100"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(zero.error);
  EXPECT_EQ(zero.finish_reason, "length");
  EXPECT_TRUE(step.length_.empty());  // none of them reached the model
}

TEST(Scheduler, RunOneRethrowsTheJobsError) {
  ScriptedStep step;
  GenerationJob j;
  j.prompt = {};
  EXPECT_THROW(k2::run_one(step, j), k2::InputError);
  j.prompt = {1};
  j.max_tokens = 3;
  EXPECT_EQ(k2::run_one(step, j).tokens, (std::vector<int>{10, 73, 14}));
}

}  // namespace
