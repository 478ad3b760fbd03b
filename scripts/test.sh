#!/usr/bin/env bash
# Runs every test: sets up and builds (scripts/setup.sh, idempotent), then the GoogleTest unit tests
# (ctest), a clang + libc++ compile of every translation unit (scripts/check_clang.sh, bounded to 7.5 min),
# the libFuzzer targets under ASan + UBSan for 11 s each (scripts/check_fuzz.sh, bounded to 8 min),
# the SIMD kernels against the scalar reference kernel (scripts/check_neon.sh: NEON under qemu-aarch64, AVX2
# natively), the Python parity / equivalence suite (pytest against mlx-lm on tiny checkpoints), and last
# k2mlx and the unit tests built with clang under ASan + UBSan, run with a smoke run of the server and CLI
# (scripts/check_sanitizers.sh, bounded to 40 min: its first build takes ~15 min on 2 quiet cores).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
echo "== unit tests (ctest) =="
ctest --test-dir "$here/build" --output-on-failure -j 2
echo "== clang + libc++ compile of every translation unit =="
timeout 450 "$here/scripts/check_clang.sh" "$here/build"
echo "== libFuzzer targets (clang, ASan + UBSan) =="
timeout 480 "$here/scripts/check_fuzz.sh" 11
echo "== SIMD quantized-matmul kernels vs the scalar reference (NEON under qemu, AVX2) =="
timeout 300 "$here/scripts/check_neon.sh" all
echo "== parity and equivalence tests (pytest) =="
cd "$here"
"$here/.deps/venv/bin/python" -m pytest -q tests/python "$@"
echo "== unit tests and a server / CLI smoke run under ASan + UBSan (clang) =="
timeout 2400 "$here/scripts/check_sanitizers.sh"
