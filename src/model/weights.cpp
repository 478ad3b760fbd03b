// Weight binding: finds each module's tensors (named by the weight key table) in whichever layout the
// checkpoint uses, checks shapes against config.json, converts (FP8 blocks, INT4 compressed-tensors, kv_b
// split into per-head rows, expert stacking) into mlx-lm's deepseek_v3 model tree, and casts to the compute
// dtype. Quantized tensors are never re-quantized.
#include "model/weights.h"

#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "io/tensor_prefetch.h"
#include "mlx/mlx.h"
#include "model/footprint.h"
#include "model/quant.h"
#include "model/weight_keys.h"

namespace k2 {
namespace mx = mlx::core;

namespace {

bool is_float(StDtype d) { return d == StDtype::F32 || d == StDtype::F16 || d == StDtype::BF16 || d == StDtype::F64; }

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

void eval_parts(const WeightTensor& t) {
  std::vector<mx::array> outs{t.weight};
  if (t.scales) outs.push_back(*t.scales);
  if (t.biases) outs.push_back(*t.biases);
  mx::eval(outs);
}

// A weight as read from disk, before the compute-dtype cast.
struct RawWeight {
  WeightTensor t;
  bool from_fp8 = false;
  std::string module;  // for error messages
};

class Binder {
 public:
  Binder(const Checkpoint& ckpt, const ModelConfig& c, const LoadOptions& o, TensorPrefetcher* ahead)
      : ck_(ckpt), c_(c), o_(o), prefix_(c.weight_prefix), ahead_(ahead) {}

  std::string key(const std::string& path) const { return prefix_ + path; }
  bool has(const std::string& path) const { return ck_.contains(key(path)); }

  // --- byte accounting for the progress callback ---
  void set_total(size_t total) { total_ = total; }
  void count(const std::string& name) {
    done_ += ck_.info(key(name)).nbytes;
    if (o_.progress) o_.progress(done_, total_);
  }

  // Runs `f`, which reads or converts `module`, re-raising what MLX throws (std::invalid_argument for shapes
  // or parameters it rejects, std::runtime_error otherwise) as an error that names the tensor and its file.
  template <class F>
  auto guarded(const std::string& module, F&& f) -> decltype(f()) {
    try {
      return f();
    } catch (const Error&) {
      throw;
    } catch (const std::invalid_argument& e) {
      throw CheckpointError(where(module) + e.what());
    } catch (const std::exception& e) {
      throw Error(where(module) + e.what());
    }
  }

  // A 1-D float vector (norm weights, router bias), cast to `dtype`.
  mx::array vector(const std::string& name, int64_t n, mx::Dtype dtype) {
    const TensorInfo& ti = info(name);
    if (!is_float(ti.dtype) || ti.shape != std::vector<int64_t>{n})
      throw CheckpointError(fmt::format("tensor '{}': expected a float vector [{}] from config.json, found {} {}",
                                        key(name), n, to_string(ti.dtype), ti.shape_string()));
    mx::array a = guarded(name, [&] {
      mx::array v = mx::astype(read(key(name)), dtype);
      mx::eval(v);
      return v;
    });
    count(name);
    return a;
  }

  // A matrix [lead..., out, in] in any stored format.
  RawWeight raw(const std::string& module, const std::vector<int64_t>& lead, int64_t out, int64_t in) {
    return guarded(module, [&] {
      RawWeight r = raw_any(module, lead, out, in);
      r.module = module;
      return r;
    });
  }

  RawWeight raw_any(const std::string& module, std::vector<int64_t> lead, int64_t out, int64_t in) {
    std::vector<int64_t> logical = lead;
    logical.push_back(out);
    logical.push_back(in);
    if (has(module + keys::kPacked)) return raw_int4(module, logical);
    if (has(module + keys::kScales)) return raw_mlx(module, logical);
    if (!has(module + keys::kWeight))
      throw CheckpointError(fmt::format(
          "{}: module '{}' not found (looked for {}.weight, .scales, .weight_scale_inv, .weight_packed)",
          ck_.dir().string(), key(module), key(module)));
    if (has(module + keys::kScaleInv)) return raw_fp8(module, logical);
    const TensorInfo& ti = info(module + keys::kWeight);
    if (!is_float(ti.dtype))
      throw CheckpointError(fmt::format("tensor '{}': dtype {} is not a float type and no .scales or "
                                        ".weight_scale_inv accompanies it", ti.name, to_string(ti.dtype)));
    if (ti.shape != logical)
      throw CheckpointError(fmt::format("tensor '{}': shape {} does not match {} expected from config.json",
                                        ti.name, ti.shape_string(), shape_str(logical)));
    RawWeight r{WeightTensor{read(ti.name), std::nullopt, std::nullopt, std::nullopt}};
    count(module + keys::kWeight);
    return r;
  }

  // Casts float parts to the compute dtype (quantizing FP8 sources when asked) and evaluates.
  WeightTensor finish(RawWeight r) {
    return guarded(r.module, [&] { return finish_unguarded(std::move(r)); });
  }

  WeightTensor matrix(const std::string& module, std::vector<int64_t> lead, int64_t out, int64_t in) {
    return finish(raw(module, std::move(lead), out, in));
  }

  // Report all quantization disagreements with config.json in one message.
  void report() const {
    if (disagreements_.empty() || !o_.warn) return;
    o_.warn(fmt::format("{} tensor(s) are quantized differently from what config.json declares; using the "
                        "format found in each tensor (first: {})",
                        disagreements_.size(), *disagreements_.begin()));
  }

  const ModelConfig& config() const { return c_; }
  const LoadOptions& options() const { return o_; }

 private:
  const TensorInfo& info(const std::string& name) const { return ck_.info(key(name)); }
  // A tensor by its full name, from the read-ahead pool when there is one.
  mx::array read(const std::string& full_name) { return ahead_ ? ahead_->take(full_name) : ck_.read(full_name); }

  // "tensor 'NAME' (FILE): " for the first stored tensor of `module` (or `module` itself when it is a tensor).
  std::string where(const std::string& module) const {
    for (const char* suffix : {"", keys::kWeight, keys::kPacked, keys::kScales}) {
      const std::string name = key(module + suffix);
      if (ck_.contains(name)) return fmt::format("tensor '{}' ({}): ", name, ck_.file_of(name).string());
    }
    return fmt::format("module '{}' ({}): ", key(module), ck_.dir().string());
  }

  WeightTensor finish_unguarded(RawWeight r) {
    WeightTensor& t = r.t;
    if (r.from_fp8 && o_.fp8_requantize) {
      auto q = mx::quantize(t.weight, o_.fp8_requantize->group_size, o_.fp8_requantize->bits, "affine");
      t = WeightTensor{q[0], q[1], q[2], *o_.fp8_requantize};
    }
    if (t.quant) {
      if (auto dt = scales_dtype(*t.scales)) {
        t.scales = mx::astype(*t.scales, *dt);
        if (t.biases) t.biases = mx::astype(*t.biases, *dt);
      }
    } else {
      t.weight = mx::astype(t.weight, o_.dtype);
    }
    eval_parts(t);
    return t;
  }

  // Float32 compute keeps scales/biases as stored (bf16 -> f32 promotion inside the kernels is
  // exact and as fast, and mlx-lm holds them at the same size); lower precisions cast to match.
  // The uint8 exponent scales of the fp modes are never cast.
  std::optional<mx::Dtype> scales_dtype(const mx::array& scales) const {
    if (o_.dtype == mx::float32 || scales.dtype() == mx::uint8) return std::nullopt;
    return o_.dtype;
  }

  RawWeight raw_mlx(const std::string& module, const std::vector<int64_t>& logical) {
    const TensorInfo& w = info(module + keys::kWeight);
    const TensorInfo& s = info(module + keys::kScales);
    const bool has_biases = has(module + keys::kBiases);
    const size_t n = logical.size();
    auto mismatch = [&](const std::string& what) {
      return CheckpointError(fmt::format(
          "tensor '{}': {} (weight {} {}, scales {} {}; logical shape {} from config.json)", w.name, what,
          to_string(w.dtype), w.shape_string(), to_string(s.dtype), s.shape_string(), shape_str(logical)));
    };
    if (w.dtype != StDtype::U32) throw mismatch("a quantized weight must be uint32");
    if (w.shape.size() != n || s.shape.size() != n) throw mismatch("wrong number of dimensions");
    for (size_t i = 0; i + 1 < n; ++i)
      if (w.shape[i] != logical[i] || s.shape[i] != logical[i]) throw mismatch("leading dimensions differ");
    if (has_biases && info(module + keys::kBiases).shape != s.shape) throw mismatch("biases and scales differ in shape");

    PackedShapes ps{key(module), logical[n - 1], logical[n - 2], w.shape[n - 1], s.shape[n - 1], has_biases,
                    w.shape_string(), s.shape_string()};
    const auto declared = declared_quant_for(c_.quantization, key(module));
    QuantSpec q = infer_quant_spec(ps, declared);
    if (!declared || !(*declared == q))
      disagreements_.insert(fmt::format("{}: config.json {}, tensors {}", key(module),
                                        declared ? describe(*declared) : "unquantized", describe(q)));
    WeightTensor t{read(w.name), read(s.name), std::nullopt, q};
    count(module + keys::kWeight);
    count(module + keys::kScales);
    if (has_biases) {
      t.biases = read(key(module + keys::kBiases));
      count(module + keys::kBiases);
    }
    return RawWeight{std::move(t)};
  }

  // Original FP8 release: e4m3 bytes times a float32 scale per 128x128 block (spec §2.1),
  // rounded to bf16 as DeepSeek's fp8_cast_bf16.py and mlx-lm's sanitize do.
  RawWeight raw_fp8(const std::string& module, const std::vector<int64_t>& logical) {
    const TensorInfo& w = info(module + keys::kWeight);
    const TensorInfo& s = info(module + keys::kScaleInv);
    const int64_t block = c_.quantization.weight_block_size.empty() ? 128 : c_.quantization.weight_block_size[0];
    if (w.dtype != StDtype::F8_E4M3)
      throw CheckpointError(fmt::format("tensor '{}': has a weight_scale_inv but dtype {} (expected F8_E4M3)",
                                        w.name, to_string(w.dtype)));
    if (logical.size() != 2 || w.shape != logical)
      throw CheckpointError(fmt::format("tensor '{}': shape {} does not match {} expected from config.json",
                                        w.name, w.shape_string(), shape_str(logical)));
    const int64_t m = logical[0], n = logical[1];
    const int64_t mb = (m + block - 1) / block, nb = (n + block - 1) / block;
    if (s.shape != std::vector<int64_t>{mb, nb} || !is_float(s.dtype))
      throw CheckpointError(fmt::format("tensor '{}': block scales {} {} do not fit weight {} with {}x{} blocks "
                                        "(expected float [{}, {}])", s.name, to_string(s.dtype), s.shape_string(),
                                        w.shape_string(), block, block, mb, nb));
    mx::array wf = mx::from_fp8(read(w.name), mx::bfloat16);
    mx::array scale = mx::astype(read(s.name), mx::float32);
    const int pm = static_cast<int>(mb * block - m), pn = static_cast<int>(nb * block - n);
    if (pm || pn) wf = mx::pad(wf, {{0, pm}, {0, pn}});
    const int B = static_cast<int>(block);
    wf = mx::reshape(wf, {static_cast<int>(mb), B, static_cast<int>(nb), B});  // [mb, 128, nb, 128]
    wf = mx::multiply(wf, mx::reshape(scale, {static_cast<int>(mb), 1, static_cast<int>(nb), 1}));
    wf = mx::reshape(wf, {static_cast<int>(mb * block), static_cast<int>(nb * block)});
    wf = mx::astype(mx::slice(wf, {0, 0}, {static_cast<int>(m), static_cast<int>(n)}), mx::bfloat16);
    count(module + keys::kWeight);
    count(module + keys::kScaleInv);
    return RawWeight{WeightTensor{wf, std::nullopt, std::nullopt, std::nullopt}, true};
  }

  // compressed-tensors pack-quantized INT4 (K2-Thinking, K2.5): signed int4 stored as unsigned
  // nibbles u = q + 8, LSB first, eight per int32, group 32 symmetric; MLX affine 4-bit g32 with
  // biases = -8·scale reads the same bits (spec §2.1, mlx-lm PR #593).
  RawWeight raw_int4(const std::string& module, const std::vector<int64_t>& logical) {
    const TensorInfo& w = info(module + keys::kPacked);
    const TensorInfo& s = info(module + keys::kPackedScale);
    if (logical.size() != 2 || w.shape.size() != 2 || s.shape.size() != 2 || w.shape[0] != logical[0] ||
        w.shape[1] * 8 != logical[1] || s.shape[0] != logical[0] || !is_float(s.dtype) ||
        (w.dtype != StDtype::I32 && w.dtype != StDtype::U32))
      throw CheckpointError(fmt::format("tensor '{}': packed INT4 weight {} {} with scales {} does not fit the "
                                        "logical shape {} from config.json (expected int32 [{}, {}])",
                                        w.name, to_string(w.dtype), w.shape_string(), s.shape_string(),
                                        shape_str(logical), logical[0], logical[1] / 8));
    PackedShapes ps{key(module), logical[1], logical[0], w.shape[1], s.shape[1], true, w.shape_string(),
                    s.shape_string()};
    QuantSpec q = infer_quant_spec(ps, QuantSpec{4, 32, "affine"});
    mx::array packed = mx::view(read(w.name), mx::uint32);
    mx::array scales = read(s.name);
    mx::array biases = mx::multiply(scales, mx::array(-8.0f, scales.dtype()));
    count(module + keys::kPacked);
    count(module + keys::kPackedScale);
    if (has(module + keys::kPackedShape)) count(module + keys::kPackedShape);
    return RawWeight{WeightTensor{packed, scales, biases, q}};
  }

  const Checkpoint& ck_;
  const ModelConfig& c_;
  const LoadOptions& o_;
  std::string prefix_;
  TensorPrefetcher* ahead_;
  size_t done_ = 0, total_ = 0;
  std::set<std::string> disagreements_;
};

// Stacks per-expert weights [out, in] into [experts, out, in] (mlx-lm sanitize step 3).
WeightTensor stack_experts(std::vector<WeightTensor>& experts, const std::string& where) {
  std::vector<mx::array> w, s, b;
  const auto& q0 = experts.front().quant;
  for (auto& e : experts) {
    if (e.quant != q0)
      throw CheckpointError(fmt::format("{}: experts are stored in different formats ({} vs {})", where,
                                        q0 ? describe(*q0) : "dense", e.quant ? describe(*e.quant) : "dense"));
    w.push_back(e.weight);
    if (e.scales) s.push_back(*e.scales);
    if (e.biases) b.push_back(*e.biases);
  }
  WeightTensor t{mx::stack(w), std::nullopt, std::nullopt, q0};
  if (!s.empty()) t.scales = mx::stack(s);
  if (!b.empty()) t.biases = mx::stack(b);
  experts.clear();
  eval_parts(t);
  return t;
}

SwitchLinear bind_experts(Binder& b, int layer, keys::Kind kind) {
  const keys::Shape s = keys::logical_shape(kind, b.config());
  const std::string stacked = keys::module(kind, layer);
  if (b.has(stacked + keys::kWeight)) return SwitchLinear{b.matrix(stacked, {s.lead}, s.out, s.in)};
  std::vector<WeightTensor> experts;
  experts.reserve(s.lead);
  for (int e = 0; e < s.lead; ++e) {
    const std::string m = keys::expert_module(kind, layer, e);
    experts.push_back(b.matrix(m, {}, s.out, s.in));
  }
  return b.guarded(keys::expert_module(kind, layer, 0),
                   [&] { return SwitchLinear{stack_experts(experts, b.key(stacked))}; });
}

Linear bind_linear(Binder& b, int layer, keys::Kind kind) {
  const keys::Shape s = keys::logical_shape(kind, b.config());
  return Linear{b.matrix(keys::module(kind, layer), {}, s.out, s.in)};
}

mx::array bind_norm(Binder& b, int layer, keys::Kind kind) {
  return b.vector(keys::module(kind, layer) + keys::kWeight, keys::logical_shape(kind, b.config()).out,
                  b.options().dtype);
}

MlpWeights bind_mlp(Binder& b, int layer, keys::Kind gate, keys::Kind up, keys::Kind down) {
  return MlpWeights{bind_linear(b, layer, gate), bind_linear(b, layer, up), bind_linear(b, layer, down)};
}

// Rows [begin, end) of every head of a matrix stored as [heads·rows, cols] (packed weight, scales and biases
// alike: quantization groups run along a row, so taking whole rows loses nothing).
WeightTensor head_rows(const WeightTensor& t, int heads, int rows, int begin, int end) {
  auto cut = [&](const mx::array& a) {
    const int cols = a.shape(-1);
    mx::array per_head = mx::reshape(a, {heads, rows, cols});                       // [heads, rows, cols]
    return mx::contiguous(mx::slice(per_head, {0, begin, 0}, {heads, end, cols}));  // [heads, end - begin, cols]
  };
  WeightTensor out{cut(t.weight), std::nullopt, std::nullopt, t.quant};
  if (t.scales) out.scales = cut(*t.scales);
  if (t.biases) out.biases = cut(*t.biases);
  eval_parts(out);
  return out;
}

// embed_q / unembed_out as the checkpoint stores them, or taken from kv_b_proj [heads·(nope + v), kv_lora]
// without re-quantizing: per head, the first nope rows are W_UK (kept as rows, embed_q_is_kv_b_rows) and the
// other v rows W_UV (exactly unembed_out's layout). mlx-lm (PR #839) instead dequantizes a quantized kv_b_proj
// and quantizes W_UKᵀ again along the other axis, which adds a second rounding error and fails when
// qk_nope_head_dim is smaller than the group size.
void bind_kv_b(Binder& b, int layer, AttentionWeights& a) {
  const ModelConfig& c = b.config();
  const int H = c.num_attention_heads, nope = c.qk_nope_head_dim, v = c.v_head_dim;
  const std::string embed_q = keys::module(keys::Kind::EmbedQ, layer);
  if (b.has(embed_q + keys::kWeight) || b.has(embed_q + keys::kScales)) {
    const keys::Shape k = keys::logical_shape(keys::Kind::EmbedQ, c);
    const keys::Shape u = keys::logical_shape(keys::Kind::UnembedOut, c);
    a.embed_q = MultiLinear{b.matrix(embed_q, {k.lead}, k.out, k.in)};
    a.unembed_out = MultiLinear{b.matrix(keys::module(keys::Kind::UnembedOut, layer), {u.lead}, u.out, u.in)};
    a.embed_q_is_kv_b_rows = false;
    return;
  }
  const std::string module = keys::module(keys::Kind::KvBProj, layer);
  const keys::Shape s = keys::logical_shape(keys::Kind::KvBProj, c);
  RawWeight kv = b.raw(module, {}, s.out, s.in);
  const auto& requant = b.options().fp8_requantize;
  b.guarded(module, [&] {
    if (kv.from_fp8 && requant && nope % requant->group_size == 0) {
      // A first quantization of the dequantized FP8 matrix, arranged as mlx-lm's conversion of the FP8
      // release arranges it (W_UKᵀ quantized along nope), so --fp8-requantize equals that conversion.
      const int r = static_cast<int>(s.in);
      mx::array dense = mx::reshape(kv.t.weight, {H, nope + v, r});                       // [H, nope + v, r]
      mx::array wk = mx::contiguous(mx::swapaxes(mx::slice(dense, {0, 0, 0}, {H, nope, r}), -1, -2));  // [H, r, nope]
      mx::array wv = mx::contiguous(mx::slice(dense, {0, nope, 0}, {H, nope + v, r}));    // [H, v, r]
      a.embed_q = MultiLinear{b.finish(RawWeight{WeightTensor{wk, std::nullopt, std::nullopt, std::nullopt}, true, module})};
      a.unembed_out = MultiLinear{b.finish(RawWeight{WeightTensor{wv, std::nullopt, std::nullopt, std::nullopt}, true, module})};
      a.embed_q_is_kv_b_rows = false;
      return;
    }
    const WeightTensor t = b.finish(std::move(kv));
    a.embed_q = MultiLinear{head_rows(t, H, nope + v, 0, nope)};        // [H, nope, r] (packed: [H, nope, r·bits/32])
    a.unembed_out = MultiLinear{head_rows(t, H, nope + v, nope, nope + v)};  // [H, v, r]
    a.embed_q_is_kv_b_rows = true;
  });
}

LayerWeights bind_layer(Binder& b, int i) {
  using keys::Kind;
  const ModelConfig& c = b.config();
  const mx::Dtype dt = b.options().dtype;
  // embed_q / unembed_out are placeholders until bind_kv_b.
  AttentionWeights a{.q_proj = std::nullopt,
                     .q_a_proj = std::nullopt,
                     .q_a_layernorm = std::nullopt,
                     .q_b_proj = std::nullopt,
                     .kv_a_proj_with_mqa = bind_linear(b, i, Kind::KvAProj),
                     .kv_a_layernorm = bind_norm(b, i, Kind::KvANorm),
                     .embed_q = MultiLinear{WeightTensor{mx::array(0.0f), std::nullopt, std::nullopt, std::nullopt}},
                     .embed_q_is_kv_b_rows = false,
                     .unembed_out = MultiLinear{WeightTensor{mx::array(0.0f), std::nullopt, std::nullopt, std::nullopt}},
                     .o_proj = bind_linear(b, i, Kind::OProj)};
  if (c.q_lora_rank > 0) {
    a.q_a_proj = bind_linear(b, i, Kind::QAProj);
    a.q_a_layernorm = bind_norm(b, i, Kind::QANorm);
    a.q_b_proj = bind_linear(b, i, Kind::QBProj);
  } else {
    a.q_proj = bind_linear(b, i, Kind::QProj);
  }
  bind_kv_b(b, i, a);

  LayerWeights l{i, bind_norm(b, i, Kind::InputNorm), bind_norm(b, i, Kind::PostAttentionNorm), std::move(a)};
  if (!c.is_moe_layer(i)) {
    l.mlp = bind_mlp(b, i, Kind::MlpGate, Kind::MlpUp, Kind::MlpDown);
    return l;
  }
  const std::string gate = keys::module(Kind::Router, i);
  const keys::Shape rs = keys::logical_shape(Kind::Router, c);
  RawWeight router = b.raw(gate, {}, rs.out, rs.in);
  if (router.t.quant)
    throw CheckpointError(fmt::format("tensor '{}.weight': the router must not be quantized", b.key(gate)));
  mx::array router_w = b.guarded(gate, [&] {
    mx::array w = mx::astype(router.t.weight, dt);
    mx::eval(w);
    return w;
  });
  MoeWeights m{router_w, b.vector(gate + keys::kCorrectionBias, rs.out, mx::float32),
               bind_experts(b, i, Kind::ExpertGate), bind_experts(b, i, Kind::ExpertUp),
               bind_experts(b, i, Kind::ExpertDown)};
  if (c.n_shared_experts > 0) m.shared_experts = bind_mlp(b, i, Kind::SharedGate, Kind::SharedUp, Kind::SharedDown);
  l.moe = std::move(m);
  return l;
}

}  // namespace

size_t ModelWeights::nbytes() const {
  size_t n = 0;
  auto add = [&](const WeightTensor& t) { n += t.nbytes(); };
  if (embed_tokens) add(embed_tokens->w);
  if (norm) n += norm->nbytes();
  if (lm_head) add(lm_head->w);
  for (const auto& l : layers) {
    n += l.input_layernorm.nbytes() + l.post_attention_layernorm.nbytes();
    const auto& a = l.attn;
    for (const auto* lin : {a.q_proj ? &*a.q_proj : nullptr, a.q_a_proj ? &*a.q_a_proj : nullptr,
                            a.q_b_proj ? &*a.q_b_proj : nullptr, &a.kv_a_proj_with_mqa, &a.o_proj})
      if (lin) add(lin->w);
    add(a.embed_q.w);
    add(a.unembed_out.w);
    n += a.kv_a_layernorm.nbytes() + (a.q_a_layernorm ? a.q_a_layernorm->nbytes() : 0);
    auto add_mlp = [&](const MlpWeights& m) { add(m.gate_proj.w); add(m.up_proj.w); add(m.down_proj.w); };
    if (l.mlp) add_mlp(*l.mlp);
    if (l.moe) {
      n += l.moe->gate_weight.nbytes() + l.moe->e_score_correction_bias.nbytes();
      add(l.moe->gate_proj.w);
      add(l.moe->up_proj.w);
      add(l.moe->down_proj.w);
      if (l.moe->shared_experts) add_mlp(*l.moe->shared_experts);
    }
  }
  return n;
}

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& c, const LoadOptions& o) {
  const int last = o.last_layer < 0 ? c.num_hidden_layers : o.last_layer;
  if (o.first_layer < 0 || o.first_layer > last || last > c.num_hidden_layers)
    throw InputError(fmt::format("layer range [{}, {}) is not within the model's {} layers", o.first_layer, last,
                                 c.num_hidden_layers));
  const ByteRange range{o.first_layer, last, o.load_embedding, o.load_head};
  // Bytes this range will read, for the progress callback (only this range's shards are opened).
  const size_t total = count_checkpoint_bytes(ckpt, c, range).range_bytes(o.first_layer, last, o.load_embedding,
                                                                          o.load_head);
  // Readers fetch the range's tensors in binding order while the binder converts the ones before them.
  std::optional<TensorPrefetcher> ahead;
  const int threads = o.read_threads == 0 ? default_read_threads() : o.read_threads;
  if (threads > 1)
    ahead.emplace(ckpt, range_tensor_groups(ckpt, c, range),
                  PrefetchOptions{threads, o.read_ahead_bytes, PrefetchOptions{}.chunk_bytes});
  Binder b(ckpt, c, o, ahead ? &*ahead : nullptr);
  b.set_total(total);

  ModelWeights w;
  w.first_layer = o.first_layer;
  w.last_layer = last;
  w.dtype = o.dtype;
  const keys::Shape vocab = keys::logical_shape(keys::Kind::Embed, c);
  if (o.load_embedding) w.embed_tokens = Embedding{b.matrix(keys::kEmbed, {}, vocab.out, vocab.in)};
  for (int i = o.first_layer; i < last; ++i) w.layers.push_back(bind_layer(b, i));
  if (o.load_head) {
    w.norm = bind_norm(b, -1, keys::Kind::FinalNorm);
    const bool tied = c.tie_word_embeddings && !b.has(std::string(keys::kLmHead) + keys::kWeight) &&
                      !b.has(std::string(keys::kLmHead) + keys::kScales);
    w.lm_head = Linear{b.matrix(tied ? keys::kEmbed : keys::kLmHead, {}, vocab.out, vocab.in)};
  }
  b.report();
  return w;
}

}  // namespace k2
