// Standalone check (no MLX) of the SIMD quantized-matmul kernel of this ISA (NEON on arm64, AVX2 on x86-64)
// against qmm_block_scalar, and of qmm_block_scalar against a double-precision dequantized reference, on
// random matrices in MLX's affine layout. Built and run by scripts/check_neon.sh (natively or under qemu).
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/qmm_kernel.h"

namespace kk = k2::kernels;

namespace {

// kExactGroupSums: the kernel sums each group exactly in int32 before its conversion to float, as the
// scalar kernel does, so the two differ only in the order of the float additions over groups: then the
// tolerance is 1e-5 of Σ_g (|s·d·dot_g| + |b·sum_g|). The AVX2 kernel converts its 8 int32 lanes to float
// and scales them before the horizontal sum, which rounds partial sums that may cancel; it gets 1e-5 of
// Σ_g (|s·d|·Σ_i |xq_i·q_i| + |b·sum_g|) (any order of the float products), and the outputs beyond the
// tight bound are counted and reported.
#if defined(__aarch64__)
constexpr const char* kSimdName = "neon";
constexpr bool kExactGroupSums = true;
void simd_kernel(const kk::QmmBlock& b) { kk::qmm_block_neon(b); }
kk::ActivationLayout simd_layout(int bits, int K) { return kk::neon_activation_layout(bits, K); }
bool simd_available() { return true; }
#elif defined(__x86_64__)
constexpr const char* kSimdName = "avx2";
constexpr bool kExactGroupSums = false;
void simd_kernel(const kk::QmmBlock& b) { kk::qmm_block_avx2(b); }
kk::ActivationLayout simd_layout(int bits, int K) { return kk::avx2_activation_layout(bits, K); }
bool simd_available() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
#error "neon_vs_scalar: no SIMD kernel for this architecture"
#endif

// `bytes` of memory that end exactly where an inaccessible page begins, so that any read past the end of
// the buffer faults instead of passing silently.
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t bytes) : bytes_(bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    map_bytes_ = (bytes + page - 1) / page * page + page;
    void* m = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      std::perror("mmap");
      std::exit(3);
    }
    map_ = static_cast<uint8_t*>(m);
    if (mprotect(map_ + map_bytes_ - page, page, PROT_NONE) != 0) {
      std::perror("mprotect");
      std::exit(3);
    }
    data_ = map_ + map_bytes_ - page - bytes;
  }
  ~GuardedBuffer() { munmap(map_, map_bytes_); }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  template <class T>
  T* as() { return reinterpret_cast<T*>(data_); }

 private:
  size_t bytes_, map_bytes_ = 0;
  uint8_t* map_ = nullptr;
  uint8_t* data_ = nullptr;
};

// A read past a guarded buffer raises SIGSEGV; the handler jumps back to the kernel call, which then counts
// as a failed case, so that one over-read does not hide the results of every later case.
sigjmp_buf g_fault_jump;
volatile sig_atomic_t g_fault_armed = 0;

void on_fault(int sig) {
  if (!g_fault_armed) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_fault_armed = 0;
  siglongjmp(g_fault_jump, 1);
}

// Runs one kernel call; false when it read outside its buffers. (The jump skips the kernel's destructors:
// a leak of its scratch, acceptable in a test.)
bool call_guarded(void (*kernel)(const kk::QmmBlock&), const kk::QmmBlock& b) {
  if (sigsetjmp(g_fault_jump, 1) != 0) return false;
  g_fault_armed = 1;
  kernel(b);
  g_fault_armed = 0;
  return true;
}

// Our own decoders (not the library's): the reference values of the stored scales.
float decode_f16(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  const double v = exp == 0 ? std::ldexp(mant, -24) : std::ldexp(1024 + mant, exp - 25);
  return static_cast<float>(sign ? -v : v);
}
float decode_bf16(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 7) & 255, mant = h & 127;
  const double v = exp == 0 ? std::ldexp(mant, -133) : std::ldexp(128 + mant, exp - 134);
  return static_cast<float>(sign ? -v : v);
}

// Random stored scale (or bias) in type t, and its value. Magnitudes 2^-10..2 with some zeros and, for
// f16, some subnormals.
float random_scale(std::mt19937& rng, kk::ScaleType t, void* dst, size_t i) {
  std::uniform_int_distribution<int> pick(0, 99), bit(0, 1);
  const int p = pick(rng);
  const int sign = bit(rng);
  switch (t) {
    case kk::ScaleType::f32: {
      float v = p < 3 ? 0.0f : std::ldexp(std::uniform_real_distribution<float>(1.0f, 2.0f)(rng),
                                          std::uniform_int_distribution<int>(-10, 0)(rng));
      if (sign) v = -v;
      static_cast<float*>(dst)[i] = v;
      return v;
    }
    case kk::ScaleType::bf16: {
      const int exp = p < 3 ? 0 : std::uniform_int_distribution<int>(117, 127)(rng);
      const int mant = p < 3 ? 0 : std::uniform_int_distribution<int>(0, 127)(rng);
      const uint16_t h = static_cast<uint16_t>((sign << 15) | (exp << 7) | mant);
      static_cast<uint16_t*>(dst)[i] = h;
      return decode_bf16(h);
    }
    case kk::ScaleType::f16: {
      const int exp = p < 3 ? 0 : std::uniform_int_distribution<int>(5, 15)(rng);  // exp 0: zero/subnormal
      const int mant = p < 2 ? 0 : std::uniform_int_distribution<int>(0, 1023)(rng);
      const uint16_t h = static_cast<uint16_t>((sign << 15) | (exp << 10) | mant);
      static_cast<uint16_t*>(dst)[i] = h;
      return decode_f16(h);
    }
  }
  return 0.0f;
}

struct Case {
  int bits, group, N, K, rows;
  kk::ScaleType st;
};

const char* scale_name(kk::ScaleType t) {
  return t == kk::ScaleType::f32 ? "f32" : t == kk::ScaleType::bf16 ? "bf16" : "f16";
}

int g_beyond_tight = 0;  // outputs within the kernel's tolerance but beyond the exact-group-sum one

// Runs one case; returns the number of mismatching outputs (printing the first few), -1 for a read past a
// buffer.
int run_case(const Case& c, std::mt19937& rng) {
  const int G = c.K / c.group;
  const size_t row_bytes = static_cast<size_t>(c.K) * c.bits / 8;
  const size_t s_elem = c.st == kk::ScaleType::f32 ? 4 : 2;

  // Weights: values 0..2^bits-1, packed LSB-first per row (value j occupies bits j·bits .. j·bits+bits-1).
  std::vector<int> qv(static_cast<size_t>(c.N) * c.K);
  std::uniform_int_distribution<int> val(0, (1 << c.bits) - 1);
  for (int& v : qv) v = val(rng);
  GuardedBuffer packed(static_cast<size_t>(c.N) * row_bytes);
  uint8_t* pk = packed.as<uint8_t>();
  std::fill(pk, pk + c.N * row_bytes, 0);
  for (int n = 0; n < c.N; ++n)
    for (int j = 0; j < c.K; ++j)
      for (int b = 0; b < c.bits; ++b)
        if ((qv[static_cast<size_t>(n) * c.K + j] >> b) & 1) {
          const size_t bit = static_cast<size_t>(j) * c.bits + b;
          pk[n * row_bytes + bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
        }
  GuardedBuffer scales(static_cast<size_t>(c.N) * G * s_elem), biases(static_cast<size_t>(c.N) * G * s_elem);
  std::vector<float> sv(static_cast<size_t>(c.N) * G), bv(sv.size());
  for (size_t i = 0; i < sv.size(); ++i) {
    sv[i] = random_scale(rng, c.st, scales.as<void>(), i);
    bv[i] = random_scale(rng, c.st, biases.as<void>(), i);
  }

  // Activations: a pool of rows (more than the block uses, picked in a shuffled order), quantized by the
  // library's quantize_row; some groups are all zeros, some have an outlier.
  const int pool = c.rows + 3;
  std::vector<float> xv(static_cast<size_t>(pool) * c.K);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  for (int r = 0; r < pool; ++r)
    for (int g = 0; g < G; ++g) {
      const int kind = pick(rng);
      for (int i = 0; i < c.group; ++i) {
        float v = kind < 5 ? 0.0f : normal(rng);
        if (kind >= 95 && i == 7) v *= 100.0f;
        xv[static_cast<size_t>(r) * c.K + g * c.group + i] = v;
      }
    }
  const kk::ActivationLayout layout = simd_layout(c.bits, c.K);
  GuardedBuffer q(static_cast<size_t>(pool) * c.K * sizeof(int16_t));
  GuardedBuffer d(static_cast<size_t>(pool) * G * sizeof(float)), sum(static_cast<size_t>(pool) * G * sizeof(float));
  for (int r = 0; r < pool; ++r)
    kk::quantize_row(xv.data() + static_cast<size_t>(r) * c.K, c.K, c.group, layout,
                     q.as<int16_t>() + static_cast<size_t>(r) * c.K, d.as<float>() + r * G, sum.as<float>() + r * G);

  kk::PackedMatrix w;
  w.packed = pk;
  w.scales = scales.as<void>();
  w.biases = biases.as<void>();
  w.scale_type = c.st;
  w.bits = c.bits;
  w.group = c.group;
  w.N = c.N;
  w.K = c.K;
  const kk::QuantizedRows xr{q.as<int16_t>(), d.as<float>(), sum.as<float>(), c.K, G, layout};

  std::vector<int32_t> act(pool), outr(c.rows);
  for (int i = 0; i < pool; ++i) act[i] = i;
  std::shuffle(act.begin(), act.end(), rng);
  for (int i = 0; i < c.rows; ++i) outr[i] = c.rows - 1 - i;
  const int64_t stride = c.N + 5;  // outputs outside [n0, n1) must stay untouched
  constexpr float kSentinel = -12345.0f;
  std::vector<float> out_ref(c.rows * stride, kSentinel), out_simd(c.rows * stride, kSentinel);

  // The whole [0, N) (which includes the last row) and a sub-range starting mid-matrix.
  const int n_split = c.N / 3;
  for (const auto& [n0, n1] : {std::pair{0, c.N}, std::pair{n_split, c.N - (c.N > 3 ? 1 : 0)}}) {
    std::fill(out_ref.begin(), out_ref.end(), kSentinel);
    std::fill(out_simd.begin(), out_simd.end(), kSentinel);
    if (!call_guarded(&kk::qmm_block_scalar, {&w, &xr, act.data(), outr.data(), c.rows, n0, n1, out_ref.data(), stride})) {
      std::printf("  scalar: read past the end of a buffer (SIGSEGV) in [%d,%d)\n", n0, n1);
      return -1;
    }
    if (!call_guarded(&simd_kernel, {&w, &xr, act.data(), outr.data(), c.rows, n0, n1, out_simd.data(), stride})) {
      std::printf("  %s: read past the end of a buffer (SIGSEGV) in [%d,%d)\n", kSimdName, n0, n1);
      return -1;
    }
    int bad = 0;
    for (int i = 0; i < c.rows; ++i) {
      const int a = act[i];
      const int16_t* xq = q.as<int16_t>() + static_cast<size_t>(a) * c.K;
      for (int n = 0; n < stride; ++n) {
        const float ref = out_ref[outr[i] * stride + n], got = out_simd[outr[i] * stride + n];
        if (n < n0 || n >= n1) {
          if (ref != kSentinel || got != kSentinel) {
            if (bad++ < 3) std::printf("  wrote outside [%d,%d): row %d n %d\n", n0, n1, i, n);
          }
          continue;
        }
        // Σ|terms| of the scalar's float sum, and an independent double reference Σ (s·q + b)·x over the
        // original x, whose distance from the kernel is bounded by the int16 activation rounding.
        double terms = 0.0, lane_terms = 0.0, exact = 0.0, quant_err = 0.0, bias_abs = 0.0;
        for (int g = 0; g < G; ++g) {
          const size_t sg = static_cast<size_t>(n) * G + g;
          const double dg = d.as<float>()[a * G + g];
          long dot = 0, dot_abs = 0, qabs = 0;
          double xabs = 0.0;
          for (int j = g * c.group; j < (g + 1) * c.group; ++j) {
            const int wq = qv[static_cast<size_t>(n) * c.K + j];
            dot += static_cast<long>(wq) * xq[kk::activation_position(layout, j)];
            dot_abs += std::labs(static_cast<long>(wq) * xq[kk::activation_position(layout, j)]);
            qabs += wq;
            xabs += std::fabs(xv[static_cast<size_t>(a) * c.K + j]);
            exact += (static_cast<double>(sv[sg]) * wq + bv[sg]) * xv[static_cast<size_t>(a) * c.K + j];
          }
          const double bias_term = std::fabs(bv[sg] * static_cast<double>(sum.as<float>()[a * G + g]));
          terms += std::fabs(sv[sg] * dg * dot) + bias_term;
          lane_terms += std::fabs(sv[sg] * dg) * dot_abs + bias_term;
          // |x - d·xq| ≤ d/2 up to the float rounding of x/d; the float sum of x errs by ≲ group·2^-24·Σ|x|.
          quant_err += std::fabs(sv[sg]) * dg * 0.51 * qabs;
          bias_abs += std::fabs(bv[sg]) * xabs;
        }
        const double tol_tight = 1e-5 * terms + 1e-30;
        const double tol_simd = kExactGroupSums ? tol_tight : 1e-5 * lane_terms + 1e-30;
        const double tol_ref = quant_err + 1e-5 * (terms + bias_abs) + 1e-30;
        const bool ok_simd = std::fabs(static_cast<double>(got) - ref) <= tol_simd;
        const bool ok_ref = std::fabs(static_cast<double>(ref) - exact) <= tol_ref;
        if (ok_simd && std::fabs(static_cast<double>(got) - ref) > tol_tight) ++g_beyond_tight;
        if (!ok_simd || !ok_ref) {
          if (bad++ < 3)
            std::printf("  [%d,%d) row %d (act %d) n %d: %s %.9g scalar %.9g double %.9g (tol %.3g / %.3g)\n", n0,
                        n1, i, a, n, kSimdName, got, ref, exact, tol_simd, tol_ref);
        }
      }
    }
    if (bad) return bad;
  }
  return 0;
}

}  // namespace

int main() {
  if (!simd_available()) {
    std::printf("neon_vs_scalar: this CPU lacks %s; nothing to check\n", kSimdName);
    return 0;
  }
  struct sigaction sa {};
  sa.sa_handler = on_fault;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  std::mt19937 rng(20261201);
  int passed = 0, failed = 0;
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int group : {32, 64, 128})
      for (int N : {1, 3, 13, 37})
        for (int K : {group, 3 * group, 18 * group})  // 18 groups cross the AVX2 kernel's 512-value K blocks
          for (int rows : {1, 2, 3, 5, 17})
            for (kk::ScaleType st : {kk::ScaleType::f32, kk::ScaleType::bf16, kk::ScaleType::f16}) {
              if (K == 18 * group && (N == 1 || N == 37)) continue;  // long rows: two row counts suffice
              const Case c{bits, group, N, K, rows, st};
              const int bad = run_case(c, rng);
              if (bad) {
                ++failed;
                std::printf("FAIL %s bits %d group %d N %d K %d rows %d scales %s: ", kSimdName, bits, group, N, K,
                            rows, scale_name(st));
                if (bad < 0)
                  std::printf("read past the end of a buffer\n");
                else
                  std::printf("%d outputs wrong\n", bad);
              } else {
                ++passed;
              }
            }
  if (g_beyond_tight)
    std::printf("note: %d %s outputs differ from scalar by more than 1e-5 of the group-level terms (lane-wise "
                "float conversion; within 1e-5 of the product-level terms)\n", g_beyond_tight, kSimdName);
  std::printf("%s vs scalar: %d passed, %d failed\n", kSimdName, passed, failed);
  return failed ? 1 : 0;
}
