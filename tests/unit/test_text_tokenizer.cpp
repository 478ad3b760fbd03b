// Unit tests for the tokenizer facade, the Kimi regex translation and streaming decoding
// (text/tokenizer.h, text/regex.h, text/streaming_decoder.h) on small hand-made vocabularies.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "text/regex.h"
#include "text/streaming_decoder.h"
#include "text/tiktoken_tokenizer.h"
#include "text/utf8.h"

namespace {

namespace fs = std::filesystem;

std::vector<std::string> pieces(const std::string& text) {
  k2::Regex re(k2::translate_regex(k2::kimi_pat_str()));
  std::vector<std::string> out;
  for (const k2::Span& s : re.find_all(text)) out.push_back(text.substr(s.begin, s.end - s.begin));
  return out;
}

TEST(TextRegex, TranslatesClassIntersectionsScriptsAndNel) {
  EXPECT_EQ(k2::translate_regex(R"([\p{L}&&[^\p{Han}]]+)"), R"((?:(?=[^\p{sc:Han}])[\p{L}])+)");
  EXPECT_EQ(k2::translate_regex(R"(\s+(?!\S))"), R"([\s\x{85}]+(?![^\s\x{85}]))");
  EXPECT_EQ(k2::translate_regex(R"([^\s\p{L}])"), R"([^\s\x{85}\p{L}])");
  EXPECT_THROW(k2::translate_regex("[a[b]]"), k2::InputError);
}

TEST(TextRegex, KimiPatternSplitsAsTheRustRegexDoes) {
  // Letter runs split at case changes (spec §7.2): camelCase becomes words.
  EXPECT_EQ(pieces("getUserName"), (std::vector<std::string>{"get", "User", "Name"}));
  // Han runs are separate from other letters; kana stay with letters.
  EXPECT_EQ(pieces("abc中文def"), (std::vector<std::string>{"abc", "中文", "def"}));
  // U+3001 has Script=Common (Script_Extensions include Han): not part of a Han run.
  EXPECT_EQ(pieces("中、文"), (std::vector<std::string>{"中", "、", "文"}));
  // Digits in groups of three, contractions case-insensitively.
  EXPECT_EQ(pieces("12345 DON'T"), (std::vector<std::string>{"123", "45", " DON'T"}));
  // U+0085 is White_Space for Rust's \s.
  EXPECT_EQ(pieces("a\xC2\x85\xC2\x85" "b"), (std::vector<std::string>{"a", "\xC2\x85", "\xC2\x85" "b"}));
}

class TinyKimi : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("k2_text_tiny_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    // Every byte, then a few merges; base64 of each token.
    std::ofstream f(dir_ / "tiktoken.model");
    std::vector<std::string> toks;
    for (int b = 0; b < 256; ++b) toks.emplace_back(1, static_cast<char>(b));
    for (const char* t : {"he", "ll", "hell", "hello", " w", "or", "ld", "\xE4\xB8", "\xE4\xB8\xAD"}) toks.emplace_back(t);
    for (std::size_t r = 0; r < toks.size(); ++r) f << b64(toks[r]) << ' ' << r << '\n';
    f.close();
    std::ofstream c(dir_ / "tokenizer_config.json");
    c << R"({"added_tokens_decoder": {"267": {"content": "<|im_end|>", "special": true}}})";
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string b64(const std::string& s) {
    static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    int val = 0, bits = -6;
    for (unsigned char ch : s) {
      val = (val << 8) + ch;
      bits += 8;
      while (bits >= 0) {
        out.push_back(a[(val >> bits) & 0x3F]);
        bits -= 6;
      }
    }
    if (bits > -6) out.push_back(a[((val << 8) >> (bits + 8)) & 0x3F]);
    while (out.size() % 4) out.push_back('=');
    return out;
  }
  fs::path dir_;
};

TEST_F(TinyKimi, EncodeDecodeSpecials) {
  auto tok = k2::load_tokenizer(dir_.string());
  EXPECT_EQ(tok->vocab_size(), 265 + 256);
  EXPECT_EQ(tok->special_token_id("<|im_end|>"), 267);
  EXPECT_EQ(tok->special_token_id("<|reserved_token_265|>"), 265);
  // "hello" is a whole token (rank 259); " world" = " w" + "or" + "ld".
  EXPECT_EQ(tok->encode("hello world"), (std::vector<int>{259, 260, 261, 262}));
  EXPECT_EQ(tok->encode("hi<|im_end|>"), (std::vector<int>{'h', 'i', 267}));
  EXPECT_EQ(tok->encode("<|im_end|>", false).size(), 10u);
  EXPECT_EQ(tok->decode({259, 267}), "hello<|im_end|>");
  EXPECT_EQ(tok->decode({259, 267}, true), "hello");
  EXPECT_EQ(tok->decode({0xE4}), "\xEF\xBF\xBD");
  EXPECT_THROW(tok->decode({100000}), k2::InputError);
}

TEST_F(TinyKimi, StreamingNeverBreaksUtf8AndEqualsDecode) {
  auto tok = k2::load_tokenizer(dir_.string());
  std::mt19937 rng(9);
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<int> ids;
    for (int k = 0, n = static_cast<int>(rng() % 12); k < n; ++k) ids.push_back(static_cast<int>(rng() % tok->vocab_size()));
    const bool skip = trial % 2;
    k2::StreamingDecoder dec(*tok, skip);
    std::string text;
    for (int id : ids) {
      const std::string chunk = dec.push(id);
      ASSERT_TRUE(k2::utf8::is_valid(chunk));
      text += chunk;
    }
    text += dec.flush();
    ASSERT_EQ(text, tok->decode(ids, skip));
  }
  k2::StreamingDecoder dec(*tok);
  EXPECT_EQ(dec.push(263), "");  // first two bytes of U+4E2D are held back
  EXPECT_EQ(dec.push(0xAD), "中");
}

TEST_F(TinyKimi, RandomBytesNeverCrash) {
  auto tok = k2::load_tokenizer(dir_.string());
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s;
    for (int k = 0, n = static_cast<int>(rng() % 64); k < n; ++k) s.push_back(static_cast<char>(rng()));
    const std::vector<int> ids = tok->encode(s);
    ASSERT_EQ(tok->decode(ids), k2::utf8::sanitize(s));
  }
}

TEST(TextTokenizer, FolderWithoutTokenizerIsAnInputError) {
  const fs::path d = fs::temp_directory_path() / "k2_text_empty_model";
  fs::create_directories(d);
  try {
    k2::load_tokenizer(d.string());
    FAIL() << "expected k2::InputError";
  } catch (const k2::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tiktoken.model"), std::string::npos);
  }
  std::ofstream(d / "tiktoken.model") << "not base64!! 0\n";
  EXPECT_THROW(k2::load_tokenizer(d.string()), k2::InputError);
  fs::remove_all(d);
}

}  // namespace
