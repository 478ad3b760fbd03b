// AVX2 + FMA block operations (this file alone is compiled with -mavx2 -mfma): a 6x16 register-tiled GEMM
// and a vectorized exp (Cephes-style: 2^n by the exponent bits times a degree-6 polynomial on
// |r| <= ln2/2, relative error ~2e-7, i.e. fp32 rounding).
#include <immintrin.h>

#include <cmath>

#include "attn_kernels/block_ops.h"

namespace k2::attn_kernels {

namespace {

__m256i tail_mask(int n) {  // lanes [0, n) set, n in [0, 8]
  alignas(32) static const int ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ones + 8 - n));
}

// C[R, 16] (+)= A[R, K] · B[K, 16] (A given transposed when ATrans); `cols` < 16 masks the columns beyond it.
template <int R, bool Masked, bool ATrans>
void tile(int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc, int cols) {
  const __m256i m0 = Masked ? tail_mask(cols < 8 ? cols : 8) : __m256i{};
  const __m256i m1 = Masked ? tail_mask(cols > 8 ? cols - 8 : 0) : __m256i{};
  __m256 c0[R], c1[R];
  for (int r = 0; r < R; ++r) {
    float* row = C + static_cast<long>(r) * ldc;
    if (!acc) {
      c0[r] = _mm256_setzero_ps();
      c1[r] = _mm256_setzero_ps();
    } else if (Masked) {
      c0[r] = _mm256_maskload_ps(row, m0);
      c1[r] = _mm256_maskload_ps(row + 8, m1);
    } else {
      c0[r] = _mm256_loadu_ps(row);
      c1[r] = _mm256_loadu_ps(row + 8);
    }
  }
  for (int k = 0; k < K; ++k) {
    const float* b = B + static_cast<long>(k) * ldb;
    const __m256 b0 = Masked ? _mm256_maskload_ps(b, m0) : _mm256_loadu_ps(b);
    const __m256 b1 = Masked ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(ATrans ? A + static_cast<long>(k) * lda + r : A + static_cast<long>(r) * lda + k);
      c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* row = C + static_cast<long>(r) * ldc;
    if (Masked) {
      _mm256_maskstore_ps(row, m0, c0[r]);
      _mm256_maskstore_ps(row + 8, m1, c1[r]);
    } else {
      _mm256_storeu_ps(row, c0[r]);
      _mm256_storeu_ps(row + 8, c1[r]);
    }
  }
}

template <bool Masked, bool ATrans>
void rows(int R, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc, int cols) {
  switch (R) {
    case 6: return tile<6, Masked, ATrans>(K, A, lda, B, ldb, C, ldc, acc, cols);
    case 5: return tile<5, Masked, ATrans>(K, A, lda, B, ldb, C, ldc, acc, cols);
    case 4: return tile<4, Masked, ATrans>(K, A, lda, B, ldb, C, ldc, acc, cols);
    case 3: return tile<3, Masked, ATrans>(K, A, lda, B, ldb, C, ldc, acc, cols);
    case 2: return tile<2, Masked, ATrans>(K, A, lda, B, ldb, C, ldc, acc, cols);
    default: return tile<1, Masked, ATrans>(K, A, lda, B, ldb, C, ldc, acc, cols);
  }
}

template <bool ATrans>
void gemm_impl(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc) {
  // Column strips outermost: one [K, 16] strip of B stays in L1 while every row tile of A passes over it.
  for (int j = 0; j < N; j += 16) {
    const int cols = N - j < 16 ? N - j : 16;
    for (int i = 0; i < M; i += 6) {
      const int r = M - i < 6 ? M - i : 6;
      const float* a = ATrans ? A + i : A + static_cast<long>(i) * lda;
      float* c = C + static_cast<long>(i) * ldc + j;
      if (cols == 16)
        rows<false, ATrans>(r, K, a, lda, B + j, ldb, c, ldc, acc, cols);
      else
        rows<true, ATrans>(r, K, a, lda, B + j, ldb, c, ldc, acc, cols);
    }
  }
}

void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc,
          bool a_trans) {
  if (a_trans)
    gemm_impl<true>(M, N, K, A, lda, B, ldb, C, ldc, acc);
  else
    gemm_impl<false>(M, N, K, A, lda, B, ldb, C, ldc, acc);
}

// exp(x) for x <= 0 (softmax arguments); inputs below -87.3 (and -inf) give 0.
__m256 exp_nonpositive(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.3365f);
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lo);
  // n = round(x / ln2); r = x - n·ln2 with ln2 split in two for exactness (Cody-Waite).
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(underflow, y);
}

// Eight query columns at a time, the last group masked: every column takes the same vector exp, so a query's
// result does not depend on where it sits in its block (chunked prefill == one-shot, bit for bit).
void softmax_update(float* s, int n, int cols, float* m, float* l, float* corr) {
  for (int c = 0; c < cols; c += 8) {
    const __m256i mask = tail_mask(cols - c < 8 ? cols - c : 8);
    const __m256 m_old = _mm256_maskload_ps(m + c, mask);
    __m256 mx = m_old;
    for (int j = 0; j < n; ++j) mx = _mm256_max_ps(mx, _mm256_maskload_ps(s + static_cast<long>(j) * cols + c, mask));
    const __m256 cr = exp_nonpositive(_mm256_sub_ps(m_old, mx));
    __m256 sum = _mm256_setzero_ps();
    for (int j = 0; j < n; ++j) {
      float* x = s + static_cast<long>(j) * cols + c;
      const __m256 y = exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(x, mask), mx));
      _mm256_maskstore_ps(x, mask, y);
      sum = _mm256_add_ps(sum, y);
    }
    _mm256_maskstore_ps(corr + c, mask, cr);
    _mm256_maskstore_ps(l + c, mask, _mm256_fmadd_ps(_mm256_maskload_ps(l + c, mask), cr, sum));
    _mm256_maskstore_ps(m + c, mask, mx);
  }
}

}  // namespace

const BlockOps& avx2_block_ops() {
  static const BlockOps ops{&gemm, &softmax_update};
  return ops;
}

}  // namespace k2::attn_kernels
