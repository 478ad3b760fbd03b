#!/usr/bin/env python3
# CPU speed of k2mlx's own kernels against MLX's CPU kernels and mlx-lm, side by side in one invocation:
# this machine's read bandwidth (measured here), per-kernel GB/s at Kimi-K2's shapes, the 384-expert MoE
# step, and whole-model decode / prefill on a generated real-dimension checkpoint. Every figure is printed
# with its ratio to the bandwidth limit or to the reference run of the same invocation.
"""Benchmark k2mlx's CPU kernels.

  bench/bench_cpu.py [--threads 1,2] [--bits 3,4] [--skip-kernels] [--skip-moe] [--skip-model]
                     [--layers 5 --experts 48] [--decode 16] [--prefill 512] [--ref-prefill 16] [--model-engines mlx-lm,mlx,k2] [--work DIR]

Kernel GB/s = bytes of packed weights + bf16 scales + biases read per call / time, every call on a different
copy of the weights (>= 1 GiB of copies), so the weights come from DRAM as in decode. MLX's kernels are
single-threaded on the CPU, so they run once (their thread count does not change). Model decode GB/s = weight
bytes one token reads (every tensor except the embedding table, routed experts counted top_k / n_experts) x tok/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "bench"))

from machine_info import machine  # noqa: E402

SHAPES = [(2048, 7168), (7168, 2048), (18432, 7168), (7168, 8192)]  # (N out, K in) of Kimi-K2's matrices


def kernel_bench(binary: Path, *args: str) -> dict:
    out = subprocess.run([str(binary), *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def decode_bytes_per_token(model: Path) -> float:
    from safetensors import safe_open

    cfg = json.loads((model / "config.json").read_text())
    share = cfg["num_experts_per_tok"] / cfg["n_routed_experts"]
    total = 0.0
    for f in sorted(model.glob("*.safetensors")):
        with safe_open(str(f), framework="numpy") as st:
            for name in st.keys():
                if name.startswith("model.embed_tokens"):
                    continue
                sl = st.get_slice(name)
                n = 1
                for d in sl.get_shape():
                    n *= d
                size = n * {"U32": 4, "BF16": 2, "F32": 4, "F16": 2}.get(sl.get_dtype(), 4)
                total += size * (share if ".switch_mlp." in name else 1.0)
    return total


MLX_LM_RUNNER = r"""
import json, sys, time
import mlx.core as mx
sys.path.insert(0, sys.argv[1])
from reference import install_mlx_lm_compat
install_mlx_lm_compat()
from mlx_lm.utils import load_model
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_sampler
from pathlib import Path
model, _ = load_model(Path(sys.argv[2]))
ids = json.loads(sys.argv[3]); n = int(sys.argv[4])
t0 = time.perf_counter(); times = []
for i, (tok, _) in enumerate(generate_step(mx.array(ids), model, max_tokens=n, sampler=make_sampler(temp=0.0))):
    times.append(time.perf_counter())
prefill = len(ids) / (times[0] - t0)
decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
print(json.dumps({"prefill_tps": prefill, "decode_tps": decode}))
"""


def run_mlx_lm(model: Path, ids: list[int], n: int) -> dict:
    res = subprocess.run([sys.executable, "-c", MLX_LM_RUNNER, str(ROOT / "tools"), str(model), json.dumps(ids),
                          str(n)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_k2mlx(binary: Path, model: Path, ids: list[int], n: int, kernels: str, work: Path, threads: int) -> dict:
    stats = work / "stats.json"
    cmd = [str(binary), "generate", "--model", str(model), "--ids", ",".join(map(str, ids)), "--max-tokens", str(n),
           "--temp", "0", "--ignore-eos", "--quiet", "--kernels", kernels, "--stats-json", str(stats)]
    if threads:
        cmd += ["--threads", str(threads)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(stats.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="thread counts for k2mlx's kernels")
    ap.add_argument("--bits", default="3,4")
    ap.add_argument("--skip-kernels", action="store_true")
    ap.add_argument("--skip-moe", action="store_true")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--experts", type=int, default=48)
    ap.add_argument("--decode", type=int, default=16, help="tokens decoded per model run")
    ap.add_argument("--prefill", type=int, default=512, help="prompt tokens of k2mlx's prefill run")
    ap.add_argument("--ref-prefill", type=int, default=16,
                    help="prompt tokens of the prefill runs on MLX's CPU kernels (mlx-lm, --kernels mlx), which take "
                         "minutes per 16 tokens at these sizes")
    ap.add_argument("--model-engines", default="mlx-lm,mlx,k2",
                    help="whole-model rows: mlx-lm, k2mlx --kernels mlx, k2mlx --kernels k2 (the first one given is the "
                         "reference of the ratios)")
    ap.add_argument("--work", default=str(ROOT / ".cache" / "bench_cpu"))
    ap.add_argument("--build", default=os.environ.get("K2MLX_BUILD", str(ROOT / "build")))
    a = ap.parse_args()
    build = Path(a.build)
    kb = build / "bench" / "k2_kernel_bench"
    k2 = build / "apps" / "k2mlx" / "k2mlx"
    threads = [int(t) for t in a.threads.split(",")]
    bits = [int(b) for b in a.bits.split(",")]
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)

    print(f"# machine: {machine()}")
    limit = {t: kernel_bench(kb, "bandwidth", "--threads", str(t))["gbps"] for t in threads}
    print("| read bandwidth | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}: {limit[t]:.1f} GB/s" for t in threads) + " |")
    peak = kernel_bench(kb, "peak")
    if "madd_gmacs" in peak:
        # The int16 kernels' arithmetic ceiling: a 4-bit weight byte holds 2 weights, so decode at the
        # bandwidth limit needs (limit·2) G multiply-adds per second, and an M-row call M times that.
        print(f"| one core's arithmetic peak (CPU time) | int16 multiply-add + add: {peak['madd_gmacs']:.0f} GMAC/s "
              f"| float FMA: {peak['fma_gmacs']:.0f} GMAC/s |")

    if not a.skip_kernels:
        print("\n## Quantized matmul, weights from DRAM (GB/s; ratio to the read bandwidth at that thread count)\n")
        print("| N x K | format | rows | MLX GB/s | " + " | ".join(f"k2 {t}T GB/s (/limit)" for t in threads)
              + f" | k2 {threads[-1]}T / MLX |")
        print("|" + "---|" * (5 + len(threads)))
        for N, K in SHAPES:
            for b, g in [(b, 64) for b in bits] + [(4, 32)]:
                for rows in (1, 8):
                    common = ["matmul", "--n", str(N), "--k", str(K), "--bits", str(b), "--group", str(g),
                              "--rows", str(rows)]
                    ref = kernel_bench(kb, *common, "--threads", "1", "--mlx")
                    cells, last = [], 0.0
                    for t in threads:
                        r = ref if t == 1 else kernel_bench(kb, *common, "--threads", str(t))
                        cells.append(f"{r['k2_gbps']:.2f} ({r['k2_gbps'] / limit[t]:.2f})")
                        last = r["k2_gbps"]
                    print(f"| {N}x{K} | {b}-bit g{g} | {rows} | {ref['mlx_gbps']:.2f} | " + " | ".join(cells)
                          + f" | {last / ref['mlx_gbps']:.1f}x |", flush=True)

    if not a.skip_moe:
        print("\n## MoE expert step: 384 stacked experts of 2048x7168, top-8 (GB/s of the distinct experts read)\n")
        print("| format | tokens | experts read | MLX gather_qmm GB/s | " + " | ".join(f"k2 {t}T GB/s (/limit)" for t in threads)
              + f" | k2 {threads[-1]}T / MLX |")
        print("|" + "---|" * (5 + len(threads)))
        for b in bits:
            for tokens in (1, 8):
                common = ["moe", "--experts", "384", "--top", "8", "--n", "2048", "--k", "7168", "--bits", str(b),
                          "--group", "64", "--tokens", str(tokens)]
                ref = kernel_bench(kb, *common, "--threads", "1", "--mlx")
                cells, last = [], 0.0
                for t in threads:
                    r = ref if t == 1 else kernel_bench(kb, *common, "--threads", str(t))
                    cells.append(f"{r['k2_gbps']:.2f} ({r['k2_gbps'] / limit[t]:.2f})")
                    last = r["k2_gbps"]
                print(f"| {b}-bit g64 | {tokens} | {ref['unique_experts']:.1f} | {ref['mlx_gbps']:.2f} | "
                      + " | ".join(cells) + f" | {last / ref['mlx_gbps']:.1f}x |", flush=True)

    if not a.skip_model:
        import make_real_dim_model as rdm

        model = work / f"kimi-real-dim-{a.layers}l-{a.experts}e-q4"
        if not (model / "config.json").exists():
            rdm.build(model, a.layers, a.experts, 4, 64, 6)
        per_token = decode_bytes_per_token(model)
        t_all = threads[-1]
        print(f"\n## Whole model: {model.name} (real Kimi-K2 dimensions, {a.layers} layers, {a.experts} experts, "
              f"4-bit g64); one decoded token reads {per_token / 1e9:.2f} GB\n")
        print("| engine | decode tok/s | decode GB/s (/limit) | prefill tok/s (prompt) | decode ratio | prefill ratio |")
        print("|---|---|---|---|---|---|")
        short = [(7 * i + 3) % 1000 + 10 for i in range(8)]
        long = [(7 * i + 3) % 1000 + 10 for i in range(a.prefill)]
        ref_long = long[:a.ref_prefill]
        engines = a.model_engines.split(",")
        rows = []
        if "mlx-lm" in engines:
            rows.append(("mlx-lm", run_mlx_lm(model, short, a.decode), run_mlx_lm(model, ref_long, 2), len(ref_long)))
        for kernels in ("mlx", "k2"):
            if kernels not in engines:
                continue
            prompt = long if kernels == "k2" else ref_long
            d = run_k2mlx(k2, model, short, a.decode, kernels, work, t_all)
            p = run_k2mlx(k2, model, prompt, 2, kernels, work, t_all)
            rows.append((f"k2mlx --kernels {kernels}", d, p, len(prompt)))
        ref_d, ref_p = rows[0][1], rows[0][2]
        for name, d, p, n in rows:
            gbps = d["decode_tps"] * per_token / 1e9
            print(f"| {name} | {d['decode_tps']:.2f} | {gbps:.2f} ({gbps / limit[t_all]:.2f}) | "
                  f"{p['prefill_tps']:.1f} ({n}) | {d['decode_tps'] / ref_d['decode_tps']:.2f} | "
                  f"{p['prefill_tps'] / ref_p['prefill_tps']:.2f} |", flush=True)
        k = rows[-1]
        if a.ref_prefill < a.prefill:
            print(f"\n(prefill tok/s of the MLX-kernel rows over {a.ref_prefill} prompt tokens, k2mlx's over {a.prefill})")
        print(f"\nk2mlx prefill / decode tok/s: {k[2]['prefill_tps'] / k[1]['decode_tps']:.1f}")


if __name__ == "__main__":
    main()
