// Checkpoint folder discovery: the HF sharding convention (model.safetensors.index.json with a
// "weight_map" from tensor name to shard file) or, without an index, every *.safetensors file.
#include "io/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace k2 {
namespace fs = std::filesystem;
using nlohmann::json;

Checkpoint::Checkpoint(const fs::path& dir) : dir_(dir) {
  if (!fs::is_directory(dir_))
    throw CheckpointError(fmt::format("{}: not a directory (expected a model folder)", dir_.string()));

  std::vector<std::string> files;
  std::map<std::string, std::string> promised;  // index weight_map
  const fs::path index_path = dir_ / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    json index;
    try {
      std::ifstream in(index_path);
      index = json::parse(in);
    } catch (const json::exception& e) {
      throw CheckpointError(fmt::format("{}: not valid JSON ({})", index_path.string(), e.what()));
    }
    if (!index.contains("weight_map") || !index["weight_map"].is_object())
      throw CheckpointError(fmt::format("{}: has no \"weight_map\" object", index_path.string()));
    std::set<std::string> unique;
    for (auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string())
        throw CheckpointError(
            fmt::format("{}: weight_map entry '{}' is not a file name", index_path.string(), name));
      const auto f = file.get<std::string>();
      const fs::path shard(f);
      const bool escapes = shard.is_absolute() || std::any_of(shard.begin(), shard.end(), [](const fs::path& part) {
                             return part == "..";
                           });
      if (escapes)
        throw CheckpointError(fmt::format("{}: shard name '{}' leaves the model folder",
                                          index_path.string(), f));
      promised[name] = f;
      unique.insert(f);
    }
    files.assign(unique.begin(), unique.end());
    for (const auto& f : files)
      if (!fs::exists(dir_ / f))
        throw CheckpointError(fmt::format("{}: shard '{}' named by model.safetensors.index.json is missing",
                                          dir_.string(), f));
  } else {
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.is_regular_file() && e.path().extension() == ".safetensors")
        files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
  }
  if (files.empty())
    throw CheckpointError(fmt::format("{}: no .safetensors files found", dir_.string()));

  for (const auto& f : files) {
    shards_.push_back(std::make_unique<SafetensorsFile>((dir_ / f).string()));
    const size_t idx = shards_.size() - 1;
    for (const auto& [name, _] : shards_.back()->tensors()) {
      auto [it, inserted] = where_.emplace(name, idx);
      if (!inserted)
        throw CheckpointError(fmt::format("{}: tensor '{}' appears in both {} and {}", dir_.string(), name,
                                          shards_[it->second]->path(), shards_[idx]->path()));
    }
  }
  for (const auto& [name, file] : promised) {
    auto it = where_.find(name);
    if (it == where_.end() || fs::path(shards_[it->second]->path()).filename() != fs::path(file).filename())
      throw CheckpointError(fmt::format("{}: the index puts tensor '{}' in {}, but that shard does not "
                                        "contain it", dir_.string(), name, file));
  }
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw CheckpointError(fmt::format("{}: tensor '{}' not found in the checkpoint", dir_.string(), name));
  return shards_[it->second]->info(name);
}

std::optional<TensorInfo> Checkpoint::find(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return std::nullopt;
  return shards_[it->second]->info(name);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;
}

mlx::core::array Checkpoint::read(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw CheckpointError(fmt::format("{}: tensor '{}' not found in the checkpoint", dir_.string(), name));
  return shards_[it->second]->read(name);
}

}  // namespace k2
