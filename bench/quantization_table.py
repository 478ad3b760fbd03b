#!/usr/bin/env python3
"""Quality of each quantization of the tiny test checkpoints against its source, by `k2mlx perplexity`.

  bench/quantization_table.py [--text FILE] [--window N] [--max-windows N] [--kernels auto|k2|mlx]

Builds (or reuses) the parity suite's checkpoints under tests/.work/ — mlx-lm conversions q2..q8, q4 with groups
32/128, mixed_3_6 of the bf16 tiny Kimi model, and the FP8 tiny Kimi model requantized at load — and prints a
Markdown table: perplexity of the copy and of its source, mean / 99th-percentile / max KL divergence, top-1
agreement, RMS delta p. Everything runs in float32, so the figures measure the quantization, not the activation
dtype. The weights are random: read the table for how the formats rank, not for what a real model loses.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "tools"))
import k2parity  # noqa: E402

# (label, checkpoint, base checkpoint, extra k2mlx flags for the copy)
ROWS = [
    ("q2 (g64)", "kimi-q2", "kimi-hf-bf16", []),
    ("q3 (g64)", "kimi-q3", "kimi-hf-bf16", []),
    ("q3 (g32)", "kimi-q3_g32", "kimi-hf-bf16", []),
    ("q4 (g64)", "kimi-q4", "kimi-hf-bf16", []),
    ("q4 (g32)", "kimi-q4_g32", "kimi-hf-bf16", []),
    ("q4 (g128)", "kimi-q4_g128", "kimi-hf-bf16", []),
    ("q5 (g64)", "kimi-q5", "kimi-hf-bf16", []),
    ("q6 (g64)", "kimi-q6", "kimi-hf-bf16", []),
    ("q8 (g64)", "kimi-q8", "kimi-hf-bf16", []),
    ("mixed_3_6", "kimi-mixed_3_6", "kimi-hf-bf16", []),
    ("FP8 -> 4-bit g64 at load", "kimi-hf-fp8", "kimi-hf-fp8", ["--fp8-requantize", "4:64"]),
    ("FP8 -> 8-bit g64 at load", "kimi-hf-fp8", "kimi-hf-fp8", ["--fp8-requantize", "8:64"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=str(ROOT / "README.md"), help="text to score (default: this README)")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--max-windows", type=int, default=40, help="score at most this many windows (0 = all)")
    ap.add_argument("--kernels", default="auto", choices=["auto", "k2", "mlx"])
    ap.add_argument("--binary", default=str(k2parity.engine_bin()))
    a = ap.parse_args()
    ws = k2parity.Workspace()
    print(f"text: {Path(a.text).name}, {a.max_windows or 'all'} windows of {a.window} tokens (second half scored), "
          f"float32, --kernels {a.kernels}\n")
    print("| copy | PPL | source PPL | mean KL (nats) | KL 99 % | KL max | same top-1 | RMS Δp |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, base, extra in ROWS:
            out = Path(tmp) / f"{name}.json"
            cmd = [a.binary, "perplexity", "--model", str(ws.path(name)), "--base-model", str(ws.path(base)),
                   "--text-file", a.text, "--window", str(a.window), "--max-windows", str(a.max_windows),
                   "--dtype", "float32", "--kernels", a.kernels, "--worst", "0", "--json", str(out), "-q", *extra]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
            r = json.loads(out.read_text())
            print(f"| {label} | {r['ppl']:.1f} | {r['base_ppl']:.1f} | {r['mean_kl']:.4f} ± {r['kl_stderr']:.4f} | "
                  f"{r['p99_kl']:.3f} | {r['max_kl']:.3f} | {100 * r['same_top']:.1f} ± {100 * r['same_top_stderr']:.1f} % | "
                  f"{100 * r['rms_dp']:.2f} % |")


if __name__ == "__main__":
    main()
