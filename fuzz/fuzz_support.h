// Shared pieces of the libFuzzer targets: reading the fixed inputs a target loads once (templates, a
// tokenizer), and the rule every target checks: hostile input may be refused with a k2::InputError, but
// nothing else may escape (another exception means a 500 or a dead process; libFuzzer reports it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace k2::fuzz {

inline std::string read_file_or_die(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot read %s\n", path.c_str());
    std::abort();
  }
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A broken invariant in what the library returned: abort, so libFuzzer saves the input.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

}  // namespace k2::fuzz
