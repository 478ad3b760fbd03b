// GPT-2's byte <-> printable-character map used by byte-level BPE (tokenizer.json vocabularies store
// tokens as these characters). Pure mapping; no tokenizer logic.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace k2::byte_level {

// The character that byte b is written as (bytes_to_unicode in GPT-2 / tokenizers).
char32_t byte_to_char(unsigned char b);
// The byte a character stands for, if it is one of the 256 mapped characters.
std::optional<unsigned char> char_to_byte(char32_t c);

// Maps every byte of raw to its character (UTF-8 encoded result).
std::string encode(std::string_view raw);

// tokenizers' ByteLevel decoder for one token string: the mapped bytes if every character is a
// mapped one, else the token's own UTF-8 bytes.
std::string decode_token(std::string_view token);

}  // namespace k2::byte_level
