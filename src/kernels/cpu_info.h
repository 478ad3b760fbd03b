// What this CPU can do, asked once at run time: the SIMD level our kernels may use and the number of
// physical cores (the default thread count). No compile-time assumptions: one binary serves every x86-64
// level and every arm64 machine.
#pragma once

#include <string>

namespace k2::kernels {

enum class SimdLevel {
  scalar,  // plain C++ (the reference kernel; any CPU)
  avx2,    // x86-64 AVX2 + FMA + F16C
  neon,    // arm64 Advanced SIMD (every Apple silicon and ARMv8 server)
};

SimdLevel best_simd_level();
std::string simd_level_name(SimdLevel level);
// Physical cores (not SMT siblings); at least 1.
int physical_cores();

}  // namespace k2::kernels
