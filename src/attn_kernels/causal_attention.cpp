// The CausalAttention primitive: eval_cpu checks and encodes one task; the task cuts the queries into blocks
// of kQueryBlock rows per (batch, head) and runs the blocks on the pool. A block walks the keys it may see in
// blocks of kKeyBlock: scores by GEMM against the key rows, the online softmax update, then the GEMM of the
// probabilities with the value rows. Key blocks start at absolute multiples of kKeyBlock, so a
// query's arithmetic does not depend on how the prompt was cut into chunks.
#include "attn_kernels/causal_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "attn_kernels/block_ops.h"
#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace k2::attn_kernels {
namespace mx = mlx::core;

namespace {

constexpr int kQueryBlock = 64;   // query rows per task: the packed key block is reused by this many rows
constexpr int kKeyBlock = 256;    // keys per step: scores [256, 64] and the key rows [256, 192] stay in L2

struct Problem {
  std::shared_ptr<kernels::CpuKernels> kernels;
  const float *q_nope, *q_pe, *k, *k_pe, *v;
  float* out;
  int B, H, L, S, dn, dr, dv;
  float scale;
};

const BlockOps& ops_for(const std::shared_ptr<kernels::CpuKernels>& k) {
#if defined(__x86_64__) || defined(_M_X64)
  if ((k ? k->level() : kernels::best_simd_level()) == kernels::SimdLevel::avx2) return avx2_block_ops();
#endif
  return scalar_block_ops();
}

// One block of query rows [i0, i1) of head h in batch b. Scores are kept transposed, Sᵀ [keys, rows]: the key
// rows are then the GEMM's left operand exactly as the cache stores them (no packing per block), and the
// softmax over keys runs down the columns, eight queries per vector.
void query_block(const Problem& p, const BlockOps& ops, int b, int h, int i0, int i1) {
  const int rows = i1 - i0, dv = p.dv;
  const int offset = p.S - p.L;  // position of query 0
  const long bh = static_cast<long>(b) * p.H + h;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // Qᵀ = scale · [q_nope | q_pe]ᵀ: [dn + dr, rows].
  std::vector<float> qt(static_cast<size_t>(p.dn + p.dr) * rows), st(static_cast<size_t>(kKeyBlock) * rows),
      acc(static_cast<size_t>(rows) * dv, 0.0f), m(rows, kNegInf), l(rows, 0.0f), corr(rows);
  for (int r = 0; r < rows; ++r) {
    const float* qn = p.q_nope + (bh * p.L + i0 + r) * p.dn;
    const float* qp = p.q_pe + (bh * p.L + i0 + r) * p.dr;
    for (int d = 0; d < p.dn; ++d) qt[static_cast<size_t>(d) * rows + r] = qn[d] * p.scale;
    for (int d = 0; d < p.dr; ++d) qt[static_cast<size_t>(p.dn + d) * rows + r] = qp[d] * p.scale;
  }
  const float* kh = p.k + bh * p.S * p.dn;
  const float* kp = p.k_pe + static_cast<long>(b) * p.S * p.dr;
  const float* vh = p.v + bh * p.S * dv;
  const int first = offset + i0, keys = offset + i1;  // row r sits at first + r; the last row sees [0, keys)
  for (int j0 = 0; j0 < keys; j0 += kKeyBlock) {
    const int n = std::min(kKeyBlock, keys - j0);
    ops.gemm(n, rows, p.dn, kh + static_cast<long>(j0) * p.dn, p.dn, qt.data(), rows, st.data(), rows, false, false);
    ops.gemm(n, rows, p.dr, kp + static_cast<long>(j0) * p.dr, p.dr, qt.data() + static_cast<size_t>(p.dn) * rows,
             rows, st.data(), rows, true, false);  // Sᵀ [n, rows]
    // Causal mask, only in the blocks that reach past the first row's position: key j0 + j is hidden from
    // rows r < j0 + j - first.
    for (int j = std::max(0, first + 1 - j0); j < n; ++j)
      std::fill_n(st.data() + static_cast<size_t>(j) * rows, std::min(rows, j0 + j - first), kNegInf);
    ops.softmax_update(st.data(), n, rows, m.data(), l.data(), corr.data());
    for (int r = 0; r < rows; ++r)
      if (corr[r] != 1.0f)
        for (float *a = acc.data() + static_cast<size_t>(r) * dv, *e = a + dv; a < e; ++a) *a *= corr[r];
    ops.gemm(rows, dv, n, st.data(), rows, vh + static_cast<long>(j0) * dv, dv, acc.data(), dv, true, true);
  }
  for (int r = 0; r < rows; ++r) {
    float* o = p.out + (bh * p.L + i0 + r) * dv;
    const float inv = 1.0f / l[r];
    for (int e = 0; e < dv; ++e) o[e] = acc[static_cast<size_t>(r) * dv + e] * inv;
  }
}

void run(const Problem& p) {
  const BlockOps& ops = ops_for(p.kernels);
  const int blocks = (p.L + kQueryBlock - 1) / kQueryBlock;
  const int jobs = p.B * p.H * blocks;
  // Job 0 is the last query block (it sees the most keys), so the longest jobs start first.
  auto job = [&](int n) {
    const int block = blocks - 1 - n % blocks, bh = n / blocks;
    const int i0 = block * kQueryBlock;
    query_block(p, ops, bh / p.H, bh % p.H, i0, std::min(p.L, i0 + kQueryBlock));
  };
  if (p.kernels && p.kernels->threads() > 1)
    p.kernels->pool().run(jobs, job);
  else
    for (int n = 0; n < jobs; ++n) job(n);
}

class CausalAttention : public mx::UnaryPrimitive {
 public:
  CausalAttention(mx::Stream s, std::shared_ptr<kernels::CpuKernels> kernels, float scale)
      : mx::UnaryPrimitive(s), kernels_(std::move(kernels)), scale_(scale) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    for (const mx::array& a : in)
      if (!a.flags().row_contiguous) throw std::invalid_argument("k2 causal_attention: inputs must be row-contiguous");
    out.set_data(mx::allocator::malloc(out.nbytes()));
    Problem p{kernels_, in[0].data<float>(), in[1].data<float>(), in[2].data<float>(), in[3].data<float>(),
              in[4].data<float>(), out.data<float>(), in[0].shape(0), in[0].shape(1), in[0].shape(2),
              in[2].shape(2), in[0].shape(3), in[1].shape(3), in[4].shape(3), scale_};
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (const mx::array& a : in) enc.set_input_array(a);
    enc.set_output_array(out);
    enc.dispatch([p] { run(p); });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("k2 causal_attention runs on CPU streams only (GPU streams use MLX's SDPA)");
  }

  const char* name() const override { return "K2CausalAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const CausalAttention*>(&other);
    return o && o->kernels_ == kernels_ && o->scale_ == scale_;
  }

 private:
  std::shared_ptr<kernels::CpuKernels> kernels_;
  float scale_;
};

}  // namespace

bool handles(const mx::array& q_nope, const mx::Stream& stream) {
  return stream.device == mx::Device::cpu && q_nope.dtype() == mx::float32;
}

mx::array causal_attention(const std::shared_ptr<kernels::CpuKernels>& kernels, const mx::array& q_nope,
                           const mx::array& q_pe, const mx::array& k, const mx::array& k_pe, const mx::array& v,
                           float scale, const mx::Stream& stream) {
  const std::vector<const mx::array*> all{&q_nope, &q_pe, &k, &k_pe, &v};
  bool ok = true;
  for (const mx::array* a : all) ok = ok && a->ndim() == 4 && a->dtype() == mx::float32;
  const int B = ok ? q_nope.shape(0) : 0, H = ok ? q_nope.shape(1) : 0, L = ok ? q_nope.shape(2) : 0;
  const int S = ok ? k.shape(2) : 0;
  ok = ok && q_pe.shape(0) == B && q_pe.shape(1) == H && q_pe.shape(2) == L && k.shape(0) == B &&
       k.shape(1) == H && k.shape(3) == q_nope.shape(3) && k_pe.shape(0) == B && k_pe.shape(1) == 1 &&
       k_pe.shape(2) == S && k_pe.shape(3) == q_pe.shape(3) && v.shape(0) == B && v.shape(1) == H &&
       v.shape(2) == S && S >= L && L > 0;
  if (!ok)
    throw std::invalid_argument(fmt::format(
        "k2 causal_attention: float32 q_nope [B, H, L, dn], q_pe [B, H, L, dr], k [B, H, S, dn], k_pe [B, 1, S, dr], "
        "v [B, H, S, dv] with S >= L expected; got dims {}, {}, {}, {}, {}",
        q_nope.ndim(), q_pe.ndim(), k.ndim(), k_pe.ndim(), v.ndim()));
  std::vector<mx::array> inputs;
  for (const mx::array* a : all) inputs.push_back(mx::contiguous(*a, false, stream));
  return mx::array({B, H, L, v.shape(3)}, mx::float32, std::make_shared<CausalAttention>(stream, kernels, scale),
                   std::move(inputs));
}

}  // namespace k2::attn_kernels
