// UTF-8 decoding and repair with Python-compatible replacement semantics (see utf8.h).
#include "text/utf8.h"

namespace k2::utf8 {
namespace {

// Bounds of the second byte for a lead byte, per the Unicode well-formed byte sequence table
// (Unicode 15, table 3-7); continuation bytes after the second are always 0x80..0xBF.
struct LeadInfo {
  std::size_t length;
  unsigned char lo;
  unsigned char hi;
};

LeadInfo lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

// Length of the longest prefix of the sequence at i that is still a possible start of a
// well-formed sequence (the "maximal subpart"), at least 1.
std::size_t maximal_subpart(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  LeadInfo info = lead_info(b0);
  if (info.length <= 1) return 1;
  std::size_t n = 1;
  for (std::size_t k = 1; k < info.length && i + k < s.size(); ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char lo = (k == 1) ? info.lo : 0x80;
    const unsigned char hi = (k == 1) ? info.hi : 0xBF;
    if (b < lo || b > hi) break;
    ++n;
  }
  return n;
}

}  // namespace

std::size_t valid_sequence_length(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  LeadInfo info = lead_info(b0);
  if (info.length == 0) return 0;
  if (info.length == 1) return 1;
  if (i + info.length > s.size()) return 0;
  return maximal_subpart(s, i) == info.length ? info.length : 0;
}

char32_t decode(std::string_view s, std::size_t i, std::size_t* len) {
  const std::size_t n = valid_sequence_length(s, i);
  if (n == 0) {
    *len = maximal_subpart(s, i);
    return kReplacement;
  }
  *len = n;
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (n == 1) return b0;
  char32_t cp = b0 & (0x7F >> n);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_valid(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = valid_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string sanitize(std::string_view s) {
  if (is_valid(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 16);
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = valid_sequence_length(s, i);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      append(out, kReplacement);
      i += maximal_subpart(s, i);
    }
  }
  return out;
}

std::size_t incomplete_tail(std::string_view s) {
  // A pending sequence starts at most 3 bytes before the end.
  const std::size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (std::size_t i = from; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: not a start
    LeadInfo info = lead_info(b);
    if (info.length <= 1) continue;
    const std::size_t have = s.size() - i;
    if (have < info.length && maximal_subpart(s, i) == have) return have;
  }
  return 0;
}

bool python_isspace(char32_t cp) {
  // CPython's _PyUnicode_IsWhitespace table (stable across Unicode versions since 6.x).
  switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D:
    case 0x1C: case 0x1D: case 0x1E: case 0x1F: case 0x20:
    case 0x85: case 0xA0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

std::size_t count_code_points(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace k2::utf8
