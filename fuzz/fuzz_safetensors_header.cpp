// libFuzzer target: the safetensors header parser (io/safetensors.h). The first 4 bytes give the size of
// the data section, the rest is the header JSON. A header is accepted or refused with a CheckpointError;
// accepted tensors lie inside the data section, do not overlap and have nbytes = numel x dtype size.
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "fuzz_support.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t data_size = 0;
  std::memcpy(&data_size, data, 4);
  const std::string header = k2::fuzz::as_string(data + 4, size - 4);
  const uint64_t data_start = 8 + header.size();
  try {
    const auto tensors = k2::parse_safetensors_header(header, data_size, data_start, "fuzz.safetensors");
    std::vector<const k2::TensorInfo*> by_offset;
    for (const auto& [name, t] : tensors) {
      k2::fuzz::check(name == t.name, "tensor name");
      k2::fuzz::check(t.offset >= data_start && t.offset - data_start <= data_size &&
                          t.nbytes <= data_size - (t.offset - data_start), "tensor outside the data section");
      k2::fuzz::check(t.nbytes == static_cast<uint64_t>(t.numel()) * k2::dtype_size(t.dtype), "nbytes");
      (void)t.shape_string();
      if (t.nbytes) by_offset.push_back(&t);
    }
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i)
      k2::fuzz::check(by_offset[i - 1]->offset + by_offset[i - 1]->nbytes <= by_offset[i]->offset, "overlap");
  } catch (const k2::CheckpointError&) {
  }
  return 0;
}
