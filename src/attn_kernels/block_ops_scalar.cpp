// Plain C++ block operations: the reference the SIMD versions are tested against, and the path for CPUs
// without a SIMD version.
#include <algorithm>
#include <cmath>

#include "attn_kernels/block_ops.h"

namespace k2::attn_kernels {

namespace {

void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc, bool acc,
          bool a_trans) {
  for (int i = 0; i < M; ++i) {
    float* c = C + static_cast<long>(i) * ldc;
    if (!acc)
      for (int j = 0; j < N; ++j) c[j] = 0.0f;
    for (int k = 0; k < K; ++k) {
      const float a = a_trans ? A[static_cast<long>(k) * lda + i] : A[static_cast<long>(i) * lda + k];
      const float* b = B + static_cast<long>(k) * ldb;
      for (int j = 0; j < N; ++j) c[j] += a * b[j];
    }
  }
}

void softmax_update(float* s, int n, int cols, float* m, float* l, float* corr) {
  for (int c = 0; c < cols; ++c) {
    float mx = m[c];
    for (int j = 0; j < n; ++j) mx = std::max(mx, s[static_cast<long>(j) * cols + c]);
    corr[c] = std::exp(m[c] - mx);
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) {
      float& x = s[static_cast<long>(j) * cols + c];
      x = std::exp(x - mx);
      sum += x;
    }
    l[c] = l[c] * corr[c] + sum;
    m[c] = mx;
  }
}

}  // namespace

const BlockOps& scalar_block_ops() {
  static const BlockOps ops{&gemm, &softmax_update};
  return ops;
}

}  // namespace k2::attn_kernels
