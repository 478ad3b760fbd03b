// Side-by-side CPU kernel measurements for bench/bench_cpu.py: this machine's read bandwidth (1 and N
// threads), then k2mlx's quantized matmul against MLX's quantized_matmul / gather_qmm on the same arrays,
// as GB/s of weight bytes streamed from DRAM (every timed call reads a different copy of the weights, so
// nothing is served from the caches). Prints one JSON object per line.
//   k2_kernel_bench bandwidth [--threads N]
//   k2_kernel_bench peak          (x86-64 with AVX2: one core's float FMA and int16 multiply-add rates)
//   k2_kernel_bench matmul --n N --k K --bits B --group G --rows M [--threads T] [--mlx] [--hot]
//   k2_kernel_bench moe --experts E --top K --n N --k K --bits B --group G --tokens T [--threads T] [--mlx]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "kernels/cpu_info.h"
#include "kernels/quantized_matmul.h"
#include "kernels/thread_pool.h"
#include "mlx/mlx.h"
#include "model/mlx_compat.h"

namespace mx = mlx::core;
using Clock = std::chrono::steady_clock;

namespace {

int arg_int(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  return fallback;
}
bool has_flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return true;
  return false;
}
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sum of a 2 GiB buffer of uint64 split across `threads`; best of 5.
void bandwidth(int threads) {
  const size_t n = (size_t(2) << 30) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  k2::kernels::ThreadPool pool(threads);
  double best = 1e9;
  std::vector<uint64_t> sums(threads * 8);
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    pool.run(threads, [&](int j) {
      const size_t lo = n * j / threads, hi = n * (j + 1) / threads;
      uint64_t a = 0, b = 0, c = 0, d = 0;
      for (size_t i = lo; i + 4 <= hi; i += 4) {
        a += buf[i];
        b += buf[i + 1];
        c += buf[i + 2];
        d += buf[i + 3];
      }
      sums[j * 8] = a + b + c + d;
    });
    best = std::min(best, seconds_since(t0));
  }
  std::printf("{\"kind\": \"bandwidth\", \"threads\": %d, \"gbps\": %.2f, \"check\": %llu}\n", threads,
              n * sizeof(uint64_t) / best / 1e9, static_cast<unsigned long long>(sums[0] & 1));
}

#if defined(__x86_64__)
// One core's arithmetic ceiling, by CPU time, in hand-written loops (compilers kept intrinsic versions'
// accumulators in memory): 8 independent 8-lane float FMAs per iteration, and 6 int16 multiply-adds
// (16 products each) each followed by an int32 add, the int16 kernels' inner step.
double per_ns(long ops, std::clock_t c0) {
  return ops / (static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC) / 1e9;
}

void peak() {
  constexpr long n = 100000000;
  long left = n;
  std::clock_t c0 = std::clock();
  __asm__ volatile(
      "vxorps %%ymm0, %%ymm0, %%ymm0\n vxorps %%ymm8, %%ymm8, %%ymm8\n vxorps %%ymm15, %%ymm15, %%ymm15\n"
      "1:\n"
      "vfmadd231ps %%ymm15, %%ymm8, %%ymm0\n vfmadd231ps %%ymm15, %%ymm8, %%ymm1\n"
      "vfmadd231ps %%ymm15, %%ymm8, %%ymm2\n vfmadd231ps %%ymm15, %%ymm8, %%ymm3\n"
      "vfmadd231ps %%ymm15, %%ymm8, %%ymm4\n vfmadd231ps %%ymm15, %%ymm8, %%ymm5\n"
      "vfmadd231ps %%ymm15, %%ymm8, %%ymm6\n vfmadd231ps %%ymm15, %%ymm8, %%ymm7\n"
      "dec %0\n jnz 1b\n"
      : "+r"(left)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm15", "cc");
  const double fma = per_ns(8 * n, c0);
  left = n;
  c0 = std::clock();
  __asm__ volatile(
      "vpxor %%ymm0, %%ymm0, %%ymm0\n vpxor %%ymm8, %%ymm8, %%ymm8\n vpcmpeqw %%ymm15, %%ymm15, %%ymm15\n"
      "1:\n"
      "vpmaddwd %%ymm15, %%ymm8, %%ymm6\n vpaddd %%ymm6, %%ymm0, %%ymm0\n"
      "vpmaddwd %%ymm15, %%ymm9, %%ymm7\n vpaddd %%ymm7, %%ymm1, %%ymm1\n"
      "vpmaddwd %%ymm15, %%ymm10, %%ymm11\n vpaddd %%ymm11, %%ymm2, %%ymm2\n"
      "vpmaddwd %%ymm15, %%ymm12, %%ymm13\n vpaddd %%ymm13, %%ymm3, %%ymm3\n"
      "vpmaddwd %%ymm15, %%ymm8, %%ymm14\n vpaddd %%ymm14, %%ymm4, %%ymm4\n"
      "vpmaddwd %%ymm15, %%ymm9, %%ymm6\n vpaddd %%ymm6, %%ymm5, %%ymm5\n"
      "dec %0\n jnz 1b\n"
      : "+r"(left)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
        "xmm12", "xmm13", "xmm14", "xmm15", "cc");
  const double madd = per_ns(6 * n, c0);
  std::printf("{\"kind\": \"peak\", \"fma_per_ns\": %.3f, \"fma_gmacs\": %.1f, \"madd_add_per_ns\": %.3f, "
              "\"madd_gmacs\": %.1f}\n",
              fma, fma * 8, madd, madd * 16);
}
#endif

struct Copy {
  mx::array w, scales, biases;
};

// Enough distinct copies of random packed weights (speed does not depend on the values) to exceed the
// last-level cache several times over; scales and biases are bf16 as mlx-lm's converter writes them.
std::vector<Copy> make_copies(mx::Shape shape, int bits, int group, size_t min_total_bytes) {
  mx::Shape packed = shape, grouped = shape;
  packed.back() = shape.back() * bits / 32;
  grouped.back() = shape.back() / group;
  auto one = [&](uint64_t seed) {
    Copy c{mx::random::bits(packed, 4, mx::random::key(seed)),
           mx::astype(mx::random::uniform(0.001f, 0.002f, grouped, mx::float32, mx::random::key(seed + 1)), mx::bfloat16),
           mx::astype(mx::random::uniform(-0.02f, -0.01f, grouped, mx::float32, mx::random::key(seed + 2)), mx::bfloat16)};
    mx::eval({c.w, c.scales, c.biases});
    return c;
  };
  std::vector<Copy> out{one(10)};
  const size_t bytes = out[0].w.nbytes() + out[0].scales.nbytes() + out[0].biases.nbytes();
  while (out.size() * bytes < min_total_bytes) out.push_back(one(10 + 3 * out.size()));
  return out;
}

struct Timing {
  double wall = 1e9, cpu = 1e9;  // seconds per call: elapsed, and CPU time of the whole process
};

template <class F>
Timing time_rotating(size_t copies, int reps, F&& call) {
  // Warm-up, then the best of `reps` passes over every copy. The CPU time is what stays comparable when
  // other work shares the machine (it does not count the time this process waits for a core).
  for (size_t i = 0; i < std::min<size_t>(copies, 2); ++i) mx::eval(call(i));
  Timing best;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    const std::clock_t c0 = std::clock();
    for (size_t i = 0; i < copies; ++i) mx::eval(call(i));
    best.cpu = std::min(best.cpu, static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC / copies);
    best.wall = std::min(best.wall, seconds_since(t0) / copies);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: k2_kernel_bench bandwidth|peak|matmul|moe [options]\n");
    return 2;
  }
  const std::string what = argv[1];
  const int threads = arg_int(argc, argv, "--threads", 0);
  const bool with_mlx = has_flag(argc, argv, "--mlx");
  const mx::Stream s = mx::default_stream(mx::Device::cpu);
  if (what == "bandwidth") {
    bandwidth(threads > 0 ? threads : 1);
    return 0;
  }
  if (what == "peak") {
#if defined(__x86_64__)
    if (k2::kernels::best_simd_level() == k2::kernels::SimdLevel::avx2) {
      peak();
      return 0;
    }
#endif
    std::printf("{\"kind\": \"peak\"}\n");  // no measurement for this CPU
    return 0;
  }
  const int N = arg_int(argc, argv, "--n", 2048), K = arg_int(argc, argv, "--k", 7168);
  const int bits = arg_int(argc, argv, "--bits", 4), group = arg_int(argc, argv, "--group", 64);
  auto kernels = std::make_shared<k2::kernels::CpuKernels>(threads);
  const int reps = arg_int(argc, argv, "--reps", 3);
  if (what == "matmul") {
    const int M = arg_int(argc, argv, "--rows", 1);
    // --hot: one copy, so the weights come from the caches (the kernel's compute bound, not DRAM's).
    auto copies = make_copies({N, K}, bits, group, has_flag(argc, argv, "--hot") ? 0 : size_t(1) << 30);
    mx::array x = mx::random::normal({M, K}, mx::float32, 0.0f, 1.0f, mx::random::key(2));
    mx::eval(x);
    const size_t bytes = copies[0].w.nbytes() + copies[0].scales.nbytes() + copies[0].biases.nbytes();
    const Timing t = time_rotating(copies.size(), reps, [&](size_t i) {
      return k2::kernels::quantized_matmul(kernels, x, copies[i].w, copies[i].scales, copies[i].biases, bits, group,
                                           std::nullopt, s);
    });
    const double ours = t.wall;
    double theirs = 0;
    if (with_mlx)
      theirs = time_rotating(copies.size(), 1, [&](size_t i) {
        return mx::quantized_matmul(x, copies[i].w, copies[i].scales, copies[i].biases, true, group, bits, "affine");
      }).wall;
    std::printf("{\"kind\": \"matmul\", \"n\": %d, \"k\": %d, \"bits\": %d, \"group\": %d, \"rows\": %d, "
                "\"threads\": %d, \"weight_bytes\": %zu, \"k2_us\": %.1f, \"k2_cpu_us\": %.1f, \"k2_gbps\": %.2f, "
                "\"mlx_us\": %.1f, \"mlx_gbps\": %.2f}\n",
                N, K, bits, group, M, kernels->threads(), bytes, ours * 1e6, t.cpu * 1e6, bytes / ours / 1e9, theirs * 1e6,
                theirs > 0 ? bytes / theirs / 1e9 : 0.0);
    return 0;
  }
  if (what == "moe") {
    const int E = arg_int(argc, argv, "--experts", 384), top = arg_int(argc, argv, "--top", 8);
    const int T = arg_int(argc, argv, "--tokens", 1);
    auto copies = make_copies({E, N, K}, bits, group, 0);  // one stack: its size already exceeds the caches
    const Copy& c = copies[0];
    mx::array x = mx::random::normal({T, K}, mx::float32, 0.0f, 1.0f, mx::random::key(2));
    const int steps = 24;
    std::vector<mx::array> idx;
    for (int i = 0; i < steps; ++i) {
      // top distinct experts per token, different on every step
      mx::array perm = mx::argsort(mx::random::uniform({T, E}, mx::float32, mx::random::key(100 + i)), -1);
      idx.push_back(mx::astype(mx::slice(perm, {0, 0}, {T, top}), mx::uint32));
    }
    mx::eval(x);
    mx::eval(idx);
    // Unique experts touched per step, for the byte count.
    double unique = 0;
    for (auto& ix : idx) {
      std::vector<char> seen(E, 0);
      mx::array flat = mx::flatten(ix);
      mx::eval(flat);
      const uint32_t* p = flat.data<uint32_t>();
      for (size_t j = 0; j < flat.size(); ++j) seen[p[j]] = 1;
      unique += std::count(seen.begin(), seen.end(), 1);
    }
    unique /= steps;
    const size_t per_expert = (c.w.nbytes() + c.scales.nbytes() + c.biases.nbytes()) / E;
    const double bytes = unique * per_expert;
    const Timing t = time_rotating(steps, reps, [&](size_t i) {
      return k2::kernels::quantized_matmul(kernels, x, c.w, c.scales, c.biases, bits, group, idx[i], s);
    });
    const double ours = t.wall;
    double theirs = 0;
    if (with_mlx)
      theirs = time_rotating(steps, 1, [&](size_t i) {
        return k2::compat::gather_qmm(mx::reshape(x, {T, 1, 1, K}), c.w, c.scales, c.biases, idx[i], group, bits,
                                      "affine", false);
      }).wall;
    std::printf("{\"kind\": \"moe\", \"experts\": %d, \"top\": %d, \"n\": %d, \"k\": %d, \"bits\": %d, \"group\": %d, "
                "\"tokens\": %d, \"threads\": %d, \"unique_experts\": %.1f, \"k2_us\": %.1f, \"k2_cpu_us\": %.1f, "
                "\"k2_gbps\": %.2f, \"mlx_us\": %.1f, \"mlx_gbps\": %.2f}\n",
                E, top, N, K, bits, group, T, kernels->threads(), unique, ours * 1e6, t.cpu * 1e6, bytes / ours / 1e9,
                theirs * 1e6, theirs > 0 ? bytes / theirs / 1e9 : 0.0);
    return 0;
  }
  std::fprintf(stderr, "unknown benchmark '%s'\n", what.c_str());
  return 2;
}
