// The inner operations of the causal attention kernel (internal to attn_kernels/): a small row-major GEMM
// on cache-sized blocks and the row max / exp-and-sum of the online softmax, one implementation per
// instruction set, chosen at run time (scalar = the reference, any CPU).
#pragma once

namespace k2::attn_kernels {

struct BlockOps {
  // C[M, N] = (accumulate ? C : 0) + A[M, K] · B[K, N]; row-major with leading dimensions lda/ldb/ldc, except
  // that with a_transposed A is given as Aᵀ [K, M] (element (i, k) at A[k·lda + i]).
  void (*gemm)(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
               bool accumulate, bool a_transposed);
  // Online-softmax step over the key rows of a score block s [n, cols] (row-major, one column per query;
  // masked entries hold -inf), for every column c: m' = max(m[c], max_j s[j, c]); corr[c] = exp(m[c] - m');
  // s[j, c] = exp(s[j, c] - m'); l[c] = l[c]·corr[c] + Σ_j s[j, c]; m[c] = m'. exp(-inf) is 0.
  void (*softmax_update)(float* s, int n, int cols, float* m, float* l, float* corr);
};

const BlockOps& scalar_block_ops();
#if defined(__x86_64__) || defined(_M_X64)
const BlockOps& avx2_block_ops();  // call only where the CPU has AVX2 and FMA
#endif

}  // namespace k2::attn_kernels
