// Layer costs from safetensors headers (measured) or from config.json dimensions and a quantization
// recipe (computed with the storage rules of spec §6.1: packed bits plus 16-bit scales and biases).
#include "pipeline/layer_costs.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "model/footprint.h"
#include "model/weight_keys.h"

namespace k2 {

namespace {

bool glob_match(const std::string& pattern, const std::string& text) {
  // Iterative '*' matcher (no other metacharacters).
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == text[t]) {
      ++p, ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++, mark = t;
    } else if (star != std::string::npos) {
      p = star + 1, t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool key_matches(const std::string& key, const std::string& path) {
  if (key.find('*') != std::string::npos) return glob_match(key, path);
  if (key == path) return true;
  return path.size() > key.size() && path.compare(path.size() - key.size(), key.size(), key) == 0 &&
         path[path.size() - key.size() - 1] == '.';
}

int parse_int(const std::string& s, const std::string& what, const std::string& whole) {
  try {
    size_t used = 0;
    const int v = std::stoi(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw InputError(fmt::format("quantization '{}': {} '{}' is not a whole number", whole, what, s));
}

}  // namespace

double ModelCosts::total_weight_bytes() const { return range_bytes(0, static_cast<int>(layers.size()), true, true); }

double ModelCosts::range_bytes(int first, int last, bool embed, bool head) const {
  double n = (embed ? embed_bytes : 0) + (head ? head_bytes : 0);
  for (int i = std::max(first, 0); i < last && i < static_cast<int>(layers.size()); ++i) n += layers[i].weight_bytes;
  return n;
}

double ModelCosts::range_read_bytes(int first, int last, bool embed, bool head) const {
  double n = (embed ? embed_read_bytes : 0) + (head ? head_bytes : 0);
  for (int i = std::max(first, 0); i < last && i < static_cast<int>(layers.size()); ++i) n += layers[i].read_bytes;
  return n;
}

std::optional<QuantSpec> QuantRecipe::for_module(const std::string& path) const {
  for (const auto& [key, spec] : overrides)
    if (key_matches(key, path)) return spec;
  return global;
}

std::string QuantRecipe::describe() const {
  std::string s = global ? fmt::format("{}-bit group {} {}", global->bits, global->group_size, global->mode)
                         : fmt::format("unquantized ({} bytes per weight)", float_bytes);
  for (const auto& [key, spec] : overrides)
    s += fmt::format(", {}={}", key, spec ? fmt::format("{}:{}", spec->bits, spec->group_size) : "none");
  return s;
}

std::optional<QuantSpec> parse_quant(const std::string& text) {
  if (text == "none" || text == "bf16" || text == "bfloat16" || text == "fp16" || text == "float16") return std::nullopt;
  if (text == "fp8") return QuantSpec{8, 128, "fp8"};  // original release: e4m3 + float32 128x128 block scales
  QuantSpec q;
  const auto c1 = text.find(':');
  q.bits = parse_int(text.substr(0, c1), "bits", text);
  if (c1 != std::string::npos) {
    const auto c2 = text.find(':', c1 + 1);
    q.group_size = parse_int(text.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1),
                             "group size", text);
    if (c2 != std::string::npos) q.mode = text.substr(c2 + 1);
  }
  const bool affine = q.mode == "affine";
  if (affine && !(q.bits == 2 || q.bits == 3 || q.bits == 4 || q.bits == 5 || q.bits == 6 || q.bits == 8))
    throw InputError(fmt::format("quantization '{}': affine bits must be 2, 3, 4, 5, 6 or 8", text));
  if (affine && !(q.group_size == 32 || q.group_size == 64 || q.group_size == 128))
    throw InputError(fmt::format("quantization '{}': group size must be 32, 64 or 128", text));
  if (!affine && q.mode != "fp8" && q.mode != "mxfp4" && q.mode != "mxfp8" && q.mode != "nvfp4")
    throw InputError(fmt::format("quantization '{}': mode '{}' is not affine, mxfp4, mxfp8 or nvfp4", text, q.mode));
  return q;
}

std::pair<std::string, std::optional<QuantSpec>> parse_quant_override(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw InputError(fmt::format("quantization override '{}' is not MODULE=BITS[:GROUP] or MODULE=none", text));
  return {text.substr(0, eq), parse_quant(text.substr(eq + 1))};
}

std::optional<QuantRecipe> declared_recipe(const ModelConfig& c) {
  if (c.quantization.quant_method == "fp8") {
    // Original FP8 release: every Linear in FP8 except the embedding and lm_head (bf16); routers stay bf16.
    QuantRecipe r;
    r.global = QuantSpec{8, 128, "fp8"};
    r.overrides = {{keys::kEmbed, std::nullopt}, {keys::kLmHead, std::nullopt}};
    return r;
  }
  if (!c.quantization.global) return std::nullopt;
  QuantRecipe r;
  r.global = c.quantization.global;
  for (const auto& [path, spec] : c.quantization.overrides) r.overrides.emplace_back(path, spec);
  return r;
}

double matrix_bytes(double count, double out, double in, const std::optional<QuantSpec>& q, int float_bytes) {
  const double elems = count * out * in;
  if (!q) return elems * float_bytes;
  if (q->mode == "fp8") return elems + count * std::ceil(out / 128) * std::ceil(in / 128) * 4;
  const double groups = count * out * (in / q->group_size);
  if (q->mode == "affine") return elems * q->bits / 8.0 + 2.0 * groups * float_bytes;  // scales + biases
  return elems * q->bits / 8.0 + groups;  // one-byte (E8M0 / FP8) scales, no biases
}

ModelCosts costs_from_config(const ModelConfig& c, const QuantRecipe& r) {
  using keys::Kind;
  ModelCosts m;
  m.source = "config.json + " + r.describe();
  const double fb = r.float_bytes;
  // Bytes of one tensor kind as the recipe stores it: norms at float_bytes, the router unquantized plus its
  // float32 correction bias, every other matrix in the recipe's format for its module path.
  auto bytes = [&](Kind kind, int layer) {
    const keys::Shape s = keys::logical_shape(kind, c);
    if (keys::info(kind).vector) return s.out * fb;
    if (kind == Kind::Router) return matrix_bytes(1, s.out, s.in, std::nullopt, r.float_bytes) + s.out * 4.0;
    return matrix_bytes(static_cast<double>(s.lead), s.out, s.in, r.for_module(keys::module(kind, layer)),
                        r.float_bytes);
  };
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    double all = 0, routed = 0;
    for (Kind kind : keys::layer_kinds(c, i)) {
      const double b = bytes(kind, i);
      all += b;
      if (keys::info(kind).part == keys::Part::RoutedExperts) routed += b;
    }
    LayerCost cost;
    cost.weight_bytes = all;
    cost.read_bytes = c.n_routed_experts > 0 ? all - routed + routed * c.num_experts_per_tok / c.n_routed_experts : all;
    m.layers.push_back(cost);
  }
  m.embed_bytes = bytes(Kind::Embed, -1);
  m.embed_read_bytes = m.embed_bytes / c.vocab_size;
  m.head_bytes = bytes(Kind::FinalNorm, -1) + bytes(Kind::LmHead, -1);
  return m;
}

ModelCosts costs_from_checkpoint(const Checkpoint& ck, const ModelConfig& c) {
  const CheckpointBytes b = count_checkpoint_bytes(ck, c);
  if (!b.unreadable.empty()) throw CheckpointError(b.unreadable.begin()->second.second);
  ModelCosts m;
  m.source = "checkpoint " + ck.dir().string();
  const double active = c.n_routed_experts > 0 ? static_cast<double>(c.num_experts_per_tok) / c.n_routed_experts : 1.0;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const double all = static_cast<double>(b.layer_bytes[i]), routed = static_cast<double>(b.routed_bytes[i]);
    m.layers.push_back(LayerCost{all, all - routed * (1.0 - active)});
  }
  m.embed_bytes = static_cast<double>(b.embed_bytes);
  m.head_bytes = static_cast<double>(b.head_bytes);
  m.embed_read_bytes = c.vocab_size > 0 ? m.embed_bytes / c.vocab_size : 0.0;
  return m;
}

}  // namespace k2
