// The arm64 Advanced SIMD kernel (baseline ARMv8-A, no dot-product extension): weights widened to int16,
// vmlal_s16 into int32 lanes, lanes reduced in int32 so that each group sum is exact before it is scaled in
// float; tiles of several weight rows (decode) or activation rows (prefill) share each load, as in AVX2.
#include <arm_neon.h>

#include <algorithm>
#include <vector>

#include "kernels/qmm_kernel.h"
#include "kernels/qmm_tiling.h"

namespace k2::kernels {
namespace {

// Unpack<BITS> turns kChunk packed values into kVecs vectors of 8 int16 lanes, in the order the activation
// buffer uses (neon_activation_layout).
template <int BITS>
struct Unpack {
  // Any width up to 6: 16 values span 2·BITS bytes. vqtbl1q_u8 puts the two bytes holding value i into
  // lane word i (little-endian: first byte low), a per-lane right shift (vshlq_u16 by -(bit % 8)) moves the
  // value to bit 0, and a mask keeps BITS bits. BITS ≤ 6 keeps every value inside its two bytes.
  static constexpr int kChunk = 16, kVecs = 2;
  static constexpr bool kReadsPastChunk = true;  // loads 16 bytes where 2·BITS are used
  uint8x16_t index[2];
  int16x8_t shift[2];
  uint16x8_t mask = vdupq_n_u16((1u << BITS) - 1);
  Unpack() {
    for (int h = 0; h < 2; ++h) {
      uint8_t idx[16];
      int16_t sh[8];
      for (int i = 0; i < 8; ++i) {
        const int bit = BITS * (8 * h + i);
        idx[2 * i] = static_cast<uint8_t>(bit / 8);
        idx[2 * i + 1] = static_cast<uint8_t>(bit / 8 + 1);
        sh[i] = static_cast<int16_t>(-(bit % 8));
      }
      index[h] = vld1q_u8(idx);
      shift[h] = vld1q_s16(sh);
    }
  }
  static size_t byte_offset(int k) { return static_cast<size_t>(k) * BITS / 8; }
  void operator()(const uint8_t* p, int16x8_t* v) const {
    const uint8x16_t b = vld1q_u8(p);
    for (int h = 0; h < 2; ++h) {
      const uint16x8_t pair = vreinterpretq_u16_u8(vqtbl1q_u8(b, index[h]));
      v[h] = vreinterpretq_s16_u16(vandq_u16(vshlq_u16(pair, shift[h]), mask));
    }
  }
};

template <>
struct Unpack<4> {
  // 16 bytes = 32 values: low nibbles are the even values (activation positions 0..15 of the chunk), high
  // nibbles the odd ones (16..31).
  static constexpr int kChunk = 32, kVecs = 4;
  static constexpr bool kReadsPastChunk = false;
  static size_t byte_offset(int k) { return static_cast<size_t>(k) / 2; }
  void operator()(const uint8_t* p, int16x8_t* v) const {
    const uint8x16_t b = vld1q_u8(p);
    const uint8x16_t lo = vandq_u8(b, vdupq_n_u8(0x0f));
    const uint8x16_t hi = vshrq_n_u8(b, 4);
    v[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(lo)));
    v[1] = vreinterpretq_s16_u16(vmovl_high_u8(lo));
    v[2] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(hi)));
    v[3] = vreinterpretq_s16_u16(vmovl_high_u8(hi));
  }
};

template <>
struct Unpack<8> {
  static constexpr int kChunk = 16, kVecs = 2;
  static constexpr bool kReadsPastChunk = false;
  static size_t byte_offset(int k) { return static_cast<size_t>(k); }
  void operator()(const uint8_t* p, int16x8_t* v) const {
    const uint8x16_t b = vld1q_u8(p);
    v[0] = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(b)));
    v[1] = vreinterpretq_s16_u16(vmovl_high_u8(b));
  }
};

inline float32x4_t load4_scales(const void* p, ScaleType t, size_t i) {
  switch (t) {
    case ScaleType::f32: return vld1q_f32(static_cast<const float*>(p) + i);
    case ScaleType::bf16:
      return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(static_cast<const uint16_t*>(p) + i), 16));
    case ScaleType::f16:
      return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(static_cast<const uint16_t*>(p) + i)));
  }
  return vdupq_n_f32(0.0f);
}

// Σ_g a[g]·b[g] with a stored as ScaleType (a row of biases) and b float (activation group sums).
inline float dot_scales(const void* a, ScaleType t, size_t a0, const float* b, int n) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  int g = 0;
  for (; g + 4 <= n; g += 4) acc = vfmaq_f32(acc, load4_scales(a, t, a0 + g), vld1q_f32(b + g));
  float s = vaddvq_f32(acc);
  for (; g < n; ++g) s += load_scale(a, t, a0 + g) * b[g];
  return s;
}

// Distance of the software prefetch ahead of the current position in each weight row, in bytes (a
// prefetch never faults, so it may point past the matrix).
constexpr size_t kPrefetchBytes = 1024;

// Scratch stride of one (row, activation) pair's combined scales: G rounded up to whole vectors of 4.
inline int padded_groups(int G) { return (G + 3) & ~3; }

// The int32 sums of one group for RW weight rows × RM activation rows, left in 4 lanes per pair. Two
// accumulators per pair so that consecutive multiply-adds do not wait on each other; their lane-wise sum
// stays exact (|Σ| ≤ group·255·32767 < 2^31).
template <int BITS, int RW, int RM>
inline void group_sums(const Unpack<BITS>& unpack, const uint8_t* const* rows, const int16_t* const* xq, int k0,
                       int group, int32x4_t (*lanes)[RM]) {
  using U = Unpack<BITS>;
  int32x4_t acc[RW][RM][2];
  for (int r = 0; r < RW; ++r) {
    __builtin_prefetch(rows[r] + U::byte_offset(k0) + kPrefetchBytes);
    for (int m = 0; m < RM; ++m) acc[r][m][0] = acc[r][m][1] = vdupq_n_s32(0);
  }
  for (int k = k0; k < k0 + group; k += U::kChunk) {
    for (int r = 0; r < RW; ++r) {
      int16x8_t v[U::kVecs];
      unpack(rows[r] + U::byte_offset(k), v);
      for (int m = 0; m < RM; ++m)
        for (int j = 0; j < U::kVecs; ++j) {
          const int16x8_t xv = vld1q_s16(xq[m] + k + 8 * j);
          int32x4_t& a = acc[r][m][j & 1];
          a = vmlal_s16(a, vget_low_s16(v[j]), vget_low_s16(xv));
          a = vmlal_high_s16(a, v[j], xv);
        }
    }
  }
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m) lanes[r][m] = vaddq_s32(acc[r][m][0], acc[r][m][1]);
}

// RW weight rows × RM activation rows. sd is scratch for RW·RM·padded_groups(G) combined scales.
template <int BITS, int RW, int RM>
void tile(const PackedMatrix& w, const QuantizedRows& x, const Unpack<BITS>& unpack, int n,
          const uint8_t* const* rows, const int32_t* act, float* const* out, float* sd) {
  const int G = w.groups(), Gp = padded_groups(G), group = w.group, K = w.K;
  const int16_t* xq[RM];
  for (int m = 0; m < RM; ++m) xq[m] = x.q + static_cast<size_t>(act[m]) * K;
  // sd[(r·RM + m)·Gp + g] = s[n + r, g] · d[act m, g], zero for g ≥ G.
  for (int r = 0; r < RW; ++r) {
    const size_t s0 = static_cast<size_t>(n + r) * G;
    int g = 0;
    for (; g + 4 <= G; g += 4) {
      const float32x4_t s = load4_scales(w.scales, w.scale_type, s0 + g);
      for (int m = 0; m < RM; ++m)
        vst1q_f32(sd + (r * RM + m) * Gp + g, vmulq_f32(s, vld1q_f32(x.d + static_cast<size_t>(act[m]) * G + g)));
    }
    for (; g < Gp; ++g)
      for (int m = 0; m < RM; ++m)
        sd[(r * RM + m) * Gp + g] =
            g < G ? load_scale(w.scales, w.scale_type, s0 + g) * x.d[static_cast<size_t>(act[m]) * G + g] : 0.0f;
  }
  // Four groups at a time: their lanes are added in int32 (vpaddq), so each group's sum is exact before
  // its one conversion to float, as in the scalar kernel; then one multiply-add by 4 combined scales.
  float32x4_t accf[RW][RM];
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m) accf[r][m] = vdupq_n_f32(0.0f);
  for (int g0 = 0; g0 < G; g0 += 4) {
    int32x4_t lanes[4][RW][RM];
    for (int j = 0; j < 4; ++j) {
      if (g0 + j < G) {
        group_sums<BITS, RW, RM>(unpack, rows, xq, (g0 + j) * group, group, lanes[j]);
      } else {
        for (int r = 0; r < RW; ++r)
          for (int m = 0; m < RM; ++m) lanes[j][r][m] = vdupq_n_s32(0);
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int m = 0; m < RM; ++m) {
        const int32x4_t sums = vpaddq_s32(vpaddq_s32(lanes[0][r][m], lanes[1][r][m]),
                                          vpaddq_s32(lanes[2][r][m], lanes[3][r][m]));
        accf[r][m] = vfmaq_f32(accf[r][m], vcvtq_f32_s32(sums), vld1q_f32(sd + (r * RM + m) * Gp + g0));
      }
  }
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m)
      out[m][n + r] = vaddvq_f32(accf[r][m]) + dot_scales(w.biases, w.scale_type, static_cast<size_t>(n + r) * G,
                                                          x.sum + static_cast<size_t>(act[m]) * G, G);
}

template <int BITS>
struct BlockRunner {
  const QmmBlock& b;
  const PackedMatrix& w;
  Unpack<BITS> unpack;
  std::vector<float> sd;
  // A copy of the matrix's last rows followed by zeros, for unpackers that read up to 16 bytes past a
  // chunk: every row whose over-read could pass the end of the matrix is read from here. With rows shorter
  // than 16 bytes (2-bit, K = 32) that is more than the last row.
  std::vector<uint8_t> tail;
  int tail_first = 0;

  explicit BlockRunner(const QmmBlock& block) : b(block), w(*block.w), sd(4 * static_cast<size_t>(padded_groups(block.w->groups()))) {
    if (!Unpack<BITS>::kReadsPastChunk) return;
    const size_t rb = w.row_bytes();
    const int tail_rows = std::min<int>(w.N, static_cast<int>((16 + rb - 1) / rb));
    tail_first = w.N - tail_rows;
    if (block.n1 <= tail_first) return;
    tail.assign(tail_rows * rb + 16, 0);
    std::memcpy(tail.data(), w.packed + static_cast<size_t>(tail_first) * rb, tail_rows * rb);
  }

  const uint8_t* row(int n) const {
    const size_t rb = w.row_bytes();
    if (!Unpack<BITS>::kReadsPastChunk || n < tail_first) return w.packed + static_cast<size_t>(n) * rb;
    return tail.data() + static_cast<size_t>(n - tail_first) * rb;
  }

  template <int RW, int RM>
  void run_tile(int n, int i) {
    const uint8_t* rows[RW];
    for (int r = 0; r < RW; ++r) rows[r] = row(n + r);
    float* out[RM];
    for (int m = 0; m < RM; ++m) out[m] = b.out + b.out_rows[i + m] * b.out_stride;
    tile<BITS, RW, RM>(w, *b.x, unpack, n, rows, b.act_rows + i, out, sd.data());
  }

  void run() { run_tiles(b, *this); }
};

}  // namespace

void qmm_block_neon(const QmmBlock& block) { run_for_bits<BlockRunner>(block); }

ActivationLayout neon_activation_layout(int bits, int) {
  return bits == 4 ? ActivationLayout::pairs32 : ActivationLayout::natural;
}

}  // namespace k2::kernels
