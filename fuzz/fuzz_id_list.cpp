// libFuzzer target: the token-id list parser of the command line (apps/k2mlx/id_list.h: comma- or
// whitespace-separated ids, one per line, or a JSON array). Input is accepted or refused with an
// InputError; accepted lists are non-empty and every id lies in [0, 2e9] (no wrapped 64-bit value).
#include "core/error.h"
#include "fuzz_support.h"
#include "id_list.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const std::vector<int> ids = k2::cli::parse_ids(k2::fuzz::as_string(data, size), "--ids");
    k2::fuzz::check(!ids.empty(), "an accepted list is not empty");
    for (int id : ids) k2::fuzz::check(id >= 0 && id <= 2'000'000'000, "id in range");
  } catch (const k2::InputError&) {
  }
  return 0;
}
