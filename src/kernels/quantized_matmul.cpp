// The QuantizedMatmul primitive: eval_cpu validates and encodes one task; the task quantizes the activation
// rows, groups (row, expert) pairs by expert, cuts the work into blocks of output rows and runs the blocks
// on the pool with the kernel for this CPU.
#include "kernels/quantized_matmul.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "kernels/qmm_kernel.h"
#include "mlx/allocator.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"

namespace k2::kernels {
namespace mx = mlx::core;

CpuKernels::CpuKernels(int threads, std::optional<SimdLevel> level)
    : level_(level.value_or(best_simd_level())), pool_(threads > 0 ? threads : physical_cores()) {}

namespace {

struct Kernel {
  QmmKernelFn run;
  ActivationLayout layout;
};

Kernel kernel_for(SimdLevel level, int bits, int K) {
  switch (level) {
#if defined(__x86_64__) || defined(_M_X64)
    case SimdLevel::avx2: return {&qmm_block_avx2, avx2_activation_layout(bits, K)};
#endif
#if defined(__aarch64__)
    case SimdLevel::neon: return {&qmm_block_neon, neon_activation_layout(bits, K)};
#endif
    default: return {&qmm_block_scalar, ActivationLayout::natural};
  }
}

std::optional<ScaleType> scale_type(mx::Dtype t) {
  if (t == mx::float32) return ScaleType::f32;
  if (t == mx::bfloat16) return ScaleType::bf16;
  if (t == mx::float16) return ScaleType::f16;
  return std::nullopt;
}

bool is_float(mx::Dtype t) { return t == mx::float32 || t == mx::bfloat16 || t == mx::float16; }

// Activation row r as float (the kernels quantize from float).
void row_to_float(const void* x, mx::Dtype t, size_t r, int K, float* dst) {
  const size_t base = r * static_cast<size_t>(K);
  if (t == mx::float32) {
    std::memcpy(dst, static_cast<const float*>(x) + base, sizeof(float) * K);
    return;
  }
  const uint16_t* h = static_cast<const uint16_t*>(x) + base;
  for (int i = 0; i < K; ++i) dst[i] = t == mx::bfloat16 ? bf16_to_float(h[i]) : f16_to_float(h[i]);
}

struct Problem {
  std::shared_ptr<CpuKernels> kernels;
  const void* x;
  mx::Dtype x_type = mx::float32;
  const uint8_t* w;
  const void* scales;
  const void* biases;
  ScaleType scale_type;
  const uint32_t* indices;  // [T, k] or null
  int T, k, E, N, K, bits, group;
  float* out;
};

struct Job {
  int expert, i0, i1, n0, n1;
};

void run(const Problem& p) {
  const int K = p.K, G = K / p.group;
  ThreadPool& pool = p.kernels->pool();
  const int threads = pool.threads();

  const Kernel kernel = kernel_for(p.kernels->level(), p.bits, K);

  // 1. Activations to int16 per group, in the order the kernel reads them.
  std::vector<int16_t> q(static_cast<size_t>(p.T) * K);
  std::vector<float> d(static_cast<size_t>(p.T) * G), sum(static_cast<size_t>(p.T) * G);
  const int rows_per_job = std::max(1, p.T / (4 * threads));
  pool.run((p.T + rows_per_job - 1) / rows_per_job, [&](int j) {
    std::vector<float> row(K);
    for (int r = j * rows_per_job; r < std::min(p.T, (j + 1) * rows_per_job); ++r) {
      row_to_float(p.x, p.x_type, r, K, row.data());
      const size_t off = static_cast<size_t>(r) * G;
      quantize_row(row.data(), K, p.group, kernel.layout, q.data() + static_cast<size_t>(r) * K, d.data() + off,
                   sum.data() + off);
    }
  });
  const QuantizedRows xr{q.data(), d.data(), sum.data(), K, G, kernel.layout};

  // 2. Output rows grouped by expert: act_rows[i] is the activation row of output row out_rows[i].
  const int P = p.indices ? p.T * p.k : p.T;
  std::vector<int32_t> act_rows(P), out_rows(P);
  std::vector<int> start(p.E + 1, 0);
  if (!p.indices) {
    std::iota(act_rows.begin(), act_rows.end(), 0);
    std::iota(out_rows.begin(), out_rows.end(), 0);
    start[1] = P;
  } else {
    for (int i = 0; i < P; ++i) {
      if (p.indices[i] >= static_cast<uint32_t>(p.E))
        throw std::out_of_range(fmt::format("quantized_matmul: expert index {} out of range [0, {})", p.indices[i], p.E));
      ++start[p.indices[i] + 1];
    }
    std::partial_sum(start.begin(), start.end(), start.begin());
    std::vector<int> fill(start.begin(), start.end() - 1);
    for (int i = 0; i < P; ++i) {
      const int slot = fill[p.indices[i]]++;
      act_rows[slot] = i / p.k;
      out_rows[slot] = i;
    }
  }

  // 3. Blocks of (expert, ≤32 activation rows, a run of output features), enough of them for every thread
  // to stay busy while each weight row is still read from memory only once per activation block.
  constexpr int kRowsPerBlock = 32;
  int units = 0;
  for (int e = 0; e < p.E; ++e) units += (start[e + 1] - start[e] + kRowsPerBlock - 1) / kRowsPerBlock;
  int n_chunk = 64;
  while (n_chunk > 8 && static_cast<long>(units) * ((p.N + n_chunk - 1) / n_chunk) < 4L * threads) n_chunk /= 2;
  std::vector<Job> jobs;
  for (int e = 0; e < p.E; ++e)
    for (int i0 = start[e]; i0 < start[e + 1]; i0 += kRowsPerBlock)
      for (int n0 = 0; n0 < p.N; n0 += n_chunk)
        jobs.push_back({e, i0, std::min(start[e + 1], i0 + kRowsPerBlock), n0, std::min(p.N, n0 + n_chunk)});

  const size_t w_stride = static_cast<size_t>(p.N) * K * p.bits / 8;
  const size_t s_elem = p.scale_type == ScaleType::f32 ? 4 : 2;
  const size_t s_stride = static_cast<size_t>(p.N) * G * s_elem;
  pool.run(static_cast<int>(jobs.size()), [&](int j) {
    const Job& job = jobs[j];
    PackedMatrix m;
    m.packed = p.w + job.expert * w_stride;
    m.scales = static_cast<const uint8_t*>(p.scales) + job.expert * s_stride;
    m.biases = static_cast<const uint8_t*>(p.biases) + job.expert * s_stride;
    m.scale_type = p.scale_type;
    m.bits = p.bits;
    m.group = p.group;
    m.N = p.N;
    m.K = K;
    kernel.run(QmmBlock{&m, &xr, act_rows.data() + job.i0, out_rows.data() + job.i0, job.i1 - job.i0, job.n0, job.n1,
                    p.out, p.N});
  });
}

class QuantizedMatmul : public mx::UnaryPrimitive {
 public:
  QuantizedMatmul(mx::Stream s, std::shared_ptr<CpuKernels> kernels, int bits, int group, int k)
      : mx::UnaryPrimitive(s), kernels_(std::move(kernels)), bits_(bits), group_(group), k_(k) {}

  void eval_cpu(const std::vector<mx::array>& in, mx::array& out) override {
    const mx::array& x = in[0];
    const mx::array& w = in[1];
    for (const mx::array& a : in)
      if (!a.flags().row_contiguous)
        throw std::invalid_argument("k2 quantized_matmul: inputs must be row-contiguous");
    out.set_data(mx::allocator::malloc(out.nbytes()));
    Problem p;
    p.kernels = kernels_;
    p.x = x.data<void>();
    p.x_type = x.dtype();
    p.w = w.data<uint8_t>();
    p.scales = in[2].data<void>();
    p.biases = in[3].data<void>();
    p.scale_type = *scale_type(in[2].dtype());
    p.indices = in.size() > 4 ? in[4].data<uint32_t>() : nullptr;
    p.K = x.shape(-1);
    p.T = static_cast<int>(x.size() / p.K);
    p.k = k_;
    p.E = w.ndim() == 3 ? w.shape(0) : 1;
    p.N = w.shape(-2);
    p.bits = bits_;
    p.group = group_;
    p.out = out.data<float>();
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (const mx::array& a : in) enc.set_input_array(a);
    enc.set_output_array(out);
    enc.dispatch([p] { run(p); });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("k2 quantized_matmul runs on CPU streams only (GPU streams use MLX's kernels)");
  }

  const char* name() const override { return "K2QuantizedMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const QuantizedMatmul*>(&other);
    return o && o->kernels_ == kernels_ && o->bits_ == bits_ && o->group_ == group_ && o->k_ == k_;
  }

 private:
  std::shared_ptr<CpuKernels> kernels_;
  int bits_, group_, k_;
};

}  // namespace

bool handles(const mx::array& x, const mx::array& scales, const std::optional<mx::array>& biases, int bits, int group,
             const std::string& mode, const mx::Stream& stream) {
  return stream.device == mx::Device::cpu && mode == "affine" && biases.has_value() && is_float(x.dtype()) &&
         scale_type(scales.dtype()).has_value() && biases->dtype() == scales.dtype() && kernel_supports(bits, group);
}

mx::array quantized_matmul(const std::shared_ptr<CpuKernels>& kernels, const mx::array& x, const mx::array& w,
                           const mx::array& scales, const mx::array& biases, int bits, int group,
                           const std::optional<mx::array>& indices, const mx::Stream& stream) {
  const int K = x.shape(-1);
  const int expected_w = indices ? 3 : 2;
  if (static_cast<int>(w.ndim()) != expected_w || scales.shape() != biases.shape() || scales.ndim() != w.ndim() ||
      static_cast<long>(w.shape(-1)) * 32 != static_cast<long>(K) * bits || scales.shape(-1) * group != K ||
      scales.shape(-2) != w.shape(-2) || (indices && scales.shape(0) != w.shape(0)))
    throw std::invalid_argument(fmt::format(
        "k2 quantized_matmul: x with {} features does not fit weight {}D [.., {}, {}] at {} bits, scales [.., {}, {}] "
        "group {}", K, w.ndim(), w.shape(-2), w.shape(-1), bits, scales.shape(-2), scales.shape(-1), group));
  if (!kernels) throw std::invalid_argument("k2 quantized_matmul: no CpuKernels given");
  std::vector<mx::array> inputs{mx::contiguous(x, false, stream), mx::contiguous(w, false, stream),
                                mx::contiguous(scales, false, stream), mx::contiguous(biases, false, stream)};
  mx::Shape shape = x.shape();
  int k = 1;
  if (indices) {
    if (x.ndim() != 2 || indices->ndim() != 2 || indices->shape(0) != x.shape(0))
      throw std::invalid_argument("k2 quantized_matmul: with indices, x must be [T, K] and indices [T, k]");
    k = indices->shape(1);
    inputs.push_back(mx::contiguous(mx::astype(*indices, mx::uint32, stream), false, stream));
    shape = {x.shape(0), k, w.shape(-2)};
  } else {
    shape.back() = w.shape(-2);
  }
  return mx::array(shape, mx::float32, std::make_shared<QuantizedMatmul>(stream, kernels, bits, group, k),
                   std::move(inputs));
}

}  // namespace k2::kernels
