#!/usr/bin/env bash
# Checks the SIMD quantized-matmul kernels against the scalar reference without MLX: tests/kernels_cross/
# neon_vs_scalar.cpp cross-compiled for arm64 (static) and run under qemu-aarch64, and the same program built
# natively with the AVX2 kernel. Usage: scripts/check_neon.sh [neon|avx2|all]  (default: all)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-all}"
case "$mode" in neon|avx2|all) ;; *) echo "usage: $0 [neon|avx2|all]" >&2; exit 2 ;; esac
out="${K2_CHECK_NEON_DIR:-$here/build/kernels_cross}"
mkdir -p "$out"
src="$here/src"
harness="$here/tests/kernels_cross/neon_vs_scalar.cpp"
flags=(-O2 -std=c++20 -Wall -Wextra -I"$src")
status=0

run_neon() {
  local cxx="${AARCH64_CXX:-aarch64-linux-gnu-g++}" qemu="${QEMU_AARCH64:-}"
  if ! command -v "$cxx" >/dev/null; then
    echo "check_neon: SKIPPED the NEON check: $cxx is not installed (Debian/Ubuntu: apt-get install -y g++-aarch64-linux-gnu qemu-user)"
    return 0
  fi
  if [[ -z "$qemu" ]]; then
    for q in qemu-aarch64 qemu-aarch64-static; do command -v "$q" >/dev/null && { qemu="$q"; break; }; done
  fi
  if [[ -z "$qemu" && "$(uname -m)" != aarch64 && "$(uname -m)" != arm64 ]]; then
    echo "check_neon: SKIPPED the NEON check: no qemu-aarch64 to run arm64 code (apt-get install -y qemu-user)"
    return 0
  fi
  echo "== NEON kernel vs scalar (arm64: $cxx -static${qemu:+, run under $qemu}) =="
  "$cxx" "${flags[@]}" -static "$harness" "$src/kernels/qmm_scalar.cpp" "$src/kernels/qmm_neon.cpp" \
    -o "$out/neon_vs_scalar.arm64"
  # cortex-a53: a baseline ARMv8.0-A core, so nothing newer than Advanced SIMD is available to the kernel.
  if [[ -n "$qemu" ]]; then
    "$qemu" -cpu cortex-a53 "$out/neon_vs_scalar.arm64" || status=1
  else
    "$out/neon_vs_scalar.arm64" || status=1
  fi
}

run_avx2() {
  if [[ "$(uname -m)" != x86_64 ]]; then
    echo "check_neon: SKIPPED the AVX2 check: not an x86-64 machine"
    return 0
  fi
  echo "== AVX2 kernel vs scalar (native) =="
  local cxx="${CXX:-g++}"
  "$cxx" "${flags[@]}" -mavx2 -mfma -mf16c -c "$src/kernels/qmm_avx2.cpp" -o "$out/qmm_avx2.o"
  "$cxx" "${flags[@]}" "$harness" "$src/kernels/qmm_scalar.cpp" "$out/qmm_avx2.o" -o "$out/avx2_vs_scalar"
  "$out/avx2_vs_scalar" || status=1  # the program itself says when the CPU lacks AVX2
}

[[ "$mode" == avx2 ]] || run_neon
[[ "$mode" == neon ]] || run_avx2
exit "$status"
