// Reading one .safetensors file: strict header parsing (hostile input is rejected with a clear
// error before any tensor is touched) and reading single tensors into MLX arrays on demand.
// Does not know about shards, model layouts or quantization (see checkpoint.h, model/weights.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/array.h"

namespace k2 {

// The dtypes a safetensors header may name. F8 types load as raw bytes (uint8 arrays).
enum class StDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2 };

const char* to_string(StDtype dtype);
size_t dtype_size(StDtype dtype);

struct TensorInfo {
  std::string name;
  StDtype dtype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset of the data in the file
  uint64_t nbytes = 0;

  int64_t numel() const;
  std::string shape_string() const;  // "[163840, 896]"
};

// Parses and validates a header (the JSON text after the 8-byte length) against the size of the data
// section. Throws CheckpointError naming `file` for bad JSON, unknown dtypes, negative or overflowing
// shapes, offsets past the end, sizes that do not match dtype x shape, and overlapping tensors.
std::map<std::string, TensorInfo> parse_safetensors_header(const std::string& header_json,
                                                           uint64_t data_size, uint64_t data_start,
                                                           const std::string& file);

// Host memory for `nbytes` of tensor data from MLX's allocator (so an array owns it without a copy). Where
// the platform has transparent huge pages (Linux madvise), a large buffer asks for them: the first touch of
// fresh 4 KiB pages is what limits reading from the page cache (one fault per page, inside read()).
mlx::core::allocator::Data allocate_tensor_buffer(uint64_t nbytes);

// An array of `t`'s dtype and shape that owns `buffer` (from allocate_tensor_buffer, filled by the caller).
mlx::core::array tensor_array(const TensorInfo& t, mlx::core::allocator::Data buffer);

class SafetensorsFile {
 public:
  // Opens the file and validates its header. Throws CheckpointError on any problem.
  explicit SafetensorsFile(std::string path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;

  // Reads one tensor's bytes from disk into a new array (F8 types as uint8). Thread-safe.
  mlx::core::array read(const std::string& name) const;

  // Reads bytes [begin, begin + len) of tensor `t`'s data (t from this file) into `dst`. Thread-safe:
  // positional reads, so several threads may read parts of one file at once. Throws CheckpointError
  // naming the file and tensor when the file ends early (truncated after it was opened) or a read fails.
  void read_bytes(const TensorInfo& t, uint64_t begin, uint64_t len, char* dst) const;

  // Tells the OS that `t`'s bytes will be read soon, so the disk fetches them while earlier tensors are
  // copied (posix_fadvise WILLNEED on Linux, F_RDADVISE on macOS; nothing elsewhere). Never fails.
  void advise_will_read(const TensorInfo& t) const;

 private:
  std::string path_;
  uint64_t file_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  int fd_ = -1;  // POSIX descriptor, read with pread
};

// Largest header we accept (MLX's own loader uses the same bound).
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1024 * 1024;

}  // namespace k2
