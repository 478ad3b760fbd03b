// Loading tiktoken-format vocabularies (Kimi-K2's tiktoken.model: "<base64 bytes> <rank>" per line)
// and the Kimi pre-tokenizer pattern. The generic Tokenizer class does the rest.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace k2 {

// Kimi's pat_str exactly as tokenization_kimi.py writes it (Rust-regex syntax, with `&&`).
std::string_view kimi_pat_str();

// Reads a tiktoken rank file; returns token bytes indexed by rank (gaps stay empty).
std::vector<std::string> read_tiktoken_ranks(const std::string& path);

// Builds a tiktoken tokenizer from ranks, a pattern in Rust-regex syntax (translated for PCRE2) and
// special tokens (ids may extend the vocabulary). kimi_chunking applies tokenization_kimi.py's
// 400k / 25k input chunking.
std::unique_ptr<Tokenizer> make_tiktoken_tokenizer(std::vector<std::string> ranks, std::string_view pat_str,
                                                   std::vector<AddedToken> specials, bool kimi_chunking);

}  // namespace k2
