#!/usr/bin/env python3
# Load-speed benchmark: raw read (`cat`), mlx-lm's load_model + eval and `k2mlx inspect --load` on one
# real-dimension checkpoint, cold and warm page cache, in one invocation, with ratios and peak RSS.
"""Times loading a multi-GB checkpoint three ways and prints a markdown table.

  bench_load.py [--model DIR | --cache DIR] [--repeats 2] [--k2-threads 1,0]

Without --model, a Kimi-K2-dimension MLX 4-bit checkpoint (tools/make_real_dim_model.py defaults: 5 layers,
48 experts, 6 shards, ~6.7 GB) is generated once under --cache. "Cold" evicts the shards from the page cache
with posix_fadvise(POSIX_FADV_DONTNEED) before each run (no root needed; Linux); where that call does not
exist, the cold rows are skipped and the script says so. Warm runs follow a cat of every shard. Times: cat and
k2mlx are whole processes; mlx-lm is load_model + mx.eval of the parameters inside its process (its Python
import time is left out, which favours it). The faster of --repeats runs is shown.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
K2 = ROOT / "build" / "apps" / "k2mlx" / "k2mlx"
PY = ROOT / ".deps" / "venv" / "bin" / "python"

MLX_LM = r"""
import sys, time
from pathlib import Path
import mlx.core as mx
from mlx_lm.utils import load_model
t = time.perf_counter()
model, _ = load_model(Path(sys.argv[1]), lazy=True)
mx.eval(model.parameters())
print(f"LOAD {time.perf_counter() - t:.4f}")
"""


def shards(model: Path) -> list[Path]:
    return sorted(model.glob("*.safetensors"))


def evict(model: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    for f in shards(model):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def run_rss(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS GiB, stdout) of one child process; the RSS from wait4."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode})")
    rss = usage.ru_maxrss / (1024**3 if sys.platform == "darwin" else 1024**2)
    return wall, rss, out


def cat_cmd(model: Path) -> list[str]:
    return ["sh", "-c", 'cat "$@" > /dev/null', "cat", *map(str, shards(model))]


def engines(model: Path, k2_threads: list[int]) -> dict[str, callable]:
    def cat():
        return run_rss(cat_cmd(model))

    def mlx_lm():
        wall, rss, out = run_rss([str(PY), "-c", MLX_LM, str(model)])
        return float(out.split("LOAD ")[1].split()[0]), rss, out

    out = {"cat (raw read)": cat, "mlx-lm load_model + eval": mlx_lm}
    for t in k2_threads:
        label = "k2mlx inspect --load" + (f" --load-threads {t}" if t else " (default threads)")
        out[label] = (lambda t=t: run_rss([str(K2), "inspect", "-m", str(model), "--load", "--load-threads", str(t)]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--cache", type=Path, default=ROOT / "build" / "bench-load-model")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--k2-threads", default="1,0", help="--load-threads values to run (0: k2mlx's default)")
    a = ap.parse_args()
    model = a.model
    if model is None:
        model = a.cache
        if not (model / "config.json").exists():
            print(f"generating {model} (once) ...", file=sys.stderr)
            subprocess.run([str(PY), str(ROOT / "tools" / "make_real_dim_model.py"), "--out", str(model)], check=True)
    total = sum(f.stat().st_size for f in shards(model))
    runs = engines(model, [int(x) for x in a.k2_threads.split(",")])
    can_evict = hasattr(os, "posix_fadvise")
    results: dict[tuple[str, str], tuple[float, float]] = {}
    for cache in (["cold"] if can_evict else []) + ["warm"]:
        for _ in range(a.repeats):
            for label, fn in runs.items():  # interleaved, so drift in machine load hits every engine alike
                if cache == "cold":
                    evict(model)
                else:
                    run_rss(cat_cmd(model))
                wall, rss, _ = fn()
                best = results.get((label, cache))
                if best is None or wall < best[0]:
                    results[(label, cache)] = (wall, rss)
                print(f"{cache} {label}: {wall:.2f} s, peak RSS {rss:.2f} GiB", file=sys.stderr)

    print(f"checkpoint: {model} ({len(shards(model))} shards, {total / 1e9:.2f} GB)")
    if not can_evict:
        print("cold runs skipped: this platform has no posix_fadvise to evict the files from the page cache")
    print("\n| load | cache | seconds | GB/s | peak RSS GiB | vs cat | vs mlx-lm |")
    print("|---|---|---|---|---|---|---|")
    for (label, cache), (wall, rss) in sorted(results.items(), key=lambda kv: (kv[0][1], list(runs).index(kv[0][0]))):
        cat_s = results[("cat (raw read)", cache)][0]
        mlx_s = results[("mlx-lm load_model + eval", cache)][0]
        print(f"| {label} | {cache} | {wall:.2f} | {total / 1e9 / wall:.2f} | {rss:.2f} | {cat_s / wall:.2f} | "
              f"{mlx_s / wall:.2f} |")


if __name__ == "__main__":
    main()
