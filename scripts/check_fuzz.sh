#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
# into build-fuzz/ (only those targets and the libraries they link, not the engine) and runs each for a
# bounded time over its seed corpus (fuzz/corpus/<target>/). Any crash, sanitizer report, uncaught exception,
# timeout or memory blow-up fails the run; the input that caused it is kept in build-fuzz/artifacts/.
# MLX (the wheel's libmlx.so, libstdc++) is linked where needed but not instrumented.
# A failing input replays with: build-fuzz/fuzz/fuzz_<target> build-fuzz/artifacts/<target>-crash-...
# Usage: scripts/check_fuzz.sh [SECONDS_PER_TARGET (default 20)] [TARGET...]
#   (needs clang and libclang-rt-14-dev or newer; first build ~3 min on 2 cores, ccache makes reruns short)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build-fuzz"
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_framing openai_request anthropic_messages chat_template jinja_parse
                                     tool_call_parser tokenizer safetensors_header checkpoint_index model_config
                                     id_list)
command -v clang++ >/dev/null || { echo "check_fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }
t0=$(date +%s)
mlx_root="$("$here/.deps/venv/bin/python" -c 'import mlx; print(list(mlx.__path__)[0])')"
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1 -g without NDEBUG: asserts stay on, stack traces stay readable, the build stays short.
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DK2MLX_FUZZ=ON -DK2MLX_BUILD_TESTS=OFF -DMLX_ROOT="$mlx_root" \
  "${launcher[@]}" >/dev/null
cmake --build "$build" -j "${K2MLX_JOBS:-2}" --target "${targets[@]/#/fuzz_}"
echo "check_fuzz: built in $(( $(date +%s) - t0 )) s"

# Leak checking is off: MLX keeps its allocator and thread pools alive until exit on purpose.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$build/artifacts"
failed=()
for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus: the seeds in the repository stay as they are.
  work="$build/corpus/$t"
  mkdir -p "$work"
  log="$build/fuzz_$t.log"
  seeds=("$here/fuzz/corpus/$t")
  # The real templates seed the template parser (they are not copied into the repository).
  [ "$t" = jinja_parse ] && [ -d "$here/../shared/data/templates" ] && seeds+=("$here/../shared/data/templates")
  if "$build/fuzz/fuzz_$t" "$work" "${seeds[@]}" -max_total_time="$seconds" -timeout=10 \
       -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
       > "$log" 2>&1; then
    # The last status line (coverage, features, exec/s) and the totals.
    summary=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -E 's/ +/ /g')
    runs=$(sed -nE 's/^stat::number_of_executed_units: *//p' "$log")
    echo "check_fuzz: $t ok: $runs runs; $summary"
  else
    echo "== FAILED: fuzz_$t (last lines of $log)"
    tail -40 "$log"
    failed+=("$t")
  fi
done
echo "check_fuzz: done in $(( $(date +%s) - t0 )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "check_fuzz: failed: ${failed[*]} (inputs in $build/artifacts/)"
  exit 1
fi
