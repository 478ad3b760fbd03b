// Heap-based BPE merging for tiktoken and Hugging Face rules (see bpe.h).
#include "text/bpe.h"

#include <memory>
#include <queue>

#include "core/error.h"

namespace k2 {

void RankTable::add(std::string bytes, int rank) {
  storage_.push_back(std::make_unique<std::string>(std::move(bytes)));
  map_[std::string_view(*storage_.back())] = rank;
}

void MergeTable::add(int left, int right, int rank, int new_id) {
  // A later duplicate replaces an earlier one, as when tokenizers collects its merge list into a map.
  map_[key(left, right)] = MergeRule{rank, new_id};
}

namespace {

// A doubly linked list of parts over an index range, plus a min-heap of candidate merges keyed by
// (rank, position of the left part). Positions never move, so position order is left-to-right order.
struct Candidate {
  int rank;
  std::size_t pos;
  int new_id;  // HF only; tiktoken leaves it 0
  bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};
using CandidateHeap = std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>>;

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

struct Links {
  std::vector<std::size_t> prev, next;
  explicit Links(std::size_t n) : prev(n), next(n) {
    for (std::size_t i = 0; i < n; ++i) {
      prev[i] = i == 0 ? kNone : i - 1;
      next[i] = i + 1 < n ? i + 1 : kNone;
    }
  }
  // Removes node j (the right neighbour of a merge).
  void unlink(std::size_t j) {
    const std::size_t p = prev[j], n = next[j];
    if (p != kNone) next[p] = n;
    if (n != kNone) prev[n] = p;
    prev[j] = next[j] = kNone;
  }
};

}  // namespace

void tiktoken_encode_piece(std::string_view piece, const RankTable& ranks, std::vector<int>& out) {
  if (piece.empty()) return;
  const int whole = ranks.find(piece);
  if (whole >= 0) {
    out.push_back(whole);
    return;
  }
  const std::size_t n = piece.size();
  // Part i starts at byte i and ends where its successor starts (or at n).
  Links links(n);
  std::vector<char> alive(n, 1);
  std::vector<int> pair_rank(n, -1);
  auto end_of = [&](std::size_t i) { return links.next[i] == kNone ? n : links.next[i]; };
  auto rank_of_pair = [&](std::size_t i) -> int {
    const std::size_t j = links.next[i];
    if (j == kNone) return -1;
    return ranks.find(piece.substr(i, end_of(j) - i));
  };
  CandidateHeap heap;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    pair_rank[i] = rank_of_pair(i);
    if (pair_rank[i] >= 0) heap.push({pair_rank[i], i, 0});
  }
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    // Stale unless the part is alive and its pair still has this rank (same start + same rank
    // means the same byte string, because ranks are unique).
    if (!alive[c.pos] || pair_rank[c.pos] != c.rank) continue;
    const std::size_t j = links.next[c.pos];
    alive[j] = 0;
    links.unlink(j);
    pair_rank[c.pos] = rank_of_pair(c.pos);
    if (pair_rank[c.pos] >= 0) heap.push({pair_rank[c.pos], c.pos, 0});
    const std::size_t p = links.prev[c.pos];
    if (p != kNone) {
      pair_rank[p] = rank_of_pair(p);
      if (pair_rank[p] >= 0) heap.push({pair_rank[p], p, 0});
    }
  }
  for (std::size_t i = 0; i != kNone; i = links.next[i]) {
    const int id = ranks.find(piece.substr(i, end_of(i) - i));
    if (id < 0) {
      throw Error("tiktoken vocabulary has no token for byte 0x" +
                  std::to_string(static_cast<unsigned char>(piece[i])) + " (incomplete rank table)");
    }
    out.push_back(id);
  }
}

void hf_merge_symbols(std::vector<int>& ids, const MergeTable& merges) {
  const std::size_t n = ids.size();
  if (n < 2) return;
  Links links(n);
  std::vector<char> alive(n, 1);
  CandidateHeap heap;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    if (const MergeRule* m = merges.find(ids[i], ids[i + 1])) heap.push({m->rank, i, m->new_id});
  }
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.pos]) continue;
    const std::size_t j = links.next[c.pos];
    if (j == kNone) continue;
    const MergeRule* cur = merges.find(ids[c.pos], ids[j]);
    if (!cur || cur->new_id != c.new_id) continue;
    ids[c.pos] = c.new_id;
    alive[j] = 0;
    links.unlink(j);
    const std::size_t p = links.prev[c.pos];
    if (p != kNone) {
      if (const MergeRule* m = merges.find(ids[p], ids[c.pos])) heap.push({m->rank, p, m->new_id});
    }
    const std::size_t q = links.next[c.pos];
    if (q != kNone) {
      if (const MergeRule* m = merges.find(ids[c.pos], ids[q])) heap.push({m->rank, c.pos, m->new_id});
    }
  }
  std::vector<int> merged;
  for (std::size_t i = 0; i != kNone; i = links.next[i]) merged.push_back(ids[i]);
  ids.swap(merged);
}

}  // namespace k2
