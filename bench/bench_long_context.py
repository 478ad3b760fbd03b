#!/usr/bin/env python3
# Long-context prefill on the CPU: one long prompt (ids from a file) through `k2mlx logits` on a 3-layer,
# hidden-128 Kimi-structured toy (2 heads), with our blocked prefill attention (the default) and with MLX's
# SDPA (--kernels mlx), in one invocation: wall and CPU seconds, peak RSS, MLX's peak memory against the
# predicted peak (`logits --stats`, the figure `inspect --context N` prints), the ratio, and how far the two
# last-position logits are apart. The toy is written once into --work.
"""Time a long prefill.

  bench/bench_long_context.py [--tokens 40000] [--engines k2,mlx] [--work DIR]

CPU seconds (user + system) are printed beside wall seconds because the machines this runs on are shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import make_tiny_model as mtm  # noqa: E402

BIN = Path(os.environ.get("K2MLX_BIN", ROOT / "build" / "apps" / "k2mlx" / "k2mlx"))


def toy(work: Path) -> Path:
    out = work / "kimi-3l-h128"
    if (out / "config.json").exists():
        return out
    mtm.STRUCTURES["kimi"] = dict(mtm.STRUCTURES["kimi"], num_hidden_layers=3)
    mtm._COMMON["hidden_size"] = 128
    return mtm.build("kimi", out, dtype="bfloat16")


def run(model: Path, ids: Path, out: Path, extra: list[str]) -> dict:
    cmd = ["/usr/bin/time", "-f", "%e %U %S %M", str(BIN), "logits", "--model", str(model), "--ids-file", str(ids),
           "--out", str(out), "--stats", *extra]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    e, u, s, m = p.stderr.strip().splitlines()[-1].split()
    chunk = [l for l in p.stderr.splitlines() if l.startswith("prefill: ")]
    stats = [l for l in p.stderr.splitlines() if l.startswith("stats: ")]
    st = dict(kv.split("=") for kv in stats[-1].split()[1:]) if stats else {}
    return {"wall": wall, "cpu": float(u) + float(s), "rss": int(m) * 1024, "logits": np.load(out),
            "chunks": chunk[0] if chunk else "?", "peak": int(st.get("peak_mlx_bytes", 0)),
            "predicted": int(st.get("predicted_peak_bytes", 0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=40000)
    ap.add_argument("--engines", default="k2,mlx", help="k2 (default flags), mlx (--kernels mlx)")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "bench_long_context")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    model = toy(a.work)
    ids = a.work / f"ids{a.tokens}.txt"
    ids.write_text(", ".join(map(str, np.random.default_rng(a.tokens).integers(2, 1279, a.tokens))) + "\n")
    res = {}
    for e in a.engines.split(","):
        res[e] = run(model, ids, a.work / f"logits-{e}.npy", [] if e == "k2" else ["--kernels", "mlx"])
        r = res[e]
        print(f"{e:>4}: {a.tokens} tokens ({r['chunks']}): {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, "
              f"{a.tokens / r['wall']:.0f} tok/s, peak RSS {r['rss'] / 2**20:.0f} MiB, MLX peak "
              f"{r['peak'] / 2**20:.1f} MiB = {r['peak'] / max(r['predicted'], 1):.3f}x the predicted "
              f"{r['predicted'] / 2**20:.1f} MiB", flush=True)
    if "k2" in res and "mlx" in res:
        k, m = res["k2"], res["mlx"]
        d = np.abs(k["logits"] - m["logits"]).max()
        print(f"k2 / mlx: {m['wall'] / k['wall']:.2f}x wall, {m['cpu'] / k['cpu']:.2f}x CPU; last-position logits "
              f"max |diff| {d:.2e} (max |logit| {np.abs(m['logits']).max():.2f})")


if __name__ == "__main__":
    main()
