// UTF-8 helpers for the text layer: decoding code points, repairing invalid input the way Python's
// bytes.decode("utf-8", "replace") does, and finding where an incomplete trailing sequence starts.
// Knows nothing about tokens; tokenizers and the streaming decoder build on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace k2::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;

// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 if the bytes there are not a
// complete, well-formed sequence (overlong forms, surrogates and values above U+10FFFF are invalid).
std::size_t valid_sequence_length(std::string_view s, std::size_t i);

// Decodes the code point at s[i]; returns its byte length in *len. Invalid bytes decode to U+FFFD
// with *len set to the "maximal subpart" length that Python and the Unicode standard replace.
char32_t decode(std::string_view s, std::size_t i, std::size_t* len);

// Appends the UTF-8 encoding of cp (which must be a scalar value) to out.
void append(std::string& out, char32_t cp);

bool is_valid(std::string_view s);

// Replaces every maximal invalid subpart with U+FFFD, byte for byte as Python's
// bytes.decode("utf-8", errors="replace") does; valid input is returned unchanged.
std::string sanitize(std::string_view s);

// Number of bytes at the end of s that form the beginning of a well-formed sequence that is not yet
// complete (0..3). A streaming decoder holds exactly these bytes back.
std::size_t incomplete_tail(std::string_view s);

// Python's str.isspace() for one code point (Unicode White_Space-like set used by CPython:
// bidirectional class WS/B/S or general category Zs).
bool python_isspace(char32_t cp);

// Number of code points in valid UTF-8 text.
std::size_t count_code_points(std::string_view s);

}  // namespace k2::utf8
