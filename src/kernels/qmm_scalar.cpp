// The reference kernel (plain C++, any CPU) and the activation quantizer shared by every ISA. The SIMD
// kernels compute exactly the same integer group sums; only the order of the float additions differs.
#include <algorithm>
#include <cmath>

#include "kernels/qmm_kernel.h"

namespace k2::kernels {

float f16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ff;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
    return sign ? -f : f;
  }
  uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112u) << 23) | (mant << 13));
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

bool kernel_supports(int bits, int group) {
  const bool bits_ok = bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8;
  return bits_ok && (group == 32 || group == 64 || group == 128);
}

void quantize_row(const float* x, int K, int group, ActivationLayout layout, int16_t* q, float* d, float* sum) {
  for (int g = 0; g < K / group; ++g) {
    const float* xg = x + g * group;
    float amax = 0.0f, s = 0.0f;
    for (int i = 0; i < group; ++i) {
      amax = std::max(amax, std::fabs(xg[i]));
      s += xg[i];
    }
    const float step = amax / 32767.0f;
    const float inv = step > 0.0f ? 1.0f / step : 0.0f;
    for (int i = 0; i < group; ++i) {
      const int k = g * group + i;
      q[activation_position(layout, k)] = static_cast<int16_t>(std::lrintf(std::clamp(xg[i] * inv, -32767.0f, 32767.0f)));
    }
    d[g] = step;
    sum[g] = s;
  }
}

namespace {

// Value j of a row's LSB-first bit stream.
inline int unpack(const uint8_t* row, int bits, int j) {
  const size_t bit = static_cast<size_t>(j) * bits;
  const size_t byte = bit / 8;
  uint32_t window = row[byte];
  if ((bit % 8) + bits > 8) window |= static_cast<uint32_t>(row[byte + 1]) << 8;
  return static_cast<int>((window >> (bit % 8)) & ((1u << bits) - 1));
}

}  // namespace

void qmm_block_scalar(const QmmBlock& b) {
  const PackedMatrix& w = *b.w;
  const QuantizedRows& x = *b.x;
  const int G = w.groups();
  for (int i = 0; i < b.n_rows; ++i) {
    const int16_t* xq = x.q + static_cast<size_t>(b.act_rows[i]) * w.K;
    const float* xd = x.d + static_cast<size_t>(b.act_rows[i]) * G;
    const float* xs = x.sum + static_cast<size_t>(b.act_rows[i]) * G;
    float* out = b.out + b.out_rows[i] * b.out_stride;
    for (int n = b.n0; n < b.n1; ++n) {
      const uint8_t* row = w.packed + static_cast<size_t>(n) * w.row_bytes();
      float acc = 0.0f;
      for (int g = 0; g < G; ++g) {
        int32_t dot = 0;
        for (int j = g * w.group; j < (g + 1) * w.group; ++j)
          dot += unpack(row, w.bits, j) * static_cast<int32_t>(xq[activation_position(x.layout, j)]);
        const size_t sg = static_cast<size_t>(n) * G + g;
        acc += load_scale(w.scales, w.scale_type, sg) * xd[g] * static_cast<float>(dot) +
               load_scale(w.biases, w.scale_type, sg) * xs[g];
      }
      out[n] = acc;
    }
  }
}

}  // namespace k2::kernels
