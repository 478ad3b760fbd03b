// Pre-norm decoder blocks (spec §3.1): h += Attn(RMSNorm(h)); h += FFN(RMSNorm(h)); final RMSNorm and
// an untied lm_head on the last stage.
#include "model/model.h"

#include <fmt/format.h>

#include "core/error.h"
#include "mlx/mlx.h"
#include "model/attention.h"
#include "model/moe.h"

namespace k2 {
namespace mx = mlx::core;

Model::Model(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)), rope_(config_), dtype_(weights_.dtype) {}

namespace {

// Every quantized matrix of the range, for handing the CPU kernels to them after binding.
template <class F>
void for_each_weight(ModelWeights& w, F&& f) {
  auto mlp = [&](MlpWeights& m) {
    f(m.gate_proj.w);
    f(m.up_proj.w);
    f(m.down_proj.w);
  };
  for (LayerWeights& l : w.layers) {
    AttentionWeights& a = l.attn;
    for (std::optional<Linear>* lin : {&a.q_proj, &a.q_a_proj, &a.q_b_proj})
      if (*lin) f((*lin)->w);
    f(a.kv_a_proj_with_mqa.w);
    f(a.embed_q.w);
    f(a.unembed_out.w);
    f(a.o_proj.w);
    if (l.mlp) mlp(*l.mlp);
    if (l.moe) {
      f(l.moe->gate_proj.w);
      f(l.moe->up_proj.w);
      f(l.moe->down_proj.w);
      if (l.moe->shared_experts) mlp(*l.moe->shared_experts);
    }
  }
  if (w.lm_head) f(w.lm_head->w);
}

}  // namespace

Model Model::load(const std::filesystem::path& dir, const LoadOptions& options) {
  ModelConfig config = load_model_config(dir);
  Checkpoint ckpt(dir);
  ModelWeights weights = load_weights(ckpt, config, options);
  if (options.cpu_kernels) {
    for_each_weight(weights, [&](WeightTensor& t) {
      if (t.quantized()) t.cpu_kernels = options.cpu_kernels;
    });
    for (LayerWeights& l : weights.layers) l.attn.cpu_kernels = options.cpu_kernels;
  }
  return Model(std::move(config), std::move(weights));
}

mx::array Model::embed(const mx::array& ids) const {
  if (!weights_.embed_tokens) throw Error("this model stage has no embedding (it is not the first stage)");
  return weights_.embed_tokens->lookup(ids, dtype_);
}

namespace {

void check_range(const KvCache& cache, int first, int last) {
  if (cache.first_layer() != first || cache.last_layer() != last)
    throw Error(fmt::format("cache covers layers [{}, {}) but the model runs [{}, {})", cache.first_layer(),
                            cache.last_layer(), first, last));
}

}  // namespace

// The layer loop for both forms; `attend` is the attention of layer l on its input-normed hidden state.
template <class Attend>
mx::array Model::layers(const mx::array& h_in, Attend&& attend) const {
  const float eps = static_cast<float>(config_.rms_norm_eps);
  mx::array h = h_in;
  for (const LayerWeights& l : weights_.layers) {
    h = mx::add(h, attend(l, mx::fast::rms_norm(h, l.input_layernorm, eps)));
    mx::array x = mx::fast::rms_norm(h, l.post_attention_layernorm, eps);
    h = mx::add(h, l.moe ? moe_forward(config_, *l.moe, x) : swiglu_mlp(*l.mlp, x));
  }
  return h;
}

mx::array Model::run_layers(const mx::array& h_in, KvCache& cache) const {
  check_range(cache, first_layer(), last_layer());
  return layers(h_in, [&](const LayerWeights& l, const mx::array& x) {
    return mla_attention(config_, rope_, l.attn, x, cache.layer(l.index));
  });
}

mx::array Model::run_layers(const mx::array& h_in, const std::vector<KvCache*>& caches) const {
  for (const KvCache* c : caches) check_range(*c, first_layer(), last_layer());
  std::vector<LayerCache*> layer_caches(caches.size());
  return layers(h_in, [&](const LayerWeights& l, const mx::array& x) {
    for (size_t b = 0; b < caches.size(); ++b) layer_caches[b] = &caches[b]->layer(l.index);
    return mla_attention(config_, rope_, l.attn, x, layer_caches);
  });
}

mx::array Model::head(const mx::array& h) const {
  if (!weights_.lm_head) throw Error("this model stage has no lm_head (it is not the last stage)");
  return (*weights_.lm_head)(mx::fast::rms_norm(h, *weights_.norm, static_cast<float>(config_.rms_norm_eps)));
}

}  // namespace k2
