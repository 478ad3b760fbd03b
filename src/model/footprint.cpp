// Header-only accounting of a checkpoint: classifies each tensor by module kind, infers its
// quantization like the loader does, and sums bytes per layer.
#include "model/footprint.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "model/kv_cache.h"
#include "model/quant.h"
#include "model/weight_keys.h"

namespace k2 {

namespace {

// "model.layers.7.mlp.experts.12.up_proj.weight" -> module "mlp.experts.*.up_proj", suffix "weight".
std::pair<std::string, std::string> classify(const std::string& name, const std::string& prefix) {
  std::string rest = name.substr(prefix.size());
  if (auto layer = keys::layer_of(name, prefix)) rest = rest.substr(fmt::format("model.layers.{}.", *layer).size());
  const auto dot = rest.rfind('.');
  std::string module = dot == std::string::npos ? rest : rest.substr(0, dot);
  std::string suffix = dot == std::string::npos ? "" : rest.substr(dot + 1);
  const std::string experts = "mlp.experts.";
  if (module.rfind(experts, 0) == 0) {
    const auto next = module.find('.', experts.size());
    if (next != std::string::npos) module = experts + "*" + module.substr(next);
  }
  return {module, suffix};
}

// Input features of a module kind, from config.json (0 = not a matrix).
int64_t logical_in(const ModelConfig& c, const std::string& kind) {
  auto ends = [&](const char* s) {
    const std::string t(s);
    return kind.size() >= t.size() && kind.compare(kind.size() - t.size(), t.size(), t) == 0;
  };
  if (ends("q_b_proj")) return c.q_lora_rank;
  if (ends("kv_b_proj") || ends("unembed_out")) return c.kv_lora_rank;
  if (ends("embed_q")) return c.qk_nope_head_dim;
  if (ends("o_proj")) return static_cast<int64_t>(c.num_attention_heads) * c.v_head_dim;
  if (ends("shared_experts.down_proj")) return static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts;
  if (ends("switch_mlp.down_proj") || ends("experts.*.down_proj")) return c.moe_intermediate_size;
  if (ends("mlp.down_proj")) return c.intermediate_size;
  if (ends("q_a_proj") || ends("q_proj") || ends("kv_a_proj_with_mqa") || ends("gate_proj") || ends("up_proj") ||
      ends("embed_tokens") || ends("lm_head") || ends("mlp.gate"))
    return c.hidden_size;
  return 0;
}

}  // namespace

size_t Footprint::total() const {
  size_t n = embed_bytes + head_bytes;
  for (auto b : layer_bytes) n += b;
  return n;
}

bool Footprint::range_unreadable(int first, int last, bool embed, bool head) const {
  for (const auto& [name, where] : unreadable) {
    const int layer = where.first;
    if (layer >= first && layer < last) return true;
    if (layer < 0 && (embed || head)) return true;
  }
  return false;
}

size_t Footprint::range_bytes(int first, int last, bool embed, bool head) const {
  size_t n = (embed ? embed_bytes : 0) + (head ? head_bytes : 0);
  for (int i = std::max(first, 0); i < last && i < static_cast<int>(layer_bytes.size()); ++i) n += layer_bytes[i];
  return n;
}

Footprint measure_checkpoint(const Checkpoint& ck, const ModelConfig& c) {
  Footprint f;
  f.layer_bytes.assign(c.num_hidden_layers, 0);
  std::map<std::string, KindSummary> kinds;
  const std::string& prefix = c.weight_prefix;
  for (const auto& name : ck.names()) {
    const auto layer = keys::layer_of(name, prefix);
    const TensorInfo* found = nullptr;
    try {
      found = &ck.info(name);
    } catch (const CheckpointError& e) {
      // Report and go on: a broken shard should not hide what the rest of the folder holds.
      f.unreadable[name] = {layer ? *layer : -1, e.what()};
      continue;
    }
    const TensorInfo& t = *found;
    if (layer) {
      if (*layer < c.num_hidden_layers) f.layer_bytes[*layer] += t.nbytes;
      else f.ignored_bytes += t.nbytes;
    } else if (name.rfind(prefix + keys::kEmbed, 0) == 0) {
      f.embed_bytes += t.nbytes;
    } else if (name.rfind(prefix + keys::kLmHead, 0) == 0 || name.rfind(prefix + keys::kNorm, 0) == 0) {
      f.head_bytes += t.nbytes;
    } else {
      f.ignored_bytes += t.nbytes;
    }
    if (layer && *layer >= c.num_hidden_layers) continue;

    auto [kind, suffix] = classify(name, prefix);
    KindSummary& k = kinds[kind];
    k.kind = kind;
    k.bytes += t.nbytes;
    const std::string module = name.substr(0, name.size() - suffix.size() - 1);
    std::string format;
    if (suffix == "weight" && ck.contains(module + keys::kScales)) {
      const TensorInfo& s = ck.info(module + keys::kScales);
      const int64_t in = logical_in(c, kind);
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

RuntimeMemory estimate_runtime_memory(const ModelConfig& c, int layers, int context, int chunk,
                                      size_t act_bytes, bool has_head) {
  RuntimeMemory r;
  // The cache grows in 256-position steps.
  const size_t positions = ((static_cast<size_t>(context) + 255) / 256) * 256;
  r.kv_cache = positions * kv_bytes_per_token(c, layers, act_bytes);
  if (layers == 0 && !has_head) return r;
  const size_t L = static_cast<size_t>(std::min(chunk, context)), S = static_cast<size_t>(context);
  const size_t H = c.num_attention_heads;
  // Prefill of one chunk at the end of the context: scores [H, L, S] (plus the rope-score mask of the
  // same size), keys/values expanded per head [H, S, nope] and [H, S, v], expert inputs and outputs.
  size_t ws = 2 * H * L * S * act_bytes;
  ws += H * S * (c.qk_nope_head_dim + c.v_head_dim) * act_bytes;
  ws += L * static_cast<size_t>(std::max(c.num_experts_per_tok, 1)) *
        (static_cast<size_t>(c.hidden_size) + 2 * std::max(c.moe_intermediate_size, c.intermediate_size / 8)) * act_bytes;
  if (has_head) ws += L * static_cast<size_t>(c.vocab_size) * 4;
  r.workspace = ws;
  return r;
}

}  // namespace k2
