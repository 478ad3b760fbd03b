#!/usr/bin/env bash
# Builds the GoogleTest unit tests with AddressSanitizer + UndefinedBehaviorSanitizer (into build-asan/) and
# runs them; any report fails the run. MLX itself (the wheel's libmlx.so) is not instrumented, so memory
# errors inside it are not seen, only ours. Leak checking is off: MLX keeps its allocator and thread pools
# alive until exit on purpose, which LeakSanitizer would report.
# Not part of scripts/test.sh: its first build (all of k2mlx instrumented) takes ~20 min on 2 cores. CI runs
# scripts/check_fuzz.sh instead, which builds only the parsers of hostile input under the same sanitizers and
# fuzzes them; run this one by hand after changes to the engine, model or I/O code.
# Usage: scripts/check_sanitizers.sh [ctest -R regex]   (ccache makes reruns short)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build-asan"
mlx_root="$("$here/.deps/venv/bin/python" -c 'import mlx; print(list(mlx.__path__)[0])')"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLX_ROOT="$mlx_root" "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j "${K2MLX_JOBS:-2}" --target k2_unit_tests
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
timeout 600 ctest --test-dir "$build" --output-on-failure -j 2 ${1:+-R "$1"}
