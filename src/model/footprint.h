// What a checkpoint costs, from its safetensors headers alone (nothing is read): bytes per layer,
// the quantization found per tensor kind (and where it disagrees with config.json), and the memory
// a layer range needs at a given context length. Used by `inspect` and by stage planning.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "model/config.h"
#include "model/runtime_memory.h"

namespace k2 {

struct KindSummary {
  std::string kind;             // e.g. "self_attn.q_a_proj", "mlp.switch_mlp.gate_proj", "lm_head"
  std::map<std::string, int> formats;  // "3-bit group 64 affine" / "bfloat16" / "fp8 e4m3 128x128" -> count
  int disagreements = 0;        // tensors whose format differs from config.json's declaration
  std::string example_disagreement;
  size_t bytes = 0;
};

// Bytes of a checkpoint's tensors by where they are used, from the safetensors headers alone: the one
// per-layer count that `inspect`, the stage planner's costs and the loader's progress all use.
struct CheckpointBytes {
  std::vector<size_t> layer_bytes;   // per layer index < num_hidden_layers
  std::vector<size_t> routed_bytes;  // per layer: the routed experts' part of layer_bytes
  size_t embed_bytes = 0;            // embedding table
  size_t head_bytes = 0;             // final norm + lm_head
  size_t ignored_bytes = 0;          // tensors no layer uses (e.g. DeepSeek-V3's MTP layer)
  // Tensors whose shard could not be opened (missing, truncated, corrupt): name -> error, and the
  // layer each belongs to (-1 for embedding / head / other).
  std::map<std::string, std::pair<int, std::string>> unreadable;
  size_t total() const;
  // Whether any unreadable tensor is needed by layers [first, last) (+ embedding / head).
  bool range_unreadable(int first, int last, bool embed, bool head) const;
  size_t range_bytes(int first, int last, bool embed, bool head) const;
};

// Which tensors count_checkpoint_bytes looks at: layers [first, last), plus the embedding / head when set.
struct ByteRange {
  int first = 0, last = 0;
  bool embed = false, head = false;
};

// `only`: look only at the tensors of that range, so that other layers' shards are never opened.
CheckpointBytes count_checkpoint_bytes(const Checkpoint& ckpt, const ModelConfig& config,
                                       const std::optional<ByteRange>& only = std::nullopt);

// The tensors of a range in the order the loader binds them, for reading ahead: the embedding, then each
// layer in turn, then the final norm and lm_head; within a group in file order. Tensors whose shard cannot
// be opened are left out (the loader reports them).
std::vector<std::vector<std::string>> range_tensor_groups(const Checkpoint& ckpt, const ModelConfig& config,
                                                          const ByteRange& range);

struct Footprint : CheckpointBytes {
  std::vector<KindSummary> kinds;
};

Footprint measure_checkpoint(const Checkpoint& ckpt, const ModelConfig& config);

// Bytes the loader binds for the tensors of `range` when activations are `activation_bytes` wide: float
// tensors are cast to the compute dtype (a bfloat16 checkpoint doubles under float32), quantized weights stay
// packed, their scales / biases are cast unless the compute dtype is float32, FP8 matrices are dequantized
// (re-quantizing them at load, --fp8-requantize, is not modelled), 128x128 scale blocks are consumed.
size_t bound_weight_bytes(const Checkpoint& ckpt, const ModelConfig& config, const ByteRange& range,
                          size_t activation_bytes);

}  // namespace k2
