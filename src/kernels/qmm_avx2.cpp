// The x86-64 AVX2 kernel (this file alone is compiled with -mavx2 -mfma -mf16c; it runs only after
// best_simd_level() said the CPU has them). Weights are widened to int16 lanes and multiplied with the
// int16 activations by vpmaddwd, 16 products per instruction, summed exactly in int32 per group; the
// group sum is then scaled in float. Several weight rows (decode) or several activation rows (prefill,
// batches) share each load, and software prefetch keeps enough cache lines in flight to stream from DRAM.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/qmm_kernel.h"
#include "kernels/qmm_tiling.h"

namespace k2::kernels {
namespace {

// Unpack<BITS> turns kChunk packed values into kVecs vectors of 16 int16 lanes, in the order the
// activation buffer uses (activation_position).
template <int BITS>
struct Unpack {
  // Any width up to 6: 16 values span 2·BITS bytes. Both 128-bit lanes get the same 16 bytes; pshufb puts
  // the two bytes holding value i into lane word i, a multiply by 2^(8-shift) and a shift by 8 move the
  // value to bit 0, and a mask keeps BITS bits.
  static constexpr int kChunk = 16, kVecs = 1;
  static constexpr bool kReadsPastChunk = true;  // loads 16 bytes where 2·BITS are used
  __m256i shuffle, multiply, mask;
  Unpack() {
    alignas(32) int8_t idx[32];
    alignas(32) int16_t mul[16];
    for (int i = 0; i < 16; ++i) {
      const int bit = BITS * i;
      idx[2 * i] = static_cast<int8_t>(bit / 8);
      idx[2 * i + 1] = static_cast<int8_t>(bit / 8 + 1);
      mul[i] = static_cast<int16_t>(1 << (8 - bit % 8));
    }
    shuffle = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    multiply = _mm256_load_si256(reinterpret_cast<const __m256i*>(mul));
    mask = _mm256_set1_epi16((1 << BITS) - 1);
  }
  static size_t byte_offset(int k) { return static_cast<size_t>(k) * BITS / 8; }
  void operator()(const uint8_t* p, __m256i* v) const {
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    b = _mm256_shuffle_epi8(b, shuffle);
    b = _mm256_srli_epi16(_mm256_mullo_epi16(b, multiply), 8);
    v[0] = _mm256_and_si256(b, mask);
  }
};

template <>
struct Unpack<4> {
  // 16 bytes = 32 values: low nibbles are the even values, high nibbles the odd ones.
  static constexpr int kChunk = 32, kVecs = 2;
  static constexpr bool kReadsPastChunk = false;
  __m256i mask = _mm256_set1_epi16(0x0f);
  static size_t byte_offset(int k) { return static_cast<size_t>(k) / 2; }
  void operator()(const uint8_t* p, __m256i* v) const {
    const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    v[0] = _mm256_and_si256(b, mask);
    v[1] = _mm256_srli_epi16(b, 4);
  }
};

template <>
struct Unpack<8> {
  static constexpr int kChunk = 16, kVecs = 1;
  static constexpr bool kReadsPastChunk = false;
  static size_t byte_offset(int k) { return static_cast<size_t>(k); }
  void operator()(const uint8_t* p, __m256i* v) const {
    v[0] = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

inline __m256 load8_scales(const void* p, ScaleType t, size_t i) {
  switch (t) {
    case ScaleType::f32: return _mm256_loadu_ps(static_cast<const float*>(p) + i);
    case ScaleType::bf16: {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case ScaleType::f16:
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  }
  return _mm256_setzero_ps();
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Σ_g a[g]·b[g] with a stored as ScaleType (a row of biases) and b float (activation group sums).
inline float dot_scales(const void* a, ScaleType t, size_t a0, const float* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int g = 0;
  for (; g + 8 <= n; g += 8) acc = _mm256_fmadd_ps(load8_scales(a, t, a0 + g), _mm256_loadu_ps(b + g), acc);
  float s = hsum(acc);
  for (; g < n; ++g) s += load_scale(a, t, a0 + g) * b[g];
  return s;
}

// Distance of the software prefetch ahead of the current position in each weight row, in bytes: enough
// lines in flight to cover DRAM latency with the few rows one tile streams.
constexpr size_t kPrefetchBytes = 1024;

// RW weight rows × RM activation rows. sd is scratch for RW·RM·G combined scales.
template <int BITS, int RW, int RM>
void tile(const PackedMatrix& w, const QuantizedRows& x, const Unpack<BITS>& unpack, int n,
          const uint8_t* const* rows, const int32_t* act, float* const* out, float* sd) {
  using U = Unpack<BITS>;
  const int G = w.groups(), group = w.group, K = w.K;
  const int16_t* xq[RM];
  for (int m = 0; m < RM; ++m) xq[m] = x.q + static_cast<size_t>(act[m]) * K;
  // sd[(r·RM + m)·G + g] = s[n + r, g] · d[act m, g]
  for (int r = 0; r < RW; ++r) {
    const size_t s0 = static_cast<size_t>(n + r) * G;
    int g = 0;
    for (; g + 8 <= G; g += 8) {
      const __m256 s = load8_scales(w.scales, w.scale_type, s0 + g);
      for (int m = 0; m < RM; ++m)
        _mm256_storeu_ps(sd + (r * RM + m) * G + g,
                         _mm256_mul_ps(s, _mm256_loadu_ps(x.d + static_cast<size_t>(act[m]) * G + g)));
    }
    for (; g < G; ++g)
      for (int m = 0; m < RM; ++m)
        sd[(r * RM + m) * G + g] = load_scale(w.scales, w.scale_type, s0 + g) * x.d[static_cast<size_t>(act[m]) * G + g];
  }
  __m256 accf[RW][RM];
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m) accf[r][m] = _mm256_setzero_ps();
  for (int g = 0; g < G; ++g) {
    __m256i acc[RW][RM];
    for (int r = 0; r < RW; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(rows[r] + U::byte_offset(g * group) + kPrefetchBytes), _MM_HINT_T0);
      for (int m = 0; m < RM; ++m) acc[r][m] = _mm256_setzero_si256();
    }
    for (int k = g * group; k < (g + 1) * group; k += U::kChunk) {
      for (int r = 0; r < RW; ++r) {
        __m256i v[U::kVecs];
        unpack(rows[r] + U::byte_offset(k), v);
        for (int m = 0; m < RM; ++m)
          for (int j = 0; j < U::kVecs; ++j) {
            const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[m] + k + 16 * j));
            acc[r][m] = _mm256_add_epi32(acc[r][m], _mm256_madd_epi16(v[j], xv));
          }
      }
    }
    for (int r = 0; r < RW; ++r)
      for (int m = 0; m < RM; ++m)
        accf[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][m]), _mm256_set1_ps(sd[(r * RM + m) * G + g]),
                                     accf[r][m]);
  }
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m)
      out[m][n + r] = hsum(accf[r][m]) + dot_scales(w.biases, w.scale_type, static_cast<size_t>(n + r) * G,
                                                    x.sum + static_cast<size_t>(act[m]) * G, G);
}

template <int BITS>
struct BlockRunner {
  const QmmBlock& b;
  const PackedMatrix& w;
  Unpack<BITS> unpack;
  std::vector<float> sd;
  // The matrix's last rows, copied with padding, for unpackers that load 16 bytes where fewer are used: a load
  // near the end of any of the last ceil(16 / row_bytes) rows could otherwise run past the buffer.
  std::vector<uint8_t> tail;
  int tail_first = 0;

  explicit BlockRunner(const QmmBlock& block) : b(block), w(*block.w), sd(4 * static_cast<size_t>(block.w->groups())) {}

  const uint8_t* row(int n) {
    const size_t rb = w.row_bytes();
    const uint8_t* p = w.packed + static_cast<size_t>(n) * rb;
    const int tail_rows = static_cast<int>(std::min<size_t>(w.N, (16 + rb - 1) / rb));
    if (!Unpack<BITS>::kReadsPastChunk || n < w.N - tail_rows) return p;
    if (tail.empty()) {
      tail_first = w.N - tail_rows;
      tail.assign(tail_rows * rb + 16, 0);
      std::memcpy(tail.data(), w.packed + static_cast<size_t>(tail_first) * rb, tail_rows * rb);
    }
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

void qmm_block_avx2(const QmmBlock& block) { run_for_bits<BlockRunner>(block); }

}  // namespace k2::kernels
