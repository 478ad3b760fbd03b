// GPT-2 bytes_to_unicode table and its inverse (see byte_level.h).
#include "text/byte_level.h"

#include <array>

#include "text/utf8.h"

namespace k2::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_char{};
  Tables() {
    // Printable Latin-1 bytes stand for themselves; the other 68 bytes take 256, 257, ... in order.
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_char[b] = printable ? static_cast<char32_t>(b) : next++;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_char(unsigned char b) { return tables().to_char[b]; }

std::optional<unsigned char> char_to_byte(char32_t c) {
  if (c < 256) {
    const bool printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174);
    if (printable) return static_cast<unsigned char>(c);
    return std::nullopt;
  }
  if (c >= 256 + 68) return std::nullopt;
  for (int b = 0; b < 256; ++b)
    if (tables().to_char[b] == c) return static_cast<unsigned char>(b);
  return std::nullopt;
}

std::string encode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) utf8::append(out, byte_to_char(b));
  return out;
}

std::string decode_token(std::string_view token) {
  std::string out;
  for (std::size_t i = 0; i < token.size();) {
    std::size_t len = 1;
    const char32_t c = utf8::decode(token, i, &len);
    const auto b = char_to_byte(c);
    if (!b) return std::string(token);
    out.push_back(static_cast<char>(*b));
    i += len;
  }
  return out;
}

}  // namespace k2::byte_level
