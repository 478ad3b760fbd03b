// libFuzzer target: encoding arbitrary bytes with two tokenizers, a byte-level BPE tokenizer.json made by
// tools/make_tiny_model.py (fuzz/data/tokenizer.json) and a tiktoken vocabulary with Kimi's pattern and
// input chunking. Ids must lie in the vocabulary, and decoding them gives the text back (invalid UTF-8
// replaced by U+FFFD, as encode documents).
#include <filesystem>

#include "fuzz_support.h"
#include "text/tiktoken_tokenizer.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

namespace {

std::unique_ptr<k2::Tokenizer> make_kimi() {
  std::vector<std::string> ranks;
  for (int b = 0; b < 256; ++b) ranks.emplace_back(1, static_cast<char>(b));
  for (const char* t : {"he", "ll", "hell", "hello", " w", "or", "ld", "\xE4\xB8", "\xE4\xB8\xAD", "  ", "\n\n"})
    ranks.emplace_back(t);
  const int n = static_cast<int>(ranks.size());
  std::vector<k2::AddedToken> specials = {{"[BOS]", n}, {"[EOS]", n + 1}, {"<|im_end|>", n + 2}};
  return k2::make_tiktoken_tokenizer(std::move(ranks), k2::kimi_pat_str(), std::move(specials), true);
}

void round_trip(const k2::Tokenizer& tok, const std::string& text) {
  const std::string want = k2::utf8::sanitize(text);
  for (bool allow_special : {false, true}) {
    const std::vector<int> ids = tok.encode(text, allow_special);
    for (int id : ids) k2::fuzz::check(id >= 0 && id < tok.vocab_size(), "id outside the vocabulary");
    k2::fuzz::check(tok.decode(ids) == want, "decode(encode(text)) differs from the text");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<k2::Tokenizer> hf = k2::load_hf_tokenizer(K2_FUZZ_DATA "/tokenizer.json");
  static const std::unique_ptr<k2::Tokenizer> kimi = make_kimi();
  const std::string text = k2::fuzz::as_string(data, size);
  round_trip(*hf, text);
  round_trip(*kimi, text);
  return 0;
}
