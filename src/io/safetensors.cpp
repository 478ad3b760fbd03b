// Strict safetensors parsing and on-demand tensor reads (format: huggingface/safetensors README:
// 8-byte little-endian header length, JSON header, then a data section addressed by data_offsets).
#include "io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "mlx/allocator.h"

namespace k2 {
namespace mx = mlx::core;
using nlohmann::json;

namespace {

struct DtypeEntry {
  const char* name;
  StDtype dtype;
  size_t size;
};

constexpr DtypeEntry kDtypes[] = {
    {"F64", StDtype::F64, 8},   {"F32", StDtype::F32, 4},         {"F16", StDtype::F16, 2},
    {"BF16", StDtype::BF16, 2}, {"I64", StDtype::I64, 8},         {"I32", StDtype::I32, 4},
    {"I16", StDtype::I16, 2},   {"I8", StDtype::I8, 1},           {"U64", StDtype::U64, 8},
    {"U32", StDtype::U32, 4},   {"U16", StDtype::U16, 2},         {"U8", StDtype::U8, 1},
    {"BOOL", StDtype::BOOL, 1}, {"F8_E4M3", StDtype::F8_E4M3, 1}, {"F8_E5M2", StDtype::F8_E5M2, 1},
};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& e : kDtypes)
    if (name == e.name) return &e;
  return nullptr;
}

mx::Dtype to_mlx(StDtype d) {
  switch (d) {
    case StDtype::F64: return mx::float64;
    case StDtype::F32: return mx::float32;
    case StDtype::F16: return mx::float16;
    case StDtype::BF16: return mx::bfloat16;
    case StDtype::I64: return mx::int64;
    case StDtype::I32: return mx::int32;
    case StDtype::I16: return mx::int16;
    case StDtype::I8: return mx::int8;
    case StDtype::U64: return mx::uint64;
    case StDtype::U32: return mx::uint32;
    case StDtype::U16: return mx::uint16;
    case StDtype::U8: return mx::uint8;
    case StDtype::BOOL: return mx::bool_;
    case StDtype::F8_E4M3:
    case StDtype::F8_E5M2: return mx::uint8;  // raw bytes; converted by the weight binder
  }
  throw Error("unreachable dtype");
}

// One pread call moves at most this much (macOS rejects counts above INT_MAX).
constexpr uint64_t kMaxPread = 64ull << 20;

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

const char* to_string(StDtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e.name;
  return "?";
}

size_t dtype_size(StDtype dtype) {
  for (const auto& e : kDtypes)
    if (e.dtype == dtype) return e.size;
  return 0;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

std::map<std::string, TensorInfo> parse_safetensors_header(const std::string& header_json,
                                                           uint64_t data_size, uint64_t data_start,
                                                           const std::string& file) {
  // A real header is 3 levels deep; deeper nesting is refused while parsing, since printing a value
  // (metadata entries are dumped) recurses once per level and a hostile file could overflow the stack.
  constexpr int kMaxDepth = 16;
  auto limit_depth = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) && depth >= kMaxDepth)
      throw CheckpointError(fmt::format("{}: safetensors header is nested more than {} levels deep", file, kMaxDepth));
    return true;
  };
  json header;
  try {
    header = json::parse(header_json, limit_depth);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number such as 1e400
    throw CheckpointError(fmt::format("{}: safetensors header is not valid JSON ({})", file, e.what()));
  }
  if (!header.is_object())
    throw CheckpointError(fmt::format("{}: safetensors header must be a JSON object", file));

  std::map<std::string, TensorInfo> tensors;
  for (auto& item : header.items()) {
    // Named references, not a structured binding: clang before 16 cannot capture a binding in the lambda below.
    const std::string& name = item.key();
    auto& entry = item.value();
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& what) {
      return CheckpointError(fmt::format("{}: tensor '{}': {}", file, name, what));
    };
    if (!entry.is_object()) throw bad("header entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) throw bad("missing string 'dtype'");
    if (!entry.contains("shape") || !entry["shape"].is_array()) throw bad("missing array 'shape'");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      throw bad("missing 'data_offsets' [begin, end]");

    const std::string dtype_name = entry["dtype"].get<std::string>();
    const DtypeEntry* dt = find_dtype(dtype_name);
    if (!dt) throw bad(fmt::format("unsupported dtype '{}'", dtype_name));

    TensorInfo info;
    info.name = name;
    info.dtype = dt->dtype;
    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw bad(fmt::format("shape {} has a negative or non-integer dimension", entry["shape"].dump()));
      const auto dim = d.get<uint64_t>();
      if (dim > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
        throw bad(fmt::format("dimension {} is too large", dim));
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim)
        throw bad("shape overflows");
      numel *= dim;
      info.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const auto& o : entry["data_offsets"])
      if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
        throw bad("data_offsets must be non-negative integers");
    const auto begin = entry["data_offsets"][0].get<uint64_t>();
    const auto end = entry["data_offsets"][1].get<uint64_t>();
    if (begin > end) throw bad(fmt::format("data_offsets [{}, {}] are reversed", begin, end));
    if (end > data_size)
      throw bad(fmt::format("data_offsets end {} lies past the end of the data section ({} bytes); "
                            "the file is truncated or the header is corrupt",
                            end, data_size));
    if (numel > std::numeric_limits<uint64_t>::max() / dt->size) throw bad("byte size overflows");
    if (end - begin != numel * dt->size)
      throw bad(fmt::format("holds {} bytes but dtype {} x shape {} needs {}", end - begin, dtype_name,
                            info.shape_string(), numel * dt->size));
    info.offset = data_start + begin;
    info.nbytes = end - begin;
    tensors.emplace(name, std::move(info));
  }

  // Overlapping data ranges mean a corrupt or malicious header.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [_, t] : tensors)
    if (t.nbytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const auto* prev = by_offset[i - 1];
    if (prev->offset + prev->nbytes > by_offset[i]->offset)
      throw CheckpointError(fmt::format("{}: tensors '{}' and '{}' overlap in the data section", file,
                                        prev->name, by_offset[i]->name));
  }
  return tensors;
}

SafetensorsFile::SafetensorsFile(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  file_size_ = std::filesystem::file_size(path_, ec);
  if (ec) throw CheckpointError(fmt::format("{}: cannot open ({})", path_, ec.message()));
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw CheckpointError(fmt::format("{}: cannot open for reading ({})", path_, std::strerror(errno)));
  try {
    if (file_size_ < 8)
      throw CheckpointError(fmt::format("{}: {} bytes is too short for a safetensors file", path_, file_size_));
    const TensorInfo whole{"header", StDtype::U8, {}, 0, file_size_};
    unsigned char len_bytes[8];
    read_bytes(whole, 0, 8, reinterpret_cast<char*>(len_bytes));
    const uint64_t header_len = read_u64_le(len_bytes);
    if (header_len > kMaxSafetensorsHeader)
      throw CheckpointError(fmt::format("{}: header length {} exceeds the {} byte limit", path_, header_len,
                                        kMaxSafetensorsHeader));
    if (header_len > file_size_ - 8)
      throw CheckpointError(fmt::format("{}: header length {} runs past the end of the {} byte file "
                                        "(truncated?)", path_, header_len, file_size_));
    std::string header(header_len, '\0');
    read_bytes(whole, 8, header_len, header.data());

    const uint64_t data_start = 8 + header_len;
    tensors_ = parse_safetensors_header(header, file_size_ - data_start, data_start, path_);
    auto parsed = json::parse(header);
    if (parsed.contains("__metadata__") && parsed["__metadata__"].is_object())
      for (auto& [k, v] : parsed["__metadata__"].items())
        metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end())
    throw CheckpointError(fmt::format("{}: no tensor named '{}'", path_, name));
  return it->second;
}

void SafetensorsFile::read_bytes(const TensorInfo& t, uint64_t begin, uint64_t len, char* dst) const {
  uint64_t done = 0;
  while (done < len) {
    const auto want = static_cast<size_t>(std::min(len - done, kMaxPread));
    const ssize_t got = ::pread(fd_, dst + done, want, static_cast<off_t>(t.offset + begin + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      throw CheckpointError(fmt::format("{}: reading tensor '{}' failed at byte {} ({})", path_, t.name,
                                        begin + done, std::strerror(errno)));
    if (got == 0)
      throw CheckpointError(fmt::format("{}: short read of tensor '{}' ({} of {} bytes); the file ends early "
                                        "(truncated after it was opened?)",
                                        path_, t.name, begin + done, t.nbytes));
    done += static_cast<uint64_t>(got);
  }
}

void SafetensorsFile::advise_will_read(const TensorInfo& t) const {
  if (t.nbytes == 0) return;
#if defined(POSIX_FADV_WILLNEED)
  posix_fadvise(fd_, static_cast<off_t>(t.offset), static_cast<off_t>(t.nbytes), POSIX_FADV_WILLNEED);
#elif defined(F_RDADVISE)
  for (uint64_t done = 0; done < t.nbytes; done += kMaxPread) {
    radvisory ra{static_cast<off_t>(t.offset + done), static_cast<int>(std::min(t.nbytes - done, kMaxPread))};
    fcntl(fd_, F_RDADVISE, &ra);
  }
#endif
}

mx::array SafetensorsFile::read(const std::string& name) const {
  const TensorInfo& t = info(name);
  auto data = allocate_tensor_buffer(t.nbytes);
  read_bytes(t, 0, t.nbytes, static_cast<char*>(data.buffer().raw_ptr()));
  return tensor_array(t, std::move(data));
}

mx::allocator::Data allocate_tensor_buffer(uint64_t nbytes) {
  auto data = mx::allocator::malloc(std::max<uint64_t>(nbytes, 1));
#if defined(MADV_HUGEPAGE)
  // Linux only (macOS has no transparent huge pages): 2 MiB pages cut the first-touch faults 512-fold.
  // Advice on the page-aligned interior; failure (THP disabled) just leaves 4 KiB pages.
  constexpr uint64_t kHuge = 2ull << 20;
  if (nbytes >= 2 * kHuge) {
    const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const auto p = reinterpret_cast<uintptr_t>(data.buffer().raw_ptr());
    const uintptr_t first = (p + page - 1) / page * page, last = (p + nbytes) / page * page;
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return data;
}

mx::array tensor_array(const TensorInfo& t, mx::allocator::Data buffer) {
  mx::Shape shape(t.shape.begin(), t.shape.end());
  return mx::array(std::move(buffer), std::move(shape), to_mlx(t.dtype));
}

}  // namespace k2
