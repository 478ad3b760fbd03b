#!/usr/bin/env bash
# Compiles every translation unit of the build (build/compile_commands.json) with clang++ against libc++,
# syntax and headers only, so that what only gcc and libstdc++ accept (missing standard includes, language
# extensions, clang < 16 limits) fails here rather than on a Mac. Linking is not attempted: the Linux MLX
# wheel is built against libstdc++, so a libc++ link with it cannot work.
# Usage: scripts/check_clang.sh [BUILD_DIR]   (needs clang, libc++-dev, libc++abi-dev; ~1 min on 2 cores)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"
jobs="${K2MLX_CLANG_JOBS:-2}"
command -v clang++ >/dev/null || { echo "check_clang: clang++ not found (apt-get install clang libc++-dev libc++abi-dev)"; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "check_clang: $build/compile_commands.json missing (configure first)"; exit 1; }
echo '#include <vector>' | clang++ -x c++ -stdlib=libc++ -fsyntax-only - 2>/dev/null \
  || { echo "check_clang: clang++ cannot find libc++ headers (apt-get install libc++-dev libc++abi-dev)"; exit 1; }

t0=$(date +%s)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One shell command per translation unit. Translation units that include <mlx/mlx.h> (most of them) share
# a precompiled mlx/mlx.h with its templates instantiated once: parsing it is ~70 % of each one's time.
# The PCH holds only that header, which those units include anyway, so it cannot hide a missing include.
python3 - "$build/compile_commands.json" "$work" <<'EOF'
import json, os, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

commands, work = json.load(open(sys.argv[1])), sys.argv[2]
jobs = int(os.environ.get("K2MLX_CLANG_JOBS", "2"))


def flags_of(entry):
    args = shlex.split(entry["command"])[1:]
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("-o", "-c"):
            skip = True
        elif a.startswith(("-D", "-I", "-std=", "-m")) or a in ("-isystem",) or keep and keep[-1] == "-isystem":
            keep.append(a)
    return keep


def uses_mlx(entry):
    """Whether the unit's include closure has mlx/mlx.h (preprocessor only: fast)."""
    cmd = ["clang++", "-stdlib=libc++", *flags_of(entry), "-M", "-MG", entry["file"]]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=entry["directory"]).stdout
    return "/mlx/mlx.h" in out


with ThreadPoolExecutor(jobs) as pool:
    mlx = list(pool.map(uses_mlx, commands))
common = ["clang++", "-stdlib=libc++", "-fsyntax-only", "-Wall", "-Wextra", "-Wno-unused-parameter"]
pch = os.path.join(work, "mlx.h.pch")
first = flags_of(commands[mlx.index(True)]) if any(mlx) else []
# Macros must match between the PCH and its users: build it with the include paths only, and give it the
# same -std; per-unit -D flags then add to it (clang accepts macros that the PCH never saw).
pch_flags = [f for f in first if not f.startswith("-D")]
with open(os.path.join(work, "pch.sh"), "w") as f:
    f.write(shlex.join(["clang++", "-stdlib=libc++", "-x", "c++-header", "-fpch-instantiate-templates", *pch_flags,
                        "-o", pch, "-"]) + " <<< '#include <mlx/mlx.h>'\n")
with open(os.path.join(work, "units.txt"), "w") as units:
    for i, (entry, m) in enumerate(zip(commands, mlx)):
        extra = ["-include-pch", pch] if m else []
        script = os.path.join(work, f"unit{i}.sh")
        with open(script, "w") as f:
            f.write(f"# {entry['file']}\ncd {shlex.quote(entry['directory'])}\n")
            f.write(shlex.join([*common, *flags_of(entry), *extra, entry["file"]]) + "\n")
        units.write(script + "\n")
print(f"check_clang: {len(commands)} translation units, {sum(mlx)} with the mlx/mlx.h PCH")
EOF


bash "$work/pch.sh"
failed=0
# Each unit's diagnostics go to its own log; the failing units' logs are printed at the end.
xargs -P "$jobs" -d '\n' -I{} sh -c 'bash "$1" > "$1.log" 2>&1 || echo "$1" >> "$0/failed"' "$work" {} < "$work/units.txt"
if [ -s "$work/failed" ]; then
  while read -r unit; do
    echo "== FAILED: $(head -1 "$unit" | cut -c3-)"
    cat "$unit.log"
  done < "$work/failed"
  failed=1
fi
warnings=$(cat "$work"/*.log 2>/dev/null | grep -c "warning:" || true)
if [ "$warnings" != 0 ]; then
  grep -h -A3 "warning:" "$work"/*.log > "$work/warnings.txt" || true
  head -40 "$work/warnings.txt"
fi
echo "check_clang: done in $(( $(date +%s) - t0 )) s, ${warnings} warnings"
exit $failed
