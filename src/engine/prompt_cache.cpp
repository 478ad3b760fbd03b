// Prompt cache bookkeeping: longest-prefix lookup over the kept token sequences, fork-or-take of the
// matching session, LRU eviction against the byte budget (KvCache::nbytes, i.e. allocated capacity).
#include "engine/prompt_cache.h"

#include <algorithm>

#include "core/error.h"

namespace k2 {

size_t common_prefix(const std::vector<int>& a, const std::vector<int>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

PromptCache::PromptCache(const Model& model, PromptCacheOptions options) : model_(model), options_(options) {}

PromptCache::Lease PromptCache::acquire(const std::vector<int>& prompt) {
  auto best = entries_.end();
  size_t best_len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const size_t n = common_prefix(it->tokens, prompt);
    if (n > best_len) {
      best_len = n;
      best = it;
    }
  }
  // At least one prompt token must still go through prefill to produce logits.
  const size_t usable = prompt.empty() ? 0 : std::min(best_len, prompt.size() - 1);
  Lease lease;
  if (best == entries_.end() || usable == 0) {
    lease.session = std::make_unique<Session>(model_);
    return lease;
  }
  if (usable == best->tokens.size()) {
    lease.session = std::move(best->session);  // the prompt extends this entry: take it over
    entries_.erase(best);
  } else {
    lease.session = std::make_unique<Session>(*best->session);  // fork; the kept entry stays intact
    entries_.splice(entries_.begin(), entries_, best);          // and counts as recently used
  }
  lease.session->trim_to(static_cast<int>(usable));
  lease.reused = static_cast<int>(usable);
  return lease;
}

void PromptCache::release(std::unique_ptr<Session> session, std::vector<int> tokens) {
  if (!session || tokens.empty() || options_.max_bytes == 0 || options_.max_entries <= 0) return;
  if (static_cast<size_t>(session->length()) != tokens.size())
    throw Error("prompt cache: a released session's length does not match its token list");
  // Entries that are a prefix of the new one add nothing.
  entries_.remove_if([&](const Entry& e) { return common_prefix(e.tokens, tokens) == e.tokens.size(); });
  entries_.push_front(Entry{std::move(tokens), std::move(session)});
  while (entries_.size() > static_cast<size_t>(options_.max_entries) || (!entries_.empty() && bytes() > options_.max_bytes))
    entries_.pop_back();
}

size_t PromptCache::bytes() const {
  size_t n = 0;
  for (const Entry& e : entries_) n += e.session->cache().nbytes();
  return n;
}

}  // namespace k2
