// Runtime CPU feature detection and core counting for the kernel dispatch (Linux and macOS).
#include "kernels/cpu_info.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace k2::kernels {

SimdLevel best_simd_level() {
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__GNUC__) || defined(__clang__)
  __builtin_cpu_init();
  // F16C is CPUID leaf 1, ECX bit 29 (asked directly: clang before 15 has no "f16c" in __builtin_cpu_supports).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c) return SimdLevel::avx2;
#endif
  return SimdLevel::scalar;
#elif defined(__aarch64__) || defined(_M_ARM64)
  return SimdLevel::neon;  // Advanced SIMD is mandatory on ARMv8-A
#else
  return SimdLevel::scalar;
#endif
}

std::string simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx2: return "avx2";
    case SimdLevel::neon: return "neon";
    case SimdLevel::scalar: break;
  }
  return "scalar";
}

int physical_cores() {
  int logical = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
#if defined(__APPLE__)
  int n = 0;
  size_t len = sizeof(n);
  if (sysctlbyname("hw.physicalcpu", &n, &len, nullptr, 0) == 0 && n > 0) return n;
  return logical;
#else
  // /proc/cpuinfo pairs "physical id" with "core id"; SMT siblings share the pair.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<int, int>> cores;
  int physical = 0;
  std::string line;
  while (std::getline(in, line)) {
    auto value = [&] { return std::atoi(line.substr(line.find(':') + 1).c_str()); };
    if (line.rfind("physical id", 0) == 0) physical = value();
    if (line.rfind("core id", 0) == 0) cores.insert({physical, value()});
  }
  if (cores.empty()) return logical;
  return std::clamp(static_cast<int>(cores.size()), 1, logical);
#endif
}

}  // namespace k2::kernels
