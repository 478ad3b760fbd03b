// The inner kernels of our quantized matmul (internal to kernels/): one MLX-affine matrix as stored
// (LSB-first bit stream of `bits`-wide values per row, one scale and bias per `group` values), activation
// rows quantized to int16 per group, and the per-ISA functions that compute a block of output rows.
//
// Math (MLX affine): w = s·q + b per group, so  Σ_i x_i w_i = Σ_g [ s_g · Σ_{i∈g} x_i q_i + b_g · Σ_{i∈g} x_i ].
// x is quantized per group to int16 (x ≈ d_g·xq, |error| ≤ d_g/2 with d_g = max|x|/32767), which makes
// Σ x_i q_i an exact int32 sum; Σ x_i stays the float sum of the original x. The relative error of a dot
// product is ~1e-5 of the group's largest activation: below bf16 rounding and well inside fp32 parity
// tolerances (int8 activations, as ggml uses, would cost ~1e-2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace k2::kernels {

enum class ScaleType { f32, bf16, f16 };

inline float bf16_to_float(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
float f16_to_float(uint16_t v);

inline float load_scale(const void* p, ScaleType t, size_t i) {
  switch (t) {
    case ScaleType::f32: return static_cast<const float*>(p)[i];
    case ScaleType::bf16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case ScaleType::f16: return f16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
  return 0.0f;
}

// One [N, K] matrix (one expert) in MLX's affine layout.
struct PackedMatrix {
  const uint8_t* packed = nullptr;  // [N, K·bits/8] bytes
  const void* scales = nullptr;     // [N, K/group]
  const void* biases = nullptr;     // [N, K/group]
  ScaleType scale_type = ScaleType::f32;
  int bits = 4, group = 64, N = 0, K = 0;
  size_t row_bytes() const { return static_cast<size_t>(K) * bits / 8; }
  int groups() const { return K / group; }
};

// How a row's quantized activations are ordered: each SIMD kernel reads them in the order in which its
// weight unpacking produces values, so that it needs no shuffle per multiply.
enum class ActivationLayout {
  natural,    // element i at i
  pairs32,    // (NEON, 4-bit) each 32-element chunk holds its even elements, then its odd ones: the low and
              // high nibbles of its 16 packed bytes
  nibbles64,  // (AVX2, 4-bit, K a multiple of 64) in each 64-element chunk, element 4i + s sits at 16s + i:
              // nibble s of the chunk's 16-bit word i
};

inline int activation_position(ActivationLayout layout, int i) {
  switch (layout) {
    case ActivationLayout::natural: return i;
    case ActivationLayout::pairs32: {
      const int chunk = i & ~31, j = i & 31;
      return chunk + (j & 1) * 16 + (j >> 1);
    }
    case ActivationLayout::nibbles64: {
      const int chunk = i & ~63, j = i & 63;
      return chunk + (j & 3) * 16 + (j >> 2);
    }
  }
  return i;
}

// Activation rows [rows, K] quantized per group, in `layout` order: q int16, d (dequantization step) and
// sum (float sum of the original values).
struct QuantizedRows {
  const int16_t* q = nullptr;  // [rows, K]
  const float* d = nullptr;    // [rows, K/group]
  const float* sum = nullptr;  // [rows, K/group]
  int K = 0, groups = 0;
  ActivationLayout layout = ActivationLayout::natural;
};

// Quantizes one row x [K] (float) into `layout` order.
void quantize_row(const float* x, int K, int group, ActivationLayout layout, int16_t* q, float* d, float* sum);

// A block of work: output[out_rows[i]·out_stride + n] = Σ_k act[act_rows[i]]·W[n] for n in [n0, n1) and
// i in [0, n_rows).
struct QmmBlock {
  const PackedMatrix* w;
  const QuantizedRows* x;
  const int32_t* act_rows;
  const int32_t* out_rows;
  int n_rows;
  int n0, n1;
  float* out;
  int64_t out_stride;
};

using QmmKernelFn = void (*)(const QmmBlock& block);

// Each kernel with the activation layout it reads for a matrix of `bits` and K columns.
void qmm_block_scalar(const QmmBlock& block);  // the reference: plain C++, any CPU, any layout
#if defined(__x86_64__) || defined(_M_X64)
void qmm_block_avx2(const QmmBlock& block);    // compiled with -mavx2 -mfma -mf16c
ActivationLayout avx2_activation_layout(int bits, int K);
#endif
#if defined(__aarch64__)
void qmm_block_neon(const QmmBlock& block);
ActivationLayout neon_activation_layout(int bits, int K);
#endif

// True when the kernels handle this format (MLX affine with biases, bits 2..8 except 7, groups 32/64/128).
bool kernel_supports(int bits, int group);

}  // namespace k2::kernels
