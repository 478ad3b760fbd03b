// A checkpoint folder: config.json plus one or many .safetensors shards (with or without
// model.safetensors.index.json). Maps every tensor name to its shard; reads tensors on demand so a
// caller that needs only some layers reads only their bytes. With an index, a shard is opened (and
// its header validated) only when one of its tensors is first needed, so a pipeline stage works on
// a machine that holds only its own shards. Knows nothing about model semantics.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"

namespace k2 {

// The weight map of a model.safetensors.index.json text, as (tensor, shard file) pairs in name order.
// Throws CheckpointError for invalid JSON, a missing "weight_map" object, a non-string entry or a shard
// name that leaves the model folder. `source` names the file in errors.
std::vector<std::pair<std::string, std::string>> parse_checkpoint_index(const std::string& text,
                                                                        const std::string& source);

class Checkpoint {
 public:
  // Opens `dir`. Without an index every *.safetensors file is opened and validated now; with one,
  // only the index is read. Throws CheckpointError for a missing folder, a malformed index, shard
  // names that leave the folder, and (when opened) malformed shards or tensors a shard lacks.
  explicit Checkpoint(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  // Header facts of a tensor (opens its shard). Throws CheckpointError if absent or its shard is bad.
  const TensorInfo& info(const std::string& name) const;
  std::optional<TensorInfo> find(const std::string& name) const;
  std::vector<std::string> names() const;
  // The shard file that holds a tensor (throws CheckpointError if absent); opens nothing.
  std::filesystem::path file_of(const std::string& name) const;
  size_t shard_count() const { return shards_.size(); }

  // Reads one tensor (throws CheckpointError if absent).
  mlx::core::array read(const std::string& name) const;
  // The opened shard that holds a tensor, for readers that fetch its bytes themselves (io/tensor_prefetch.h).
  const SafetensorsFile& shard_file(const std::string& name) const { return shard(shard_of(name)); }

 private:
  struct Shard {
    std::string file;                       // name inside dir_
    std::vector<std::string> promised;      // tensors the index places here
    std::unique_ptr<SafetensorsFile> open;  // set once opened and validated
  };
  SafetensorsFile& shard(size_t index) const;
  size_t shard_of(const std::string& name) const;

  std::filesystem::path dir_;
  mutable std::vector<Shard> shards_;
  mutable std::mutex open_mutex_;
  std::map<std::string, size_t> where_;  // tensor name -> index into shards_
};

}  // namespace k2
