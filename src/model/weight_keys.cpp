// The weight key table's rows and the name arithmetic around them (module paths, logical shapes from
// config.json, taking a tensor name apart). No tensors, no files.
#include "model/weight_keys.h"

#include <fmt/format.h>

#include "core/error.h"

namespace k2::keys {

namespace {

constexpr const char* kLayers = "model.layers.";

}  // namespace

const std::vector<KindInfo>& table() {
  static const std::vector<KindInfo> rows = {
      {Kind::QProj, Part::Attention, "self_attn.q_proj", nullptr, true, false},
      {Kind::QAProj, Part::Attention, "self_attn.q_a_proj", nullptr, true, false},
      {Kind::QANorm, Part::Attention, "self_attn.q_a_layernorm", nullptr, true, true},
      {Kind::QBProj, Part::Attention, "self_attn.q_b_proj", nullptr, true, false},
      {Kind::KvAProj, Part::Attention, "self_attn.kv_a_proj_with_mqa", nullptr, true, false},
      {Kind::KvANorm, Part::Attention, "self_attn.kv_a_layernorm", nullptr, true, true},
      {Kind::KvBProj, Part::Attention, "self_attn.kv_b_proj", nullptr, true, false},
      {Kind::EmbedQ, Part::Attention, "self_attn.embed_q", nullptr, true, false},
      {Kind::UnembedOut, Part::Attention, "self_attn.unembed_out", nullptr, true, false},
      {Kind::OProj, Part::Attention, "self_attn.o_proj", nullptr, true, false},
      {Kind::InputNorm, Part::Norms, "input_layernorm", nullptr, true, true},
      {Kind::PostAttentionNorm, Part::Norms, "post_attention_layernorm", nullptr, true, true},
      {Kind::MlpGate, Part::DenseMlp, "mlp.gate_proj", nullptr, true, false},
      {Kind::MlpUp, Part::DenseMlp, "mlp.up_proj", nullptr, true, false},
      {Kind::MlpDown, Part::DenseMlp, "mlp.down_proj", nullptr, true, false},
      {Kind::Router, Part::Router, "mlp.gate", nullptr, true, false},
      {Kind::ExpertGate, Part::RoutedExperts, "mlp.switch_mlp.gate_proj", "mlp.experts.{}.gate_proj", true, false},
      {Kind::ExpertUp, Part::RoutedExperts, "mlp.switch_mlp.up_proj", "mlp.experts.{}.up_proj", true, false},
      {Kind::ExpertDown, Part::RoutedExperts, "mlp.switch_mlp.down_proj", "mlp.experts.{}.down_proj", true, false},
      {Kind::SharedGate, Part::SharedExperts, "mlp.shared_experts.gate_proj", nullptr, true, false},
      {Kind::SharedUp, Part::SharedExperts, "mlp.shared_experts.up_proj", nullptr, true, false},
      {Kind::SharedDown, Part::SharedExperts, "mlp.shared_experts.down_proj", nullptr, true, false},
      {Kind::Embed, Part::Embedding, kEmbed, nullptr, false, false},
      {Kind::FinalNorm, Part::Head, kNorm, nullptr, false, true},
      {Kind::LmHead, Part::Head, kLmHead, nullptr, false, false},
  };
  return rows;
}

const KindInfo& info(Kind k) {
  for (const auto& row : table())
    if (row.kind == k) return row;
  throw Error(fmt::format("weight key table has no row for kind {}", static_cast<int>(k)));
}

std::string layer(int i) { return fmt::format("model.layers.{}", i); }

std::string module(Kind k, int layer_index) {
  const KindInfo& row = info(k);
  if (!row.per_layer) return row.path;
  return fmt::format("{}{}.{}", kLayers, layer_index, row.path);
}

std::string expert_module(Kind k, int layer_index, int expert) {
  const KindInfo& row = info(k);
  if (!row.expert_path) throw Error(fmt::format("'{}' is not a routed-expert kind", row.path));
  return fmt::format("{}{}.{}", kLayers, layer_index, fmt::format(fmt::runtime(row.expert_path), expert));
}

Shape logical_shape(Kind k, const ModelConfig& c) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, r = c.kv_lora_rank;
  const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
  const int64_t shared = I * c.n_shared_experts;
  switch (k) {
    case Kind::QProj: return {1, H * c.q_head_dim(), D};
    case Kind::QAProj: return {1, c.q_lora_rank, D};
    case Kind::QANorm: return {1, c.q_lora_rank, 0};
    case Kind::QBProj: return {1, H * c.q_head_dim(), c.q_lora_rank};
    case Kind::KvAProj: return {1, r + c.qk_rope_head_dim, D};
    case Kind::KvANorm: return {1, r, 0};
    case Kind::KvBProj: return {1, H * (c.qk_nope_head_dim + c.v_head_dim), r};
    case Kind::EmbedQ: return {H, r, c.qk_nope_head_dim};
    case Kind::UnembedOut: return {H, c.v_head_dim, r};
    case Kind::OProj: return {1, D, H * c.v_head_dim};
    case Kind::InputNorm:
    case Kind::PostAttentionNorm:
    case Kind::FinalNorm: return {1, D, 0};
    case Kind::MlpGate:
    case Kind::MlpUp: return {1, c.intermediate_size, D};
    case Kind::MlpDown: return {1, D, c.intermediate_size};
    case Kind::Router: return {1, E, D};
    case Kind::ExpertGate:
    case Kind::ExpertUp: return {E, I, D};
    case Kind::ExpertDown: return {E, D, I};
    case Kind::SharedGate:
    case Kind::SharedUp: return {1, shared, D};
    case Kind::SharedDown: return {1, D, shared};
    case Kind::Embed:
    case Kind::LmHead: return {1, c.vocab_size, D};
  }
  return {};
}

std::vector<Kind> layer_kinds(const ModelConfig& c, int layer_index) {
  std::vector<Kind> out;
  if (c.q_lora_rank > 0) out.insert(out.end(), {Kind::QAProj, Kind::QANorm, Kind::QBProj});
  else out.push_back(Kind::QProj);
  out.insert(out.end(), {Kind::KvAProj, Kind::KvANorm, Kind::KvBProj, Kind::OProj, Kind::InputNorm,
                         Kind::PostAttentionNorm});
  if (!c.is_moe_layer(layer_index)) {
    out.insert(out.end(), {Kind::MlpGate, Kind::MlpUp, Kind::MlpDown});
    return out;
  }
  out.insert(out.end(), {Kind::Router, Kind::ExpertGate, Kind::ExpertUp, Kind::ExpertDown});
  if (c.n_shared_experts > 0) out.insert(out.end(), {Kind::SharedGate, Kind::SharedUp, Kind::SharedDown});
  return out;
}

std::optional<int> layer_of(const std::string& name, const std::string& prefix) {
  const std::string head = prefix + kLayers;
  if (name.compare(0, head.size(), head) != 0) return std::nullopt;
  size_t pos = head.size();
  int value = 0;
  bool any = false;
  while (pos < name.size() && name[pos] >= '0' && name[pos] <= '9') {
    value = value * 10 + (name[pos] - '0');
    if (value > 1'000'000) return std::nullopt;
    ++pos;
    any = true;
  }
  if (!any || pos >= name.size() || name[pos] != '.') return std::nullopt;
  return value;
}

TensorName classify(const std::string& name, const std::string& prefix) {
  TensorName t;
  std::string rest = name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : name;
  const auto dot = rest.rfind('.');
  t.module = dot == std::string::npos ? rest : rest.substr(0, dot);
  t.suffix = dot == std::string::npos ? "" : rest.substr(dot + 1);
  t.layer = layer_of(name, prefix);
  std::string inner = t.module;  // the module inside its layer
  if (t.layer) {
    const size_t skip = fmt::format("{}{}.", kLayers, *t.layer).size();
    inner = t.module.size() > skip ? t.module.substr(skip) : "";
  }
  // Per-expert spelling: "mlp.experts.<e>.<proj>" -> "mlp.experts.*.<proj>".
  const std::string experts = "mlp.experts.";
  t.label = inner;
  if (inner.rfind(experts, 0) == 0) {
    const auto next = inner.find('.', experts.size());
    if (next != std::string::npos) t.label = experts + "*" + inner.substr(next);
  }
  for (const auto& row : table()) {
    if (row.per_layer != t.layer.has_value()) continue;
    const bool stacked = t.label == row.path;
    const bool per_expert = row.expert_path && t.label == fmt::format(fmt::runtime(row.expert_path), "*");
    if (stacked || per_expert) {
      t.kind = row.kind;
      break;
    }
  }
  return t;
}

}  // namespace k2::keys
