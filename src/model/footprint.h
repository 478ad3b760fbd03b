// What a checkpoint costs, from its safetensors headers alone (nothing is read): bytes per layer,
// the quantization found per tensor kind (and where it disagrees with config.json), and the memory
// a layer range needs at a given context length. Used by `inspect` and by stage planning.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"

namespace k2 {

struct KindSummary {
  std::string kind;             // e.g. "self_attn.q_a_proj", "mlp.switch_mlp.gate_proj", "lm_head"
  std::map<std::string, int> formats;  // "3-bit group 64 affine" / "bfloat16" / "fp8 e4m3 128x128" -> count
  int disagreements = 0;        // tensors whose format differs from config.json's declaration
  std::string example_disagreement;
  size_t bytes = 0;
};

struct Footprint {
  std::vector<size_t> layer_bytes;  // per layer index < num_hidden_layers
  size_t embed_bytes = 0;           // embedding table
  size_t head_bytes = 0;            // final norm + lm_head
  size_t ignored_bytes = 0;         // tensors no layer uses (e.g. DeepSeek-V3's MTP layer)
  std::vector<KindSummary> kinds;
  // Tensors whose shard could not be opened (missing, truncated, corrupt): name -> error, and the
  // layer each belongs to (-1 for embedding / head / other).
  std::map<std::string, std::pair<int, std::string>> unreadable;
  size_t total() const;
  // Whether any unreadable tensor is needed by layers [first, last) (+ embedding / head).
  bool range_unreadable(int first, int last, bool embed, bool head) const;
  size_t range_bytes(int first, int last, bool embed, bool head) const;
};

Footprint measure_checkpoint(const Checkpoint& ckpt, const ModelConfig& config);

// Memory a stage needs beyond its weights while running `context` tokens with prefill chunks of
// `chunk`: the latent KV cache plus the largest transient buffers of one prefill chunk.
struct RuntimeMemory {
  size_t kv_cache = 0;
  size_t workspace = 0;
};
RuntimeMemory estimate_runtime_memory(const ModelConfig& config, int layers, int context, int chunk,
                                      size_t activation_bytes, bool has_head);

}  // namespace k2
