// The x86-64 AVX2 kernel (this file alone is compiled with -mavx2 -mfma -mf16c; it runs only after
// best_simd_level() said the CPU has them). Weights are widened to int16 lanes and multiplied with the
// int16 activations by vpmaddwd, 16 products per instruction, summed exactly in int32 per group; the
// group sum is then scaled in float.
//
// Tiles (qmm_tiling.h): one activation row against 4 (2 for 4-bit) weight rows, two against two, more:
// each weight row against 4 activation rows. Every output is accumulated in the same order whatever the
// tile (float lanes over the groups, then one horizontal sum, then the bias term), so a row's result does
// not depend on how many other rows share the call: a sequence decodes the same tokens alone and in a
// batch. Rows stream from memory with a software prefetch one tile ahead.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/qmm_kernel.h"
#include "kernels/qmm_tiling.h"

namespace k2::kernels {
namespace {

// Unpack<BITS, NIBBLES>: load() reads the packed bytes of kValues values, vec(raw, v) gives their v-th
// vector of 16 int16 lanes, in the order of the activation layout (natural unless NIBBLES).
template <int BITS, bool NIBBLES>
struct Unpack {
  // Any width up to 6, natural order: 16 values span 2·BITS bytes. Both 128-bit lanes get the same 16
  // bytes; pshufb puts the two bytes holding value i into word i (the byte before it when the value starts
  // a byte, so that every shift is 1..8), an unsigned high multiply by 2^(16 - shift) shifts each word
  // right by its own amount, and a mask keeps BITS bits.
  static constexpr int kValues = 16, kVecs = 1;
  static constexpr bool kReadsPast = true;  // loads 16 bytes where 2·BITS are used
  __m256i shuffle, multiply, mask;
  Unpack() {
    // pshufb indexes within each 128-bit lane; both lanes hold the same 16 bytes, so word i's indices are
    // the same whichever lane it is in.
    alignas(32) int8_t idx[32];
    alignas(32) uint16_t mul[16];
    for (int i = 0; i < 16; ++i) {
      const int bit = BITS * i, byte = bit / 8, shift = bit % 8;
      const int lo = shift == 0 ? byte - 1 : byte;  // -1: pshufb writes a zero byte
      idx[2 * i] = static_cast<int8_t>(lo < 0 ? 0x80 : lo);
      idx[2 * i + 1] = static_cast<int8_t>(lo + 1);
      mul[i] = static_cast<uint16_t>(1u << (16 - (shift == 0 ? 8 : shift)));
    }
    shuffle = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    multiply = _mm256_load_si256(reinterpret_cast<const __m256i*>(mul));
    mask = _mm256_set1_epi16((1 << BITS) - 1);
  }
  static size_t byte_offset(int k) { return static_cast<size_t>(k) * BITS / 8; }
  __m256i load(const uint8_t* p) const {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  __m256i vec(__m256i raw, int) const {
    return _mm256_and_si256(_mm256_mulhi_epu16(_mm256_shuffle_epi8(raw, shuffle), multiply), mask);
  }
};

template <>
struct Unpack<4, true> {
  // 32 bytes = 64 values = 16 words of 4 nibbles; vector s holds nibble s of every word.
  static constexpr int kValues = 64, kVecs = 4;
  static constexpr bool kReadsPast = false;
  __m256i mask = _mm256_set1_epi16(0x0f);
  static size_t byte_offset(int k) { return static_cast<size_t>(k) / 2; }
  __m256i load(const uint8_t* p) const { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  __m256i vec(__m256i raw, int s) const {
    if (s == 0) return _mm256_and_si256(raw, mask);
    if (s == 3) return _mm256_srli_epi16(raw, 12);
    return _mm256_and_si256(_mm256_srli_epi16(raw, 4 * s), mask);
  }
};

template <>
struct Unpack<8, false> {
  static constexpr int kValues = 16, kVecs = 1;
  static constexpr bool kReadsPast = false;
  static size_t byte_offset(int k) { return static_cast<size_t>(k); }
  __m256i load(const uint8_t* p) const {
    return _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  __m256i vec(__m256i raw, int) const { return raw; }
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

// The matrix being multiplied and its rows: rows near the end are read from a zero-padded copy when the
// unpacker loads past the values it uses (else such a load could run past the buffer).
template <class U>
struct Rows {
  const PackedMatrix& w;
  std::vector<uint8_t> tail;
  int tail_first;
  Rows(const PackedMatrix& m, int n1) : w(m), tail_first(m.N) {
    if (!U::kReadsPast) return;
    const size_t rb = w.row_bytes();
    const int tail_rows = std::min<int>(w.N, static_cast<int>((16 + rb - 1) / rb));
    tail_first = w.N - tail_rows;
    if (n1 <= tail_first) return;
    tail.assign(tail_rows * rb + 16, 0);
    std::memcpy(tail.data(), w.packed + static_cast<size_t>(tail_first) * rb, tail_rows * rb);
  }
  const uint8_t* operator[](int n) const {
    const size_t rb = w.row_bytes();
    if (n < tail_first) return w.packed + static_cast<size_t>(n) * rb;
    return tail.data() + static_cast<size_t>(n - tail_first) * rb;
  }
};

// RW weight rows × RM activation rows: part[r·RM + m] = Σ_k w[n + r, k]·x[act m, k] without the bias
// term. pf[r] is where row r's software prefetch runs, at the same offset as the values being read. sd is
// scratch for RW·RM·G combined scales.
template <class U, int GROUP, int RW, int RM>
void tile(const U& unpack, const PackedMatrix& w, const QuantizedRows& x, int n, const uint8_t* const* rows,
          const uint8_t* const* pf, const int32_t* act, float* part, float* sd) {
  const int G = w.groups(), K = w.K;
  constexpr int group = GROUP;
  // Values per step of the int32 sums: one group, or for 4-bit nibbles with 32-wide groups one 64-value
  // chunk whose low 128-bit lane holds the first group and whose high lane the second. Compile-time
  // sizes let the compiler keep every accumulator in a register.
  constexpr int step = std::max(GROUP, U::kValues);
  constexpr bool two_groups = GROUP < U::kValues;
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
  const __m256i pair_select = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  // Preloading a chunk's activation vectors pays when they fit in registers beside the accumulators.
  constexpr bool kPreload = RM * U::kVecs <= 4;
  __m256 accf[RW][RM];
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m) accf[r][m] = _mm256_setzero_ps();
  {
    for (int ks = 0; ks < K; ks += step) {
      __m256i acc[RW][RM];
      for (int r = 0; r < RW; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(pf[r] + U::byte_offset(ks)), _MM_HINT_T0);
        for (int m = 0; m < RM; ++m) acc[r][m] = _mm256_setzero_si256();
      }
      for (int k = ks; k < ks + step; k += U::kValues) {
        __m256i xv[kPreload ? RM : 1][kPreload ? U::kVecs : 1];
        if constexpr (kPreload)
          for (int m = 0; m < RM; ++m)
            for (int v = 0; v < U::kVecs; ++v)
              xv[m][v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[m] + k + 16 * v));
        for (int r = 0; r < RW; ++r) {
          const __m256i raw = unpack.load(rows[r] + U::byte_offset(k));
          for (int v = 0; v < U::kVecs; ++v) {
            const __m256i wv = unpack.vec(raw, v);
            for (int m = 0; m < RM; ++m) {
              __m256i xm;
              if constexpr (kPreload)
                xm = xv[m][v];
              else
                xm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[m] + k + 16 * v));
              acc[r][m] = _mm256_add_epi32(acc[r][m], _mm256_madd_epi16(wv, xm));
              // With several activation rows, keep these adds in program order: GCC otherwise
              // reassociates them into a tree whose partial products outnumber the registers and spill
              // to the stack (5-20 % slower for 2-32 rows; with one row the tree is faster). Integer
              // sums, so the order does not change the result.
              if constexpr (RM > 1) __asm__("" : "+x"(acc[r][m]));
            }
          }
        }
      }
      const int g = ks / group;
      for (int r = 0; r < RW; ++r)
        for (int m = 0; m < RM; ++m) {
          const float* s = sd + (r * RM + m) * G + g;
          __m256 scale;
          if constexpr (two_groups)
            scale = _mm256_permutevar8x32_ps(
                _mm256_castps128_ps256(_mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(s)))), pair_select);
          else
            scale = _mm256_broadcast_ss(s);
          accf[r][m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][m]), scale, accf[r][m]);
        }
    }
  }
  for (int r = 0; r < RW; ++r)
    for (int m = 0; m < RM; ++m) part[r * RM + m] = hsum(accf[r][m]);
}

template <class U, int GROUP>
struct BlockRunner {
  const QmmBlock& b;
  const PackedMatrix& w;
  const QuantizedRows& x;
  U unpack;
  Rows<U> rows;
  std::vector<float> sd;

  explicit BlockRunner(const QmmBlock& block)
      : b(block), w(*block.w), x(*block.x), rows(*block.w, block.n1), sd(4 * static_cast<size_t>(block.w->groups())) {}

  float bias_term(int n, int i) const {
    return dot_scales(w.biases, w.scale_type, static_cast<size_t>(n) * w.groups(),
                      x.sum + static_cast<size_t>(b.act_rows[i]) * w.groups(), w.groups());
  }

  // RW weight rows from n against activation rows [i, i + RM), prefetching the rows RW further on at the
  // same offset (the next tile's).
  template <int RW, int RM>
  void run_tile(int n, int i) {
    const uint8_t* r[RW];
    const uint8_t* pf[RW];
    for (int j = 0; j < RW; ++j) {
      r[j] = rows[n + j];
      pf[j] = w.packed + static_cast<size_t>(n + j + RW) * w.row_bytes();
    }
    // The next tile's scales and biases are separate streams from memory: start them now too.
    const size_t elem = w.scale_type == ScaleType::f32 ? 4 : 2, sb_row = static_cast<size_t>(w.groups()) * elem;
    const size_t sb0 = static_cast<size_t>(n + RW) * sb_row;
    for (size_t off = 0; off < RW * sb_row; off += 64) {
      _mm_prefetch(static_cast<const char*>(w.scales) + sb0 + off, _MM_HINT_T0);
      _mm_prefetch(static_cast<const char*>(w.biases) + sb0 + off, _MM_HINT_T0);
    }
    float part[RW * RM];
    tile<U, GROUP, RW, RM>(unpack, w, x, n, r, pf, b.act_rows + i, part, sd.data());
    for (int j = 0; j < RW; ++j)
      for (int m = 0; m < RM; ++m)
        b.out[b.out_rows[i + m] * b.out_stride + n + j] = part[j * RM + m] + bias_term(n + j, i + m);
  }

  void run() { run_tiles<U::kVecs == 4 ? 2 : 4>(b, *this); }
};

template <class U>
void run_with(const QmmBlock& block) {
  switch (block.w->group) {
    case 32: return BlockRunner<U, 32>(block).run();
    case 64: return BlockRunner<U, 64>(block).run();
    case 128: return BlockRunner<U, 128>(block).run();
    default: return qmm_block_scalar(block);
  }
}

}  // namespace

ActivationLayout avx2_activation_layout(int bits, int K) {
  return bits == 4 && K % 64 == 0 ? ActivationLayout::nibbles64 : ActivationLayout::natural;
}

void qmm_block_avx2(const QmmBlock& block) {
  switch (block.w->bits) {
    case 2: return run_with<Unpack<2, false>>(block);
    case 3: return run_with<Unpack<3, false>>(block);
    case 4:
      if (block.x->layout == ActivationLayout::nibbles64) return run_with<Unpack<4, true>>(block);
      return run_with<Unpack<4, false>>(block);
    case 5: return run_with<Unpack<5, false>>(block);
    case 6: return run_with<Unpack<6, false>>(block);
    case 8: return run_with<Unpack<8, false>>(block);
    default: return qmm_block_scalar(block);
  }
}

}  // namespace k2::kernels
