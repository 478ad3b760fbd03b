// Header-only accounting of a checkpoint: classifies each tensor with the weight key table, infers its
// quantization like the loader does, and sums bytes per layer (the one per-layer byte count).
#include "model/footprint.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "model/kv_cache.h"
#include "model/quant.h"
#include "model/weight_keys.h"

namespace k2 {

size_t CheckpointBytes::total() const {
  size_t n = embed_bytes + head_bytes;
  for (auto b : layer_bytes) n += b;
  return n;
}

bool CheckpointBytes::range_unreadable(int first, int last, bool embed, bool head) const {
  for (const auto& [name, where] : unreadable) {
    const int layer = where.first;
    if (layer >= first && layer < last) return true;
    if (layer < 0 && (embed || head)) return true;
  }
  return false;
}

size_t CheckpointBytes::range_bytes(int first, int last, bool embed, bool head) const {
  size_t n = (embed ? embed_bytes : 0) + (head ? head_bytes : 0);
  for (int i = std::max(first, 0); i < last && i < static_cast<int>(layer_bytes.size()); ++i) n += layer_bytes[i];
  return n;
}

CheckpointBytes count_checkpoint_bytes(const Checkpoint& ck, const ModelConfig& c, const std::optional<ByteRange>& only) {
  CheckpointBytes f;
  f.layer_bytes.assign(c.num_hidden_layers, 0);
  f.routed_bytes.assign(c.num_hidden_layers, 0);
  for (const auto& name : ck.names()) {
    const keys::TensorName t = keys::classify(name, c.weight_prefix);
    const bool in_layers = t.layer && *t.layer < c.num_hidden_layers;
    const bool embed = !t.layer && t.kind == keys::Kind::Embed;
    const bool head = !t.layer && (t.kind == keys::Kind::LmHead || t.kind == keys::Kind::FinalNorm);
    if (only && !((in_layers && *t.layer >= only->first && *t.layer < only->last) || (embed && only->embed) ||
                  (head && only->head)))
      continue;
    size_t bytes = 0;
    try {
      bytes = ck.info(name).nbytes;
    } catch (const CheckpointError& e) {
      // Report and go on: a broken shard should not hide what the rest of the folder holds.
      f.unreadable[name] = {t.layer ? *t.layer : -1, e.what()};
      continue;
    }
    if (in_layers) {
      f.layer_bytes[*t.layer] += bytes;
      if (t.kind && keys::info(*t.kind).part == keys::Part::RoutedExperts) f.routed_bytes[*t.layer] += bytes;
    } else if (embed) {
      f.embed_bytes += bytes;
    } else if (head) {
      f.head_bytes += bytes;
    } else {
      f.ignored_bytes += bytes;
    }
  }
  return f;
}

std::vector<std::vector<std::string>> range_tensor_groups(const Checkpoint& ck, const ModelConfig& c,
                                                          const ByteRange& r) {
  // Group 0: embedding; 1 + (layer - first): layers; last: head.
  const size_t layers = static_cast<size_t>(std::max(0, r.last - r.first));
  std::vector<std::vector<std::pair<std::pair<std::string, uint64_t>, std::string>>> keyed(layers + 2);
  for (const auto& name : ck.names()) {
    const keys::TensorName t = keys::classify(name, c.weight_prefix);
    size_t g = 0;
    if (t.layer && *t.layer < c.num_hidden_layers && *t.layer >= r.first && *t.layer < r.last)
      g = 1 + static_cast<size_t>(*t.layer - r.first);
    else if (!t.layer && t.kind == keys::Kind::Embed && r.embed)
      g = 0;
    else if (!t.layer && (t.kind == keys::Kind::LmHead || t.kind == keys::Kind::FinalNorm) && r.head)
      g = layers + 1;
    else
      continue;
    try {
      keyed[g].push_back({{ck.file_of(name).string(), ck.info(name).offset}, name});
    } catch (const CheckpointError&) {
      continue;
    }
  }
  std::vector<std::vector<std::string>> groups;
  for (auto& k : keyed) {
    std::sort(k.begin(), k.end());
    auto& out = groups.emplace_back();
    for (auto& [_, name] : k) out.push_back(std::move(name));
  }
  return groups;
}

Footprint measure_checkpoint(const Checkpoint& ck, const ModelConfig& c) {
  Footprint f;
  static_cast<CheckpointBytes&>(f) = count_checkpoint_bytes(ck, c);
  std::map<std::string, KindSummary> kinds;
  const std::string& prefix = c.weight_prefix;
  for (const auto& name : ck.names()) {
    if (f.unreadable.count(name)) continue;
    const keys::TensorName tn = keys::classify(name, prefix);
    if (tn.layer && *tn.layer >= c.num_hidden_layers) continue;
    const TensorInfo& t = ck.info(name);
    KindSummary& k = kinds[tn.label];
    k.kind = tn.label;
    k.bytes += t.nbytes;
    const std::string module = prefix + tn.module;
    const std::string& suffix = tn.suffix;
    std::string format;
    if (suffix == "weight" && ck.contains(module + keys::kScales)) {
      const TensorInfo& s = ck.info(module + keys::kScales);
      const int64_t in = tn.kind ? keys::logical_shape(*tn.kind, c).in : 0;
      const auto declared = declared_quant_for(c.quantization, module);
      try {
        PackedShapes ps{module, in, t.shape.size() >= 2 ? t.shape[t.shape.size() - 2] : 0, t.shape.back(),
                        s.shape.back(), ck.contains(module + keys::kBiases), t.shape_string(), s.shape_string()};
        QuantSpec q = infer_quant_spec(ps, declared);
        format = describe(q);
        if (!declared || !(*declared == q)) {
          if (k.disagreements++ == 0)
            k.example_disagreement = fmt::format("{}: config.json {}, tensor {}", module,
                                                 declared ? describe(*declared) : "unquantized", format);
        }
      } catch (const std::exception& e) {
        format = "INVALID (see the loader's error)";
      }
    } else if (suffix == "weight" && ck.contains(module + keys::kScaleInv)) {
      format = "fp8 e4m3, 128x128 block scales";
    } else if (suffix == "weight_packed") {
      format = "int4 compressed-tensors group 32";
    } else if (suffix == "weight" || suffix == "e_score_correction_bias") {
      format = to_string(t.dtype);
    }
    if (!format.empty()) k.formats[format]++;
  }
  for (auto& [_, k] : kinds) f.kinds.push_back(std::move(k));
  return f;
}

size_t bound_weight_bytes(const Checkpoint& ck, const ModelConfig& c, const ByteRange& r, size_t act) {
  auto is_float = [](StDtype d) { return d == StDtype::F32 || d == StDtype::F16 || d == StDtype::BF16; };
  auto ends_with = [](const std::string& s, const char* tail) {
    const std::string t(tail);
    return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  size_t n = 0;
  for (const auto& name : ck.names()) {
    const keys::TensorName t = keys::classify(name, c.weight_prefix);
    const bool in_layers = t.layer && *t.layer < c.num_hidden_layers && *t.layer >= r.first && *t.layer < r.last;
    const bool embed = !t.layer && t.kind == keys::Kind::Embed && r.embed;
    const bool head = !t.layer && (t.kind == keys::Kind::LmHead || t.kind == keys::Kind::FinalNorm) && r.head;
    if (!in_layers && !embed && !head) continue;
    TensorInfo ti;
    try {
      ti = ck.info(name);
    } catch (const CheckpointError&) {
      continue;  // reported by count_checkpoint_bytes
    }
    size_t elements = 1;
    for (auto d : ti.shape) elements *= static_cast<size_t>(d);
    if (ends_with(name, keys::kScaleInv)) continue;
    const bool quant_part = ends_with(name, keys::kScales) || ends_with(name, keys::kBiases);
    if (ti.dtype == StDtype::F8_E4M3 || (is_float(ti.dtype) && !(quant_part && act == 4)))
      n += elements * act;
    else
      n += ti.nbytes;
  }
  return n;
}

}  // namespace k2
