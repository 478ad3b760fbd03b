// Prompt reuse: KV caches of earlier token sequences, kept so that a request whose prompt starts with a
// kept sequence prefills only the rest. Bounded by a byte budget and an entry count (least recently used
// goes first). Owns sessions between requests only; the generation worker uses them in between.
#pragma once

#include <cstddef>
#include <list>
#include <memory>
#include <vector>

#include "engine/session.h"

namespace k2 {

struct PromptCacheOptions {
  size_t max_bytes = size_t{2} << 30;  // KV bytes kept across all entries (0 = keep nothing)
  int max_entries = 8;
};

class PromptCache {
 public:
  PromptCache(const Model& model, PromptCacheOptions options);

  struct Lease {
    std::unique_ptr<Session> session;  // its cache holds exactly prompt[0, reused)
    int reused = 0;
  };
  // A session whose cache holds the longest kept prefix of `prompt`, leaving at least one prompt token
  // to prefill (the next token's logits come from it), or a fresh session. A kept entry that the prompt
  // extends is taken out; one that diverges earlier is forked (copies share MLX buffers until written).
  Lease acquire(const std::vector<int>& prompt);

  // Keeps `session`, whose cache holds `tokens` (its length must equal session->length()), then evicts
  // entries it makes redundant and the least recently used ones over budget.
  void release(std::unique_ptr<Session> session, std::vector<int> tokens);

  size_t bytes() const;
  size_t size() const { return entries_.size(); }
  void clear() { entries_.clear(); }

 private:
  struct Entry {
    std::vector<int> tokens;
    std::unique_ptr<Session> session;
  };
  const Model& model_;
  PromptCacheOptions options_;
  std::list<Entry> entries_;  // most recently used first
};

// Number of leading elements a and b share.
size_t common_prefix(const std::vector<int>& a, const std::vector<int>& b);

}  // namespace k2
