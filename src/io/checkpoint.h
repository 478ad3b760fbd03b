// A checkpoint folder: config.json plus one or many .safetensors shards (with or without
// model.safetensors.index.json). Maps every tensor name to its shard; reads tensors on demand so a
// caller that needs only some layers reads only their bytes. Knows nothing about model semantics.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace k2 {

class Checkpoint {
 public:
  // Opens `dir`: validates the index (if any) against the shards' headers. Throws CheckpointError
  // for a missing folder, missing shards, names the index promises but no shard holds, and any
  // malformed shard.
  explicit Checkpoint(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  std::optional<TensorInfo> find(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t shard_count() const { return shards_.size(); }

  // Reads one tensor (throws CheckpointError if absent).
  mlx::core::array read(const std::string& name) const;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, size_t> where_;  // tensor name -> index into shards_
};

}  // namespace k2
