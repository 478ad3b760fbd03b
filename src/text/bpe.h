// Byte-pair merging, the step after pre-tokenization: tiktoken's rule (merge the adjacent pair whose
// concatenated bytes have the lowest rank) and Hugging Face's rule (merge list priority). Both run in
// O(n log n) per piece with a heap, so a megabyte-long piece does not blow up quadratically.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace k2 {

// Token bytes -> rank (= token id) for tiktoken-format vocabularies. Keys view into owned storage.
class RankTable {
 public:
  void add(std::string bytes, int rank);
  // -1 when the byte string is not a token.
  int find(std::string_view bytes) const {
    auto it = map_.find(bytes);
    return it == map_.end() ? -1 : it->second;
  }
  std::size_t size() const { return map_.size(); }

 private:
  std::vector<std::unique_ptr<std::string>> storage_;
  std::unordered_map<std::string_view, int> map_;
};

// Appends the ids of one pre-tokenized piece with tiktoken semantics: the whole piece if it is a
// token, else lowest-rank-first merging starting from single bytes. Throws k2::Error if a single
// byte is missing from the table.
void tiktoken_encode_piece(std::string_view piece, const RankTable& ranks, std::vector<int>& out);

// Hugging Face BPE merge table: (left id, right id) -> (priority, merged id).
struct MergeRule {
  int rank;
  int new_id;
};
class MergeTable {
 public:
  void add(int left, int right, int rank, int new_id);
  const MergeRule* find(int left, int right) const {
    auto it = map_.find(key(left, right));
    return it == map_.end() ? nullptr : &it->second;
  }
  std::size_t size() const { return map_.size(); }

 private:
  static std::uint64_t key(int l, int r) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << 32) | static_cast<std::uint32_t>(r);
  }
  std::unordered_map<std::uint64_t, MergeRule> map_;
};

// Merges symbol ids in place as tokenizers' BPE Word::merge_all does (lowest priority first, leftmost
// on ties; a queued merge is applied while the pair at its position still produces the same id).
void hf_merge_symbols(std::vector<int>& ids, const MergeTable& merges);

}  // namespace k2
