// config.json parsing for kimi_k2 / deepseek_v3 / kimi_k25 (spec §1) and the quantization entries
// mlx-lm writes (spec §6.3).
#include "model/config.h"

#include <cmath>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace k2 {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Kimi's every turn ends with <|im_end|> 163586 followed by [EOS] 163585; config.json names one, and
// mlx-lm's converter overwrites it with generation_config.json's, so stop on both (spec §7.3, §9.11).
constexpr int kKimiEos = 163585;
constexpr int kKimiImEnd = 163586;

class Reader {
 public:
  Reader(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw InputError(fmt::format("{}: \"{}\" {}", source_, key, what));
  }
  bool has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }

  int integer(const std::string& key, std::optional<int> fallback = std::nullopt, int min = 0) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      fail(key, "is required but missing");
    }
    const auto& v = j_[key];
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
      fail(key, fmt::format("must be an integer, found {}", v.dump()));
    // Converting a double beyond int64 (e.g. 1e20) is undefined behaviour, so range-check it first.
    if (v.is_number_float() && std::fabs(v.get<double>()) > 1e18)
      fail(key, fmt::format("= {} is out of range (must be >= {})", v.dump(), min));
    const auto x = v.get<int64_t>();
    if (x < min || x > 1'000'000'000) fail(key, fmt::format("= {} is out of range (must be >= {})", x, min));
    return static_cast<int>(x);
  }
  double number(const std::string& key, std::optional<double> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      fail(key, "is required but missing");
    }
    if (!j_[key].is_number()) fail(key, fmt::format("must be a number, found {}", j_[key].dump()));
    const double x = j_[key].get<double>();
    if (!std::isfinite(x)) fail(key, "must be finite");
    return x;
  }
  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) fail(key, fmt::format("must be true or false, found {}", j_[key].dump()));
    return j_[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_string()) fail(key, fmt::format("must be a string, found {}", j_[key].dump()));
    return j_[key].get<std::string>();
  }

 private:
  const json& j_;
  std::string source_;
};

std::vector<int> token_ids(const json& v) {
  std::vector<int> out;
  if (v.is_number_integer()) out.push_back(v.get<int>());
  if (v.is_array())
    for (const auto& x : v)
      if (x.is_number_integer()) out.push_back(x.get<int>());
  return out;
}

std::optional<QuantSpec> parse_quant_spec(const json& v, const QuantSpec& defaults, const std::string& where,
                                          const std::string& source) {
  if (v.is_boolean()) {
    if (!v.get<bool>()) return std::nullopt;
    return defaults;
  }
  if (!v.is_object())
    throw InputError(fmt::format("{}: quantization entry \"{}\" must be an object or false", source, where));
  QuantSpec q = defaults;
  // mlx-lm may serialize group_size as null when it was left at its default (spec §6.3): treat as 64.
  auto small_int = [&](const char* key) {
    const auto& x = v[key];
    if (!x.is_number_integer() || x.get<int64_t>() < 1 || x.get<int64_t>() > 1024)
      throw InputError(fmt::format("{}: quantization entry \"{}\": \"{}\" must be a small positive integer, found {}",
                                   source, where, key, x.dump()));
    return x.get<int>();
  };
  if (v.contains("group_size")) q.group_size = v["group_size"].is_null() ? 64 : small_int("group_size");
  if (v.contains("bits") && !v["bits"].is_null()) q.bits = small_int("bits");
  if (v.contains("mode") && v["mode"].is_string()) q.mode = v["mode"].get<std::string>();
  return q;
}

DeclaredQuantization parse_quantization(const json& root, const std::string& source) {
  DeclaredQuantization dq;
  const json* q = nullptr;
  if (root.contains("quantization") && root["quantization"].is_object()) q = &root["quantization"];
  if (q) {
    QuantSpec global;
    try {
      global = *parse_quant_spec(*q, QuantSpec{}, "quantization", source);
    } catch (const json::exception& e) {
      throw InputError(fmt::format("{}: malformed \"quantization\" ({})", source, e.what()));
    }
    dq.global = global;
    for (auto& [k, v] : q->items()) {
      if (k == "group_size" || k == "bits" || k == "mode" || k == "quant_method") continue;
      try {
        dq.overrides[k] = parse_quant_spec(v, global, k, source);
      } catch (const json::exception& e) {
        throw InputError(fmt::format("{}: malformed quantization entry \"{}\" ({})", source, k, e.what()));
      }
    }
  }
  if (root.contains("quantization_config") && root["quantization_config"].is_object()) {
    const auto& qc = root["quantization_config"];
    if (qc.contains("quant_method") && qc["quant_method"].is_string())
      dq.quant_method = qc["quant_method"].get<std::string>();
    if (qc.contains("weight_block_size") && qc["weight_block_size"].is_array())
      for (const auto& b : qc["weight_block_size"]) dq.weight_block_size.push_back(b.get<int>());
  }
  return dq;
}

}  // namespace

bool ModelConfig::is_moe_layer(int layer) const {
  return n_routed_experts > 0 && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
}

double ModelConfig::softmax_scale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(q_head_dim()));
  if (rope_scaling && rope_scaling->mscale_all_dim != 0.0 && rope_scaling->factor > 1.0) {
    const double m = 0.1 * rope_scaling->mscale_all_dim * std::log(rope_scaling->factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

ModelConfig parse_model_config(const json& root, const std::string& source) {
  if (!root.is_object()) throw InputError(fmt::format("{}: must be a JSON object", source));
  ModelConfig c;
  const std::string outer_type = root.contains("model_type") && root["model_type"].is_string()
                                     ? root["model_type"].get<std::string>()
                                     : "";
  const json* body = &root;
  if (outer_type == "kimi_k25") {
    if (!root.contains("text_config") || !root["text_config"].is_object())
      throw InputError(fmt::format("{}: model_type kimi_k25 needs a \"text_config\" object", source));
    body = &root["text_config"];
    c.weight_prefix = "language_model.";
  } else if (outer_type != "kimi_k2" && outer_type != "deepseek_v3") {
    throw InputError(fmt::format(
        "{}: model_type \"{}\" is not supported (expected kimi_k2, deepseek_v3 or kimi_k25)", source,
        outer_type.empty() ? "<missing>" : outer_type));
  }
  c.model_type = outer_type;
  Reader r(*body, source);

  c.vocab_size = r.integer("vocab_size", std::nullopt, 1);
  c.hidden_size = r.integer("hidden_size", std::nullopt, 1);
  c.intermediate_size = r.integer("intermediate_size", std::nullopt, 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", std::nullopt, 1);
  c.num_attention_heads = r.integer("num_attention_heads", std::nullopt, 1);
  c.n_routed_experts = r.integer("n_routed_experts", 0);
  c.n_shared_experts = r.integer("n_shared_experts", 0);
  c.moe_intermediate_size = r.integer("moe_intermediate_size", c.n_routed_experts ? std::nullopt : std::optional<int>(0), 0);
  c.num_experts_per_tok = r.integer("num_experts_per_tok", c.n_routed_experts ? std::nullopt : std::optional<int>(0), 0);
  c.routed_scaling_factor = r.number("routed_scaling_factor", 1.0);
  c.kv_lora_rank = r.integer("kv_lora_rank", std::nullopt, 1);
  c.q_lora_rank = r.integer("q_lora_rank", 0);
  c.qk_rope_head_dim = r.integer("qk_rope_head_dim", std::nullopt, 2);
  c.qk_nope_head_dim = r.integer("qk_nope_head_dim", std::nullopt, 1);
  c.v_head_dim = r.integer("v_head_dim", std::nullopt, 1);
  c.topk_method = r.string("topk_method", "noaux_tc");
  c.scoring_func = r.string("scoring_func", "sigmoid");
  c.norm_topk_prob = r.boolean("norm_topk_prob", true);
  c.n_group = r.integer("n_group", 1, 1);
  c.topk_group = r.integer("topk_group", 1, 1);
  c.moe_layer_freq = r.integer("moe_layer_freq", 1, 1);
  c.first_k_dense_replace = r.integer("first_k_dense_replace", 0);
  c.max_position_embeddings = r.integer("max_position_embeddings", 4096, 1);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.rope_theta = r.number("rope_theta", 10000.0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.num_nextn_predict_layers = r.integer("num_nextn_predict_layers", 0);

  if (r.boolean("attention_bias", false))
    r.fail("attention_bias", "= true is not supported (DeepSeek-V3 / Kimi-K2 attention has no biases)");
  if (c.qk_rope_head_dim % 2) r.fail("qk_rope_head_dim", "must be even (RoPE rotates pairs)");
  if (c.rms_norm_eps <= 0) r.fail("rms_norm_eps", "must be positive");
  if (c.rope_theta <= 1) r.fail("rope_theta", "must be greater than 1");
  if (c.n_routed_experts > 0) {
    if (c.topk_method != "noaux_tc")
      r.fail("topk_method", fmt::format("\"{}\" is not supported (only noaux_tc)", c.topk_method));
    if (c.scoring_func != "sigmoid")
      r.fail("scoring_func", fmt::format("\"{}\" is not supported (only sigmoid)", c.scoring_func));
    if (c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.n_routed_experts)
      r.fail("num_experts_per_tok", fmt::format("= {} must be between 1 and n_routed_experts ({})",
                                                c.num_experts_per_tok, c.n_routed_experts));
    if (c.moe_intermediate_size < 1) r.fail("moe_intermediate_size", "must be positive");
    if (c.n_routed_experts % c.n_group)
      r.fail("n_group", fmt::format("= {} does not divide n_routed_experts ({})", c.n_group, c.n_routed_experts));
    if (c.topk_group > c.n_group)
      r.fail("topk_group", fmt::format("= {} exceeds n_group ({})", c.topk_group, c.n_group));
    if (c.n_group > 1 && c.n_routed_experts / c.n_group < 2)
      r.fail("n_group", "leaves fewer than 2 experts per group (group scores sum the top 2)");
    if (c.n_group > 1 && c.topk_group * (c.n_routed_experts / c.n_group) < c.num_experts_per_tok)
      r.fail("topk_group", "keeps fewer experts than num_experts_per_tok");
  }

  if (r.has("rope_scaling")) {
    const auto& rs = (*body)["rope_scaling"];
    if (!rs.is_object()) r.fail("rope_scaling", "must be an object");
    Reader s(rs, source + " rope_scaling");
    const std::string type = s.string("type", s.string("rope_type", ""));
    if (type == "yarn") {
      YarnScaling y;
      y.factor = s.number("factor");
      y.original_max_position_embeddings = s.integer("original_max_position_embeddings", 4096, 1);
      y.beta_fast = s.number("beta_fast", 32.0);
      y.beta_slow = s.number("beta_slow", 1.0);
      y.mscale = s.number("mscale", 1.0);
      y.mscale_all_dim = s.number("mscale_all_dim", 0.0);
      if (y.factor <= 0) s.fail("factor", "must be positive");
      c.rope_scaling = y;
    } else if (!type.empty() && type != "default") {
      r.fail("rope_scaling", fmt::format("type \"{}\" is not supported (only yarn)", type));
    }
  }

  c.quantization = parse_quantization(root, source);
  c.eos_token_ids = token_ids(body->contains("eos_token_id") ? (*body)["eos_token_id"] : json());
  if (body->contains("bos_token_id") && (*body)["bos_token_id"].is_number_integer())
    c.bos_token_id = (*body)["bos_token_id"].get<int>();
  return c;
}

ModelConfig load_model_config(const fs::path& dir) {
  const fs::path path = dir / "config.json";
  if (!fs::exists(path)) throw InputError(fmt::format("{}: no config.json in the model folder", dir.string()));
  json j;
  try {
    std::ifstream in(path);
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON ({})", path.string(), e.what()));
  }
  ModelConfig c = parse_model_config(j, path.string());

  std::set<int> stops(c.eos_token_ids.begin(), c.eos_token_ids.end());
  const fs::path gen = dir / "generation_config.json";
  if (fs::exists(gen)) {
    try {
      std::ifstream in(gen);
      json g = json::parse(in);
      if (g.contains("eos_token_id"))
        for (int id : token_ids(g["eos_token_id"])) stops.insert(id);
    } catch (const json::exception& e) {
      throw InputError(fmt::format("{}: not valid JSON ({})", gen.string(), e.what()));
    }
  }
  const bool kimi = c.model_type == "kimi_k2" || c.model_type == "kimi_k25";
  if (kimi && kKimiImEnd < c.vocab_size) {
    stops.insert(kKimiEos);
    stops.insert(kKimiImEnd);
  }
  c.eos_token_ids.assign(stops.begin(), stops.end());
  return c;
}

}  // namespace k2
