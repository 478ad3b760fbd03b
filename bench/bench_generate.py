#!/usr/bin/env python3
# Speed and memory of k2mlx against mlx-lm on the same checkpoints, in one invocation: prefill tok/s,
# decode tok/s and peak memory for both, and their ratios. Checkpoints are random Kimi-shaped models
# (a "small" and a "medium" size) converted to 3- and 4-bit by mlx-lm's own converter.
"""Benchmark k2mlx generate vs mlx-lm stream_generate.

  bench/bench_generate.py [--sizes small,medium] [--bits 3,4] [--prompt 64] [--gen 32] [--repeats 3] [--work DIR]

Each engine runs in its own process (so peak memory is its own). Decode tok/s is (N - 1) tokens over the
time from the first generated token to the last, for both engines (mlx-lm's own figure counts N). k2mlx runs twice: with --dtype auto
(float32 activations on the CPU backend) and with --dtype bfloat16 (mlx-lm's precision: the same
kernels at the same precision). Ratios are k2mlx / mlx-lm for speed (higher is better) and
mlx-lm / k2mlx for memory (higher is better). The machine is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import resource
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

import make_tiny_model as mtm  # noqa: E402
from machine_info import machine  # noqa: E402
from convert_variants import convert_one  # noqa: E402

# Kimi-K2's shape scaled down: one dense layer then MoE layers, one routing group, top-8 sigmoid
# routing, a shared expert, YaRN beta 1/1. model_type deepseek_v3 (what mlx-lm maps kimi_k2 to) keeps
# the tokenizer set-up simple; the architecture is identical.
SIZES = {
    "small": {"hidden_size": 1024, "num_attention_heads": 8, "q_lora_rank": 384, "kv_lora_rank": 256,
              "intermediate_size": 2816, "moe_intermediate_size": 256, "n_routed_experts": 32,
              "num_experts_per_tok": 8, "num_hidden_layers": 3},
    "medium": {"hidden_size": 2048, "num_attention_heads": 16, "q_lora_rank": 512, "kv_lora_rank": 256,
               "intermediate_size": 5632, "moe_intermediate_size": 512, "n_routed_experts": 64,
               "num_experts_per_tok": 8, "num_hidden_layers": 3},
}


def kimi_shaped(size: str) -> dict:
    s = dict(mtm.STRUCTURES["kimi"])
    s.pop("auto_map", None)
    s.update(model_type="deepseek_v3", first_k_dense_replace=1, n_group=1, topk_group=1,
             num_key_value_heads=SIZES[size]["num_attention_heads"], **SIZES[size])
    return s


def build_checkpoints(work: Path, sizes: list[str], bits: list[int]) -> dict[tuple[str, int], Path]:
    out = {}
    for size in sizes:
        name = f"bench_{size}"
        mtm.STRUCTURES[name] = kimi_shaped(size)
        hf = work / f"{size}-bf16"
        if not (hf / "config.json").exists():
            t = time.time()
            mtm.build(name, hf, dtype="bfloat16")
            print(f"# built {hf} in {time.time() - t:.0f} s", flush=True)
        for b in bits:
            q = work / f"{size}-q{b}"
            if not (q / "config.json").exists():
                convert_one(hf, q, {"bits": b, "group": 64})
            out[(size, b)] = q
    return out


MLX_LM_RUNNER = r"""
import json, sys
import mlx.core as mx
sys.path.insert(0, sys.argv[1])
from reference import install_mlx_lm_compat
install_mlx_lm_compat()
from mlx_lm.utils import load
from mlx_lm.generate import stream_generate
from mlx_lm.sample_utils import make_sampler
model, tok = load(sys.argv[2])
ids = json.loads(sys.argv[3]); n = int(sys.argv[4])
last = None
for r in stream_generate(model, tok, prompt=ids, max_tokens=n, sampler=make_sampler(temp=0.0)):
    last = r
# mlx-lm's generation_tps divides all N tokens by the time after the first one; k2mlx (and this table)
# divide the N - 1 tokens decoded in that time. Put mlx-lm on the same footing.
n_gen = last.generation_tokens
print(json.dumps({"prefill_tps": last.prompt_tps, "decode_tps": last.generation_tps * (n_gen - 1) / n_gen,
                  "peak_memory": last.peak_memory * 1e9, "generated_tokens": n_gen}))
"""


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_mlx_lm(model: Path, ids: list[int], n: int) -> dict:
    py = sys.executable
    before = child_cpu_seconds()
    res = subprocess.run([py, "-c", MLX_LM_RUNNER, str(ROOT / "tools"), str(model), json.dumps(ids), str(n)],
                         capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["cpu_seconds"] = child_cpu_seconds() - before
    return out


def run_k2mlx(binary: Path, model: Path, ids: list[int], n: int, dtype: str, work: Path) -> dict:
    stats = work / "stats.json"
    before = child_cpu_seconds()
    subprocess.run([str(binary), "generate", "--model", str(model), "--ids", ",".join(map(str, ids)),
                    "--max-tokens", str(n), "--temp", "0", "--ignore-eos", "--dtype", dtype, "--quiet",
                    "--stats-json", str(stats)], check=True, stdout=subprocess.DEVNULL)
    out = json.loads(stats.read_text())
    out["cpu_seconds"] = child_cpu_seconds() - before
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,medium")
    ap.add_argument("--bits", default="3,4")
    ap.add_argument("--prompt", type=int, default=64, help="prompt length in tokens")
    ap.add_argument("--gen", type=int, default=32, help="tokens to generate")
    ap.add_argument("--repeats", type=int, default=3, help="runs per engine; the fastest is reported")
    ap.add_argument("--work", default=str(ROOT / ".cache" / "bench"))
    ap.add_argument("--binary", default=os.environ.get("K2MLX_BIN", str(ROOT / "build/apps/k2mlx/k2mlx")))
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = a.sizes.split(",")
    bits = [int(b) for b in a.bits.split(",")]
    models = build_checkpoints(work, sizes, bits)
    ids = [(7 * i + 3) % 1000 + 10 for i in range(a.prompt)]

    print(f"# machine: {machine()}")
    print(f"# prompt {a.prompt} tokens, {a.gen} generated, greedy; ratios: speed k2mlx/mlx-lm, memory mlx-lm/k2mlx")
    # CPU seconds of the whole process (load + run; Python start-up and imports for mlx-lm) are a second,
    # load-independent view of the work done: on a busy machine wall-clock speeds depend on the CPU share.
    header = ("| model | engine | prefill tok/s | decode tok/s | peak memory MiB | process CPU s | prefill ratio "
              "| decode ratio | memory ratio |")
    print(header)
    print("|" + "---|" * 9)
    def best(runs: list[dict]) -> dict:
        # Fastest of the repeats for each speed (a busy machine only ever slows a run down); highest peak.
        return {"prefill_tps": max(r["prefill_tps"] for r in runs), "decode_tps": max(r["decode_tps"] for r in runs),
                "peak_memory": max(r["peak_memory"] for r in runs), "cpu_seconds": min(r["cpu_seconds"] for r in runs)}

    for (size, b), path in models.items():
        # Interleave the engines so that a change in machine load affects all of them alike.
        runs: dict[str, list[dict]] = {"mlx-lm": [], "bfloat16": [], "auto": []}
        for _ in range(a.repeats):
            runs["mlx-lm"].append(run_mlx_lm(path, ids, a.gen))
            for dtype in ("bfloat16", "auto"):
                runs[dtype].append(run_k2mlx(Path(a.binary), path, ids, a.gen, dtype, work))
        ref = best(runs["mlx-lm"])
        label = f"{size} {b}-bit"
        print(f"| {label} | mlx-lm (bf16) | {ref['prefill_tps']:.1f} | {ref['decode_tps']:.2f} "
              f"| {ref['peak_memory'] / 2**20:.0f} | {ref['cpu_seconds']:.1f} | 1.00 | 1.00 | 1.00 |", flush=True)
        for dtype in ("bfloat16", "auto"):
            k = best(runs[dtype])
            name = "k2mlx (bf16)" if dtype == "bfloat16" else "k2mlx (auto: f32 on CPU)"
            print(f"| {label} | {name} | {k['prefill_tps']:.1f} | {k['decode_tps']:.2f} "
                  f"| {k['peak_memory'] / 2**20:.0f} | {k['cpu_seconds']:.1f} | {k['prefill_tps'] / ref['prefill_tps']:.2f} "
                  f"| {k['decode_tps'] / ref['decode_tps']:.2f} | {ref['peak_memory'] / k['peak_memory']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
