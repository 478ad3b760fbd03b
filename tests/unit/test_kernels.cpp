// Our CPU quantized matmul against MLX's own quantized_matmul / gather_qmm (the reference we did not
// write), for every width and group size, odd shapes, 1-17 activation rows, 1-4 threads, f32/bf16/f16
// activations and scales, and the scalar reference kernel against the SIMD one. Plus the thread pool.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "kernels/quantized_matmul.h"
#include "kernels/thread_pool.h"
#include "mlx/mlx.h"
#include "model/mlx_compat.h"

namespace mx = mlx::core;
using k2::kernels::CpuKernels;
using k2::kernels::SimdLevel;

namespace {

struct Quantized {
  mx::array w, scales, biases;
};

Quantized make_weights(mx::Shape shape, int bits, int group, mx::Dtype scale_dtype, uint64_t seed) {
  mx::array dense = mx::random::normal(shape, mx::float32, 0.0f, 0.05f, mx::random::key(seed));
  auto parts = mx::quantize(dense, group, bits);
  return {parts[0], mx::astype(parts[1], scale_dtype), mx::astype(parts[2], scale_dtype)};
}

// The exact float32 weights: scales and biases are widened first, since MLX dequantizes in the scales' dtype.
mx::array dense_of(const Quantized& q, int group, int bits) {
  return mx::dequantize(q.w, mx::astype(q.scales, mx::float32), mx::astype(q.biases, mx::float32), group, bits,
                        "affine", std::nullopt, mx::float32);
}

// The scale part s·q of each weight (w = s·q + b without the bias), in float32.
mx::array scaled_codes(const mx::array& w, const mx::array& scales, int group, int bits) {
  mx::array s32 = mx::astype(scales, mx::float32);
  return mx::dequantize(w, s32, mx::zeros_like(s32), group, bits, "affine", std::nullopt, mx::float32);
}

// Worst-case error of the int16 activation quantization. The kernels compute Σ s·q_i·x_i from the
// quantized x (each x_i moves by at most max|x_g|/65534) and Σ b·x_i from the exact x, so a dot product
// moves by at most Σ_i |s·q_i|·max|x_g(i)|/65534 (|s·q_i| exceeds |w_i| where the bias cancels it);
// plus float rounding of the sums, whose terms are at most (|s·q_i| + |b|)·|x_i|.
mx::array error_bound(const mx::array& x, const mx::array& w_dense, const mx::array& w_codes, int group) {
  const int K = x.shape(-1);
  mx::Shape grouped = x.shape();
  grouped.back() = K / group;
  grouped.push_back(group);
  mx::array gmax = mx::max(mx::abs(mx::reshape(x, grouped)), -1, true);                     // [..., G, 1]
  mx::array amax = mx::reshape(mx::broadcast_to(gmax, grouped), x.shape());                  // [..., K]
  mx::array quant = mx::matmul(amax, mx::transpose(mx::abs(w_codes))) / 65534.0f;
  mx::array terms = mx::abs(w_codes) + mx::abs(w_dense - w_codes);
  mx::array rounding = mx::matmul(mx::abs(x), mx::transpose(terms)) * 1e-5f;
  return quant * 1.01f + rounding + 1e-6f;
}

void expect_within(const mx::array& got, const mx::array& want, const mx::array& bound, const std::string& what) {
  mx::array excess = mx::max(mx::subtract(mx::abs(mx::subtract(got, want)), bound));
  mx::eval(excess);
  EXPECT_LE(excess.item<float>(), 0.0f) << what << ": max |got - want| - bound";
}

}  // namespace

TEST(Kernels, QuantizedMatmulMatchesMlxForEveryFormat) {
  auto simd = std::make_shared<CpuKernels>(2);
  auto scalar = std::make_shared<CpuKernels>(1, SimdLevel::scalar);
  const mx::Stream s = mx::default_stream(mx::Device::cpu);
  uint64_t seed = 1;
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int group : {32, 64, 128}) {
      // K = one group, and several; N not a multiple of any tile.
      // 24 groups: 4-bit AVX2 reads 64-value nibble chunks, which for group 32 hold two groups.
      for (auto [N, K] : {std::pair{13, group}, std::pair{37, 3 * group}, std::pair{11, 24 * group}}) {
        Quantized q = make_weights({N, K}, bits, group, mx::bfloat16, seed++);
        mx::array w_dense = dense_of(q, group, bits);
        for (int M : {1, 2, 3, 5, 17}) {
          mx::array x = mx::random::normal({M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(seed++));
          mx::array want = mx::quantized_matmul(x, q.w, q.scales, q.biases, true, group, bits, "affine");
          mx::array bound = error_bound(x, w_dense, scaled_codes(q.w, q.scales, group, bits), group);
          const std::string what = "bits " + std::to_string(bits) + " group " + std::to_string(group) + " N " +
                                   std::to_string(N) + " K " + std::to_string(K) + " M " + std::to_string(M);
          ASSERT_TRUE(k2::kernels::handles(x, q.scales, q.biases, bits, group, "affine", s));
          expect_within(k2::kernels::quantized_matmul(simd, x, q.w, q.scales, q.biases, bits, group, std::nullopt, s),
                        want, bound, what + " simd");
          expect_within(k2::kernels::quantized_matmul(scalar, x, q.w, q.scales, q.biases, bits, group, std::nullopt, s),
                        want, bound, what + " scalar");
        }
      }
    }
}

TEST(Kernels, ActivationAndScaleDtypesAndThreadCounts) {
  const mx::Stream s = mx::default_stream(mx::Device::cpu);
  const int N = 70, K = 256, group = 64, bits = 4;
  for (mx::Dtype scale_dtype : {mx::float32, mx::bfloat16, mx::float16})
    for (mx::Dtype x_dtype : {mx::float32, mx::bfloat16, mx::float16}) {
      Quantized q = make_weights({N, K}, bits, group, scale_dtype, 7);
      mx::array x = mx::astype(mx::random::normal({3, K}, mx::float32, 0.0f, 1.0f, mx::random::key(8)), x_dtype);
      mx::array xf = mx::astype(x, mx::float32);
      mx::array w_dense = dense_of(q, group, bits);
      // The reference runs in float32 on the same (rounded) activations and scales.
      mx::array want = mx::matmul(xf, mx::transpose(w_dense));
      for (int threads : {1, 2, 3, 4}) {
        auto kernels = std::make_shared<CpuKernels>(threads);
        expect_within(k2::kernels::quantized_matmul(kernels, x, q.w, q.scales, q.biases, bits, group, std::nullopt, s),
                      want, error_bound(xf, w_dense, scaled_codes(q.w, q.scales, group, bits), group),
                      "threads " + std::to_string(threads) + " x " + std::to_string(static_cast<int>(x_dtype.val())));
      }
    }
}

TEST(Kernels, ExpertGatherMatchesGatherQmm) {
  auto kernels = std::make_shared<CpuKernels>(2);
  const mx::Stream s = mx::default_stream(mx::Device::cpu);
  const int E = 6, N = 40, K = 128;
  for (int bits : {3, 4, 8})
    for (int T : {1, 5, 33}) {
      const int k = 3;
      Quantized q = make_weights({E, N, K}, bits, 64, mx::bfloat16, 11 + bits);
      mx::array x = mx::random::normal({T, K}, mx::float32, 0.0f, 1.0f, mx::random::key(T));
      mx::array idx = mx::astype(mx::random::randint(0, E, {T, k}, mx::int32, mx::random::key(T + 100)), mx::uint32);
      mx::array want = k2::compat::gather_qmm(mx::reshape(x, {T, 1, 1, K}), q.w, q.scales, q.biases, idx, 64, bits,
                                              "affine", false);  // [T, k, 1, N]
      want = mx::squeeze(want, 2);
      mx::array got = k2::kernels::quantized_matmul(kernels, x, q.w, q.scales, q.biases, bits, 64, idx, s);
      ASSERT_EQ(got.shape(), want.shape());
      mx::array w_dense = dense_of(q, 64, bits);
      mx::array w_codes = scaled_codes(q.w, q.scales, 64, bits);
      // Bound per (t, j) row from that row's expert.
      std::vector<mx::array> rows;
      for (int t = 0; t < T; ++t)
        for (int j = 0; j < k; ++j) {
          mx::array e = mx::slice(idx, {t, j}, {t + 1, j + 1});
          mx::array w_e = mx::reshape(mx::take(w_dense, e, 0), {N, K}), c_e = mx::reshape(mx::take(w_codes, e, 0), {N, K});
          mx::array b = error_bound(mx::slice(x, {t, 0}, {t + 1, K}), w_e, c_e, 64);  // [1, N]
          rows.push_back(mx::reshape(b, {N}));
        }
      mx::array bound = mx::reshape(mx::stack(rows), {T, k, N});
      expect_within(got, want, bound, "gather bits " + std::to_string(bits) + " T " + std::to_string(T));
    }
}

// A row's result must not depend on which other rows share the call (the tile shape, the thread count, the
// tokens routed to the same expert): the engine decodes a sequence alone and in a batch and must produce
// the same tokens. Bitwise equality, so that this can fail on any change of summation order.
TEST(Kernels, RowResultsDoNotDependOnTheBatch) {
  const mx::Stream s = mx::default_stream(mx::Device::cpu);
  auto one_thread = std::make_shared<CpuKernels>(1);
  auto three_threads = std::make_shared<CpuKernels>(3);
  auto bitwise_equal = [](const mx::array& a, const mx::array& b) {
    mx::array ai = mx::view(mx::astype(a, mx::float32), mx::uint32), bi = mx::view(mx::astype(b, mx::float32), mx::uint32);
    mx::array same = mx::all(mx::equal(ai, bi));
    mx::eval(same);
    return same.item<bool>();
  };
  for (auto [bits, group] : {std::pair{3, 64}, std::pair{4, 32}, std::pair{4, 64}, std::pair{8, 128}}) {
    const int N = 29, K = 1536, T = 9;
    const std::string what = "bits " + std::to_string(bits) + " group " + std::to_string(group);
    Quantized q = make_weights({N, K}, bits, group, mx::bfloat16, 50 + bits);
    mx::array x = mx::random::normal({T, K}, mx::float32, 0.0f, 1.0f, mx::random::key(51));
    mx::array batch = k2::kernels::quantized_matmul(three_threads, x, q.w, q.scales, q.biases, bits, group, std::nullopt, s);
    for (int t = 0; t < T; ++t) {
      mx::array row = mx::slice(x, {t, 0}, {t + 1, K});
      mx::array alone = k2::kernels::quantized_matmul(one_thread, row, q.w, q.scales, q.biases, bits, group, std::nullopt, s);
      EXPECT_TRUE(bitwise_equal(alone, mx::slice(batch, {t, 0}, {t + 1, N}))) << what << " row " << t;
    }
    // Experts: token t alone vs among tokens that share its experts.
    const int E = 5, k = 2;
    Quantized qe = make_weights({E, N, K}, bits, group, mx::bfloat16, 60 + bits);
    mx::array idx = mx::astype(mx::random::randint(0, E, {T, k}, mx::int32, mx::random::key(61)), mx::uint32);
    mx::array all = k2::kernels::quantized_matmul(three_threads, x, qe.w, qe.scales, qe.biases, bits, group, idx, s);
    for (int t = 0; t < T; ++t) {
      mx::array alone = k2::kernels::quantized_matmul(one_thread, mx::slice(x, {t, 0}, {t + 1, K}), qe.w, qe.scales,
                                                      qe.biases, bits, group, mx::slice(idx, {t, 0}, {t + 1, k}), s);
      EXPECT_TRUE(bitwise_equal(alone, mx::slice(all, {t, 0, 0}, {t + 1, k, N}))) << what << " expert row " << t;
    }
  }
}

TEST(Kernels, RejectsMismatchedShapes) {
  auto kernels = std::make_shared<CpuKernels>(1);
  const mx::Stream s = mx::default_stream(mx::Device::cpu);
  Quantized q = make_weights({16, 128}, 4, 64, mx::bfloat16, 3);
  mx::array x = mx::ones({1, 64});
  EXPECT_THROW(k2::kernels::quantized_matmul(kernels, x, q.w, q.scales, q.biases, 4, 64, std::nullopt, s),
               std::invalid_argument);
  EXPECT_FALSE(k2::kernels::handles(x, q.scales, q.biases, 4, 64, "mxfp4", s));
  EXPECT_FALSE(k2::kernels::handles(x, q.scales, std::nullopt, 4, 64, "affine", s));
  EXPECT_FALSE(k2::kernels::handles(x, q.scales, q.biases, 7, 64, "affine", s));
}

TEST(ThreadPool, RunsEveryJobOnceAndPropagatesErrors) {
  k2::kernels::ThreadPool pool(3);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::atomic<int>> hits(round + 1);
    pool.run(round + 1, [&](int i) { hits[i].fetch_add(1); });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
  EXPECT_THROW(pool.run(10, [](int i) { if (i == 7) throw std::runtime_error("job 7"); }), std::runtime_error);
  std::atomic<int> after{0};
  pool.run(5, [&](int) { after.fetch_add(1); });
  EXPECT_EQ(after.load(), 5);
}
