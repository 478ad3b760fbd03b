// Unit tests for UTF-8 repair / holdback and BPE merging (text/utf8.h, text/bpe.h).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>

#include "text/bpe.h"
#include "text/utf8.h"

namespace {

TEST(TextUtf8, SanitizeReplacesMaximalSubparts) {
  // Unicode 15 §3.9, Table 3-8: "61 F1 80 80 E1 80 C2 62 80 63 80 BF 64" -> a, 3 x FFFD, b, FFFD, c, 2 x FFFD, d.
  const std::string in = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(k2::utf8::sanitize(in), "a" + r + r + r + "b" + r + "c" + r + r + "d");
  EXPECT_EQ(k2::utf8::sanitize("\xED\xA0\x80"), r + r + r);  // a surrogate: each byte replaced
  EXPECT_EQ(k2::utf8::sanitize("\xC0\xAF"), r + r);          // overlong
  EXPECT_EQ(k2::utf8::sanitize("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(TextUtf8, IncompleteTail) {
  EXPECT_EQ(k2::utf8::incomplete_tail("ab\xE4\xB8"), 2u);
  EXPECT_EQ(k2::utf8::incomplete_tail("ab\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(k2::utf8::incomplete_tail("\xF0\x9F\x8E"), 3u);
  EXPECT_EQ(k2::utf8::incomplete_tail("a\x80"), 0u);      // a stray continuation byte is not pending
  EXPECT_EQ(k2::utf8::incomplete_tail("a\xE0\x80"), 0u);  // E0 80 can never become valid
}

// tiktoken's byte_pair_merge written the obvious quadratic way, as the oracle for the heap version.
std::vector<int> naive_tiktoken(const std::string& piece, const std::map<std::string, int>& ranks) {
  auto it = ranks.find(piece);
  if (it != ranks.end()) return {it->second};
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  while (true) {
    int best = -1;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      auto f = ranks.find(parts[i] + parts[i + 1]);
      if (f != ranks.end() && (best < 0 || f->second < best)) {
        best = f->second;
        at = i;
      }
    }
    if (best < 0) break;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  std::vector<int> ids;
  for (const auto& p : parts) ids.push_back(ranks.at(p));
  return ids;
}

TEST(TextBpe, HeapMergeEqualsQuadraticReference) {
  std::mt19937 rng(5);
  std::map<std::string, int> ranks;
  k2::RankTable table;
  int next = 0;
  for (char c : std::string("abcd")) {
    ranks[std::string(1, c)] = next;
    table.add(std::string(1, c), next++);
  }
  // Random multi-byte tokens over a 4-letter alphabet (each added with its left part present so
  // that merges can reach it, as in a trained vocabulary; some are unreachable on purpose).
  for (int k = 0; k < 300; ++k) {
    std::string t;
    const int len = 2 + static_cast<int>(rng() % 5);
    for (int i = 0; i < len; ++i) t.push_back("abcd"[rng() % 4]);
    if (ranks.count(t)) continue;
    ranks[t] = next;
    table.add(t, next++);
  }
  for (int trial = 0; trial < 2000; ++trial) {
    std::string piece;
    const int len = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < len; ++i) piece.push_back("abcd"[rng() % 4]);
    std::vector<int> got;
    k2::tiktoken_encode_piece(piece, table, got);
    ASSERT_EQ(got, naive_tiktoken(piece, ranks)) << piece;
  }
}

TEST(TextBpe, LongPieceIsNotQuadratic) {
  k2::RankTable table;
  table.add("a", 0);
  table.add("aa", 1);
  table.add("aaaa", 2);
  std::vector<int> ids;
  const auto t0 = std::chrono::steady_clock::now();
  k2::tiktoken_encode_piece(std::string(1 << 20, 'a'), table, ids);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids, std::vector<int>(1 << 18, 2));
  EXPECT_LT(s, 5.0);  // a quadratic merge would take hours on 1 MiB
}

TEST(TextBpe, HfMergePriorityAndLeftmostTies) {
  // ids: a=0 b=1 ab=2 bb=3 ; merges: (b,b) first, then (a,b).
  k2::MergeTable m;
  m.add(1, 1, 0, 3);
  m.add(0, 1, 1, 2);
  std::vector<int> ids = {0, 1, 1, 1};  // a b b b -> a (bb) b -> no (a,bb) merge ; (bb,b) none
  k2::hf_merge_symbols(ids, m);
  EXPECT_EQ(ids, (std::vector<int>{0, 3, 1}));
  std::vector<int> ids2 = {1, 1, 1, 1};  // leftmost first: (bb)(bb)
  k2::hf_merge_symbols(ids2, m);
  EXPECT_EQ(ids2, (std::vector<int>{3, 3}));
}

}  // namespace
