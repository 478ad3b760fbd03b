#!/usr/bin/env bash
# Builds k2mlx and the GoogleTest unit tests with clang, AddressSanitizer and UndefinedBehaviorSanitizer
# (into build-asan/), runs the unit tests, then a smoke run of the instrumented k2mlx binary: the CLI's
# bad-input and tokenizer tests and the server's hostile-input tests (the pytest files below, pointed at this
# binary through K2MLX_BIN). The soak test is not among them: ASan's quarantine grows RSS by design. Any sanitizer report fails
# the run: reports abort the process, which fails its test.
# MLX itself (the wheel's libmlx.so) is not instrumented, so memory errors inside it are not seen, only ours.
# Leak checking is off: MLX keeps its allocator and thread pools alive until exit on purpose, which
# LeakSanitizer would report.
# The build is a unity build at -O1 -g1 (line tables only), which keeps the first build to ~15 min on 2
# cores; the sanitizers see the same code, and stack traces keep file:line.
# Usage: scripts/check_sanitizers.sh [ctest -R regex]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build-asan"
py="$here/.deps/venv/bin/python"
command -v clang++ >/dev/null || { echo "check_sanitizers: clang++ not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
t0=$(date +%s)
mlx_root="$("$py" -c 'import mlx; print(list(mlx.__path__)[0])')"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
flags="-O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMLX_ROOT="$mlx_root" -DCMAKE_UNITY_BUILD=ON "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build "$build" -j "${K2MLX_JOBS:-2}" --target k2_unit_tests k2mlx
echo "check_sanitizers: built in $(( $(date +%s) - t0 )) s"

export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# TextBpe.LongPieceIsNotQuadratic times the tokenizer against a 5 s bound, which measures the sanitizers'
# overhead rather than our code; the regular (uninstrumented) ctest run keeps it.
timeout 900 ctest --test-dir "$build" --output-on-failure -j 2 -E 'LongPieceIsNotQuadratic' ${1:+-R "$1"}
[ -n "${1:-}" ] && exit 0

echo "== check_sanitizers: smoke run of the instrumented k2mlx =="
cd "$here"
K2MLX_BIN="$build/apps/k2mlx/k2mlx" timeout 900 "$py" -m pytest -q -p no:cacheprovider \
  tests/python/test_cli_inputs.py tests/python/test_cli_text.py \
  tests/python/server/test_http_hardening.py
echo "check_sanitizers: done in $(( $(date +%s) - t0 )) s"
