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

// Activation rows [rows, K] quantized per group in the element order the kernels expect (see
// activation_position): q int16, d (dequantization step) and sum (float sum of the original values).
struct QuantizedRows {
  const int16_t* q = nullptr;  // [rows, K]
  const float* d = nullptr;    // [rows, K/group]
  const float* sum = nullptr;  // [rows, K/group]
  int K = 0, groups = 0;
};

// Where element i of a row is stored in the quantized activation buffer. For 4-bit weights each 32-value
// chunk holds its even elements first and then its odd ones, matching the low and high nibbles of the
// 16 packed bytes (so the kernels need no shuffle); every other width keeps the natural order.
inline int activation_position(int bits, int i) {
  if (bits != 4) return i;
  const int chunk = i & ~31, j = i & 31;
  return chunk + (j & 1) * 16 + (j >> 1);
}

// Quantizes one row x [K] (float) for weights of `bits` with `group`-wide groups.
void quantize_row(const float* x, int K, int group, int bits, int16_t* q, float* d, float* sum);

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

void qmm_block_scalar(const QmmBlock& block);  // the reference: plain C++, any CPU
#if defined(__x86_64__) || defined(_M_X64)
void qmm_block_avx2(const QmmBlock& block);    // compiled with -mavx2 -mfma -mf16c
#endif
#if defined(__aarch64__)
void qmm_block_neon(const QmmBlock& block);
#endif

// True when the kernels handle this format (MLX affine with biases, bits 2..8 except 7, groups 32/64/128).
bool kernel_supports(int bits, int group);

}  // namespace k2::kernels
