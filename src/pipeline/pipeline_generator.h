// Serving through a layer pipeline: rank 0's JobRunner (each request's prefill and decode go through
// the stages; the last rank samples) and the loop every other rank runs until rank 0 shuts the job
// down. Each rank keeps one KV cache, trimmed at each request to the prefix it shares with the last one.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/worker.h"
#include "pipeline/stage_link.h"

namespace k2 {

struct PipelineServeOptions {
  PrefillChunking prefill;  // cut as Session::prefill cuts a prompt
  bool overlap = true;      // send the next prefill chunk while later stages still work on the previous
  bool reuse_prompts = true;
};

// Rank 0. Every request sends {kBegin, prompt length, kept prefix} + sampling params + prompt ids
// around the ring, then prefill chunks and decode steps, then a stop header (also on cancellation).
// A failure after the begin header leaves the ranks out of step: the runner reports it through
// `on_lost` (once) and fails every later job.
class PipelineJobRunner : public JobRunner {
 public:
  PipelineJobRunner(StageLink& link, PipelineServeOptions options, std::function<void(const std::exception&)> on_lost);
  void run(GenerationJob& job, const JobHandle& handle, JobResult& result) override;
  size_t cache_entries() const override { return held_.empty() ? 0 : 1; }
  size_t cache_bytes() const override { return cache_bytes_; }
  void finish() override;  // tells the other ranks to leave (kShutdown), unless the pipeline is broken

 private:
  void run_request(GenerationJob& job, const JobHandle& handle, JobResult& result);

  StageLink& link_;
  PipelineServeOptions options_;
  std::function<void(const std::exception&)> on_lost_;
  KvCache cache_;
  std::vector<int> held_;  // the ids whose KV every rank's cache holds
  size_t cache_bytes_ = 0;  // this rank's share
  bool broken_ = false;
};

struct FollowStats {
  int requests = 0;
  int cancelled = 0;
};

// Ranks > 0: runs this rank's stage for each request rank 0 sends, samples on the last rank, and returns
// when rank 0 sends kShutdown. Throws Error when the link breaks or the ranks disagree.
FollowStats follow_requests(StageLink& link);

}  // namespace k2
