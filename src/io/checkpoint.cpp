// Checkpoint folder discovery: the HF sharding convention (model.safetensors.index.json with a
// "weight_map" from tensor name to shard file) or, without an index, every *.safetensors file.
#include "io/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace k2 {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool leaves_folder(const std::string& name) {
  const fs::path p(name);
  return p.is_absolute() || std::any_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".."; });
}

}  // namespace

std::vector<std::pair<std::string, std::string>> parse_checkpoint_index(const std::string& text,
                                                                        const std::string& source) {
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    throw CheckpointError(fmt::format("{}: not valid JSON ({})", source, e.what()));
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    throw CheckpointError(fmt::format("{}: has no \"weight_map\" object", source));
  std::vector<std::pair<std::string, std::string>> map;
  for (auto& [name, file] : index["weight_map"].items()) {
    if (!file.is_string())
      throw CheckpointError(fmt::format("{}: weight_map entry '{}' is not a file name", source, name));
    const auto f = file.get<std::string>();
    if (leaves_folder(f)) throw CheckpointError(fmt::format("{}: shard name '{}' leaves the model folder", source, f));
    map.emplace_back(name, f);
  }
  return map;
}

Checkpoint::Checkpoint(const fs::path& dir) : dir_(dir) {
  if (!fs::is_directory(dir_))
    throw CheckpointError(fmt::format("{}: not a directory (expected a model folder)", dir_.string()));

  const fs::path index_path = dir_ / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    std::ifstream in(index_path, std::ios::binary);
    if (!in) throw CheckpointError(fmt::format("{}: cannot be opened", index_path.string()));
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::map<std::string, size_t> by_file;
    for (auto& [name, f] : parse_checkpoint_index(text, index_path.string())) {
      auto [it, fresh] = by_file.emplace(f, shards_.size());
      if (fresh) shards_.push_back(Shard{f, {}, nullptr});
      shards_[it->second].promised.push_back(name);
      where_[name] = it->second;
    }
  } else {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir_))
      if (e.is_regular_file() && e.path().extension() == ".safetensors") files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      shards_.push_back(Shard{f, {}, std::make_unique<SafetensorsFile>((dir_ / f).string())});
      const size_t idx = shards_.size() - 1;
      for (const auto& [name, _] : shards_.back().open->tensors()) {
        auto [it, inserted] = where_.emplace(name, idx);
        if (!inserted)
          throw CheckpointError(fmt::format("{}: tensor '{}' appears in both {} and {}", dir_.string(), name,
                                            shards_[it->second].file, f));
      }
    }
  }
  if (shards_.empty()) throw CheckpointError(fmt::format("{}: no .safetensors files found", dir_.string()));
}

SafetensorsFile& Checkpoint::shard(size_t index) const {
  std::lock_guard lock(open_mutex_);
  Shard& s = shards_[index];
  if (s.open) return *s.open;
  const fs::path path = dir_ / s.file;
  if (!fs::exists(path))
    throw CheckpointError(fmt::format("{}: shard '{}' named by model.safetensors.index.json is missing",
                                      dir_.string(), s.file));
  auto file = std::make_unique<SafetensorsFile>(path.string());
  for (const auto& name : s.promised)
    if (!file->contains(name))
      throw CheckpointError(fmt::format("{}: the index puts tensor '{}' in {}, but that shard does not contain it",
                                        dir_.string(), name, s.file));
  // A tensor the shard holds but the index places elsewhere would be read from the wrong file.
  for (const auto& [name, _] : file->tensors()) {
    auto it = where_.find(name);
    if (it != where_.end() && it->second != index)
      throw CheckpointError(fmt::format("{}: tensor '{}' appears in both {} and {}", dir_.string(), name, s.file,
                                        shards_[it->second].file));
  }
  s.open = std::move(file);
  return *s.open;
}

size_t Checkpoint::shard_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw CheckpointError(fmt::format("{}: tensor '{}' not found in the checkpoint", dir_.string(), name));
  return it->second;
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return shard(shard_of(name)).info(name); }

std::optional<TensorInfo> Checkpoint::find(const std::string& name) const {
  if (!contains(name)) return std::nullopt;
  return info(name);
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& [n, _] : where_) out.push_back(n);
  return out;
}

std::filesystem::path Checkpoint::file_of(const std::string& name) const { return dir_ / shards_[shard_of(name)].file; }

mlx::core::array Checkpoint::read(const std::string& name) const { return shard(shard_of(name)).read(name); }

}  // namespace k2
