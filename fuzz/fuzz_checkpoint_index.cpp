// libFuzzer target: model.safetensors.index.json (io/checkpoint.h parse_checkpoint_index). Input is
// accepted or refused with a CheckpointError; no accepted shard name is absolute or climbs out with "..".
#include <filesystem>

#include "core/error.h"
#include "fuzz_support.h"
#include "io/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    for (const auto& [name, file] : k2::parse_checkpoint_index(k2::fuzz::as_string(data, size), "fuzz/index.json")) {
      const std::filesystem::path p(file);
      k2::fuzz::check(!p.is_absolute(), "absolute shard name accepted");
      for (const auto& part : p) k2::fuzz::check(part != "..", "shard name with .. accepted");
    }
  } catch (const k2::CheckpointError&) {
  }
  return 0;
}
