#!/usr/bin/env python3
# Pipeline overheads on one machine, in one invocation: per-token decode time with 2 ranks (ring backend
# over loopback) against 1 rank, and the prefill gain from letting chunks flow through the stages back
# to back (overlap) against waiting for the last stage after each chunk. Prints ratios.
"""Benchmark the layer pipeline on 127.0.0.1.

  bench/bench_pipeline.py [--bin build/apps/k2mlx/k2mlx] [--layers 8] [--prompt 1024] [--chunk 128]
                          [--gen 64] [--repeats 3] [--dtype auto|float32|bfloat16|float16] [--work DIR]

The model is a random Kimi-K2-shaped checkpoint (hidden 1024, 32 experts top-8, one dense layer) quantized
to 4-bit group 64 by mlx-lm's converter. Every configuration runs --repeats times; medians are reported.
  decode overhead = (2-rank ms/token) / (1-rank ms/token)          (1.00 = free; loopback hop cost)
  overlap gain    = prefill time without overlap / with overlap      (2 ranks, same chunks)
On a machine with fewer cores than ranks x threads-per-rank the ranks compete for the CPU; the machine
line says how many cores there were.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

import make_tiny_model as mtm  # noqa: E402
from machine_info import machine  # noqa: E402


def kimi_shaped(layers: int) -> dict:
    s = dict(mtm.STRUCTURES["kimi"])
    s.pop("auto_map", None)
    # model_type deepseek_v3 (what mlx-lm maps kimi_k2 to) keeps the converter's tokenizer set-up simple.
    s.update(model_type="deepseek_v3", hidden_size=1024, num_attention_heads=8, num_key_value_heads=8, q_lora_rank=384, kv_lora_rank=256,
             intermediate_size=2816, moe_intermediate_size=256, n_routed_experts=32, num_experts_per_tok=8,
             num_hidden_layers=layers, first_k_dense_replace=1, n_group=1, topk_group=1)
    return s


def build(work: Path, layers: int) -> Path:
    from convert_variants import convert_one

    name = f"pipe_bench_{layers}"
    mtm.STRUCTURES[name] = kimi_shaped(layers)
    hf, q = work / f"{name}-bf16", work / f"{name}-q4"
    if not (hf / "config.json").exists():
        mtm.build(name, hf, dtype="bfloat16")
    if not (q / "config.json").exists():
        convert_one(hf, q, {"bits": 4, "group": 64})
    return q


def free_port_block(n: int) -> int:
    while True:
        base = random.randint(20000, 60000 - n)
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            pass
        finally:
            for s in socks:
                s.close()


def run(binary: Path, model: Path, ranks: int, ids: list[int], gen: int, chunk: int, dtype: str, overlap: bool,
        work: Path) -> dict:
    stats = work / "stats.{rank}.json"
    cmd = [str(binary), "launch", "-n", str(ranks), "--starting-port", str(free_port_block(ranks)), "--", "pipeline",
           "--model", str(model), "--ids", ",".join(map(str, ids)), "--max-tokens", str(gen), "--temp", "0",
           "--ignore-eos", "--dtype", dtype, "--prefill-chunk", str(chunk), "-q", "--stats-out", str(stats)]
    if not overlap:
        cmd.append("--no-overlap")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
    s = json.loads((work / "stats.0.json").read_text())
    return {"prefill_s": s["prefill_seconds"], "ms_per_token": 1e3 * s["decode_seconds"] / max(len(s["tokens"]) - 1, 1),
            "tokens": s["tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "build" / "apps" / "k2mlx" / "k2mlx"))
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--chunk", type=int, default=128)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--work", default=str(ROOT / "tests" / ".work" / "bench-pipeline"))
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model = build(work, a.layers)
    rng = random.Random(0)
    ids = [rng.randrange(10, 1200) for _ in range(a.prompt)]
    binary = Path(a.bin)

    configs = {"1 rank": (1, True), "2 ranks, overlap": (2, True), "2 ranks, no overlap": (2, False)}
    results: dict[str, list[dict]] = {k: [] for k in configs}
    for _ in range(a.repeats):  # interleaved so that drift hits every configuration alike
        for name, (ranks, overlap) in configs.items():
            results[name].append(run(binary, model, ranks, ids, a.gen, a.chunk, a.dtype, overlap, work))
    ref_tokens = results["1 rank"][0]["tokens"]
    for name, rs in results.items():
        for r in rs:
            if r["tokens"] != ref_tokens:
                sys.exit(f"error: {name} generated different tokens than 1 rank")

    med = {k: {m: statistics.median(r[m] for r in rs) for m in ("prefill_s", "ms_per_token")} for k, rs in results.items()}
    print(f"# machine: {machine()}")
    print(f"# model: Kimi-shaped, {a.layers} layers, hidden 1024, 32 experts top-8, 4-bit g64; dtype {a.dtype}")
    print(f"# prompt {a.prompt} tokens in chunks of {a.chunk}; {a.gen} generated tokens; median of {a.repeats}")
    print(f"{'configuration':<22} {'prefill s':>10} {'decode ms/token':>16}")
    for k, v in med.items():
        print(f"{k:<22} {v['prefill_s']:>10.3f} {v['ms_per_token']:>16.2f}")
    one, two, serial = med["1 rank"], med["2 ranks, overlap"], med["2 ranks, no overlap"]
    print(f"decode overhead (2 ranks / 1 rank, per token): {two['ms_per_token'] / one['ms_per_token']:.2f}x "
          f"(+{two['ms_per_token'] - one['ms_per_token']:.2f} ms/token)")
    print(f"chunked-prefill overlap gain (no overlap / overlap, 2 ranks): {serial['prefill_s'] / two['prefill_s']:.2f}x")
    print(f"prefill, 2 ranks with overlap vs 1 rank: {one['prefill_s'] / two['prefill_s']:.2f}x")


if __name__ == "__main__":
    main()
