#!/usr/bin/env python3
# Continuous batching through `k2mlx serve`: aggregate and per-stream decode tok/s at 1, 2, 4 and 8 concurrent
# streams (ratios to the single stream of the same run), optionally also on a 2-rank pipeline on loopback, and
# the time to first token of a short request that arrives during another request's long prefill vs idle.
"""Benchmark continuous batching in k2mlx serve.

  bench/bench_batch.py [--model DIR | --kimi-like] [--streams 1,2,4,8] [--prompt 64] [--gen 48] [--long 2048]
                       [--chunk 256] [--step-tokens N] [--pipeline] [--bin PATH]

Without --model the bench builds bench_pipeline.py's random Kimi-shaped checkpoint (hidden 1024, 32 experts
top-8, 4-bit g64) into tests/.work/. Greedy /v1/completions with token-id prompts, streamed; a stream's tok/s is
(tokens - 1) / (last chunk - first chunk); the aggregate is all tokens after each stream's first over the time
from the round's first first token to its last chunk. On the pipeline, each rank's CPU seconds over the round's wall
time (Linux /proc; a rank waiting in MLX's ring backend spins, so this is an upper bound of its work), with a
micro-batch per rank and with --micro-batches 1. Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tools"))

import server_process  # noqa: E402
from bench_pipeline import build, free_port_block  # noqa: E402
from machine_info import machine  # noqa: E402

# --kimi-like: Kimi-K2's proportions at a size this machine holds. 256 experts top-8, so that B streams touch
# almost B * 8 distinct experts per layer as in Kimi-K2 (384); 8 heads on hidden 2048 so that the routed
# experts are ~2.5x the attention + shared-expert weights of a layer (Kimi-K2: 352M vs 145M parameters);
# the tokenizer's vocabulary (1280: every sampled id has text, which the bench times) keeps the lm_head a small
# share of a step, as in a 61-layer model.
KIMI_LIKE = dict(hidden_size=2048, num_attention_heads=8, num_key_value_heads=8, q_lora_rank=768, kv_lora_rank=512,
                 intermediate_size=5632, moe_intermediate_size=512, n_routed_experts=256, num_experts_per_tok=8,
                 vocab_size=1280, bos_token_id=0, eos_token_id=1, first_k_dense_replace=1, n_group=1, topk_group=1,
                 model_type="deepseek_v3", max_position_embeddings=16384)


def build_kimi_like(out: Path, layers: int) -> Path:
    """Random packed 4-bit g64 weights (values are noise; speed does not depend on them), one shard per layer."""
    import make_real_dim_model as rdm
    import make_tiny_model as mtm

    if (out / "config.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cfg = rdm.config(layers, KIMI_LIKE["n_routed_experts"], 4, 64)
    cfg.update(KIMI_LIKE)
    cfg.pop("rope_scaling", None)  # a short-context model: plain RoPE
    weight_map, shard, index = {}, {}, 0

    def flush():
        nonlocal shard, index
        if shard:
            fname = f"model-{index:05d}.safetensors"
            mtm.write_safetensors(out / fname, shard)
            weight_map.update({n: fname for n in shard})
            shard, index = {}, index + 1

    layer = None
    for name, t in rdm.tensors(cfg, 4, 64, seed=0):
        this = name.split(".")[2] if name.startswith("model.layers.") else None
        if this != layer:
            flush()
            layer = this
        shard[name] = t
    flush()
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [cfg["eos_token_id"]]}) + "\n")
    mtm.write_tokenizer(out, mtm.make_config("deepseek", "bfloat16", False), "deepseek", 0, None)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")  # last: marks a complete build
    return out


def start(binary: Path, model: Path, ranks: int, *args: str):
    serve = ["serve", "-m", str(model), "--port", "0", "--quiet", "--no-log-requests", *args]
    cmd = [str(binary), *serve] if ranks == 1 else \
        [str(binary), "launch", "-n", str(ranks), "--starting-port", str(free_port_block(ranks)), "--", *serve]
    proc, addr, _ = server_process.start(cmd, "k2batch-", 300)
    return proc, addr


def stream(addr, ids: list[int], gen: int) -> dict:
    conn = http.client.HTTPConnection(*addr, timeout=900)
    body = {"prompt": ids, "max_tokens": gen, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    first = last = None
    usage = None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        j = json.loads(line[6:])
        usage = j.get("usage") or usage
        if j["choices"] and j["choices"][0].get("text"):
            last = time.perf_counter()
            first = first or last
    conn.close()
    n = usage["completion_tokens"]
    return {"start": t0, "first": first or time.perf_counter(), "last": last or time.perf_counter(), "tokens": n,
            "ttft": (first or time.perf_counter()) - t0,
            "tps": (n - 1) / (last - first) if n > 1 and last and first and last > first else 0.0}


def health(addr) -> dict:
    conn = http.client.HTTPConnection(*addr, timeout=60)
    conn.request("GET", "/health")
    out = json.loads(conn.getresponse().read())
    conn.close()
    return out


def prompt(i: int, n: int, vocab: int) -> list[int]:
    return [(7 * k + 131 * i) % vocab for k in range(n)]


def rank_pids(proc) -> list[int]:
    """The processes serving: the server itself, or the rank processes a launcher started (Linux /proc)."""
    kids = []
    for task in Path(f"/proc/{proc.pid}/task").glob("*"):
        try:
            kids += (task / "children").read_text().split()
        except OSError:
            pass
    return sorted(int(k) for k in kids) or [proc.pid]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def round_of(addr, streams: int, plen: int, gen: int, vocab: int, salt: int, pids: list[int] = ()) -> dict:
    cpu0, t0 = [cpu_seconds(p) for p in pids], time.perf_counter()
    with ThreadPoolExecutor(streams) as ex:
        rs = list(ex.map(lambda i: stream(addr, prompt(salt * 100 + i, plen, vocab), gen), range(streams)))
    wall = time.perf_counter() - t0
    busy = [(cpu_seconds(p) - c) / wall for p, c in zip(pids, cpu0)]  # CPU time / wall of each rank
    # Decode throughput: the tokens after each stream's first, over the time from the first first token to the
    # last chunk (prefill of the round's prompts is left out, as in the per-stream figure).
    span = max(r["last"] for r in rs) - min(r["first"] for r in rs)
    return {"aggregate": sum(r["tokens"] - 1 for r in rs) / span, "per_stream": statistics.mean(r["tps"] for r in rs),
            "busy": busy}


def throughput(binary: Path, model: Path, ranks: int, streams: list[int], a, *extra: str) -> list[dict]:
    proc, addr = start(binary, model, ranks, "--parallel", str(max(streams)), "--prompt-cache-mib", "0",
                       "--prefill-chunk", str(a.chunk), *extra)
    pids = rank_pids(proc) if ranks > 1 else []
    try:
        stream(addr, [1, 2, 3], 2)  # warm-up
        out = []
        for s in streams:
            best = None
            for r in range(a.repeats):
                x = round_of(addr, s, a.prompt, a.gen, a.vocab, r, pids)
                best = x if best is None or x["aggregate"] > best["aggregate"] else best
            out.append(dict(best, streams=s))
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def ttft_during_prefill(binary: Path, model: Path, a) -> tuple[float, float]:
    proc, addr = start(binary, model, 1, "--parallel", "4", "--prompt-cache-mib", "0", "--prefill-chunk", str(a.chunk),
                       "--step-tokens", str(a.step_tokens))
    try:
        stream(addr, [1, 2, 3], 2)
        idle = statistics.median(stream(addr, prompt(900 + i, 16, a.vocab), 4)["ttft"] for i in range(3))
        busy = []
        for i in range(3):
            long_t = threading.Thread(target=stream, args=(addr, prompt(950 + i, a.long, a.vocab), 4))
            long_t.start()
            while not health(addr)["running"]:
                time.sleep(0.01)
            time.sleep(0.2)  # the long prompt is being prefilled
            busy.append(stream(addr, prompt(990 + i, 16, a.vocab), 4)["ttft"])
            long_t.join()
        return idle, statistics.median(busy)
    finally:
        proc.terminate()
        proc.wait(30)


def weight_bound(cfg: dict, streams: int) -> float:
    """Aggregate / single-stream if a decode step costs the weights it reads: the attention, dense, shared-expert
    and lm_head weights once per step, the routed experts once per distinct expert, with B streams routed
    independently and uniformly (E * (1 - (1 - k/E)^B) distinct experts per layer)."""
    D, H, E, k = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("n_routed_experts") or 0, cfg.get("num_experts_per_tok", 0)
    nope, rope, v, r = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]
    qr = cfg.get("q_lora_rank") or 0
    q = D * qr + qr * H * (nope + rope) if qr else D * H * (nope + rope)
    attn = q + D * (r + rope) + H * r * (nope + v) + H * v * D
    expert = 3 * D * cfg["moe_intermediate_size"]
    layers, dense = cfg["num_hidden_layers"], cfg.get("first_k_dense_replace", 0)
    fixed = layers * attn + dense * 3 * D * cfg["intermediate_size"] + (layers - dense) * cfg.get("n_shared_experts", 0) * expert \
        + cfg["vocab_size"] * D
    routed = lambda b: (layers - dense) * expert * (E * (1 - (1 - k / E) ** b) if E else 0)  # noqa: E731
    return streams * (fixed + routed(1)) / (fixed + routed(streams))


def cpu_per_token(binary: Path, model: Path, streams: list[int], vocab: int, cfg: dict) -> None:
    """CPU seconds per generated token of `generate --batch` with B sequences: the difference of a 40-token and an
    8-token run, so that loading and prefill cancel. CPU time does not count the time other processes or the
    hypervisor take the cores away, which wall time on a shared machine does."""
    import resource

    def run(b: int, n: int) -> tuple[float, float]:
        with tempfile.NamedTemporaryFile("w", prefix="k2batch-", suffix=".jsonl", delete=False) as f:
            f.writelines(json.dumps({"ids": prompt(i, 4, vocab), "max_tokens": n}) + "\n" for i in range(b))
        r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run([str(binary), "generate", "-m", str(model), "--batch", f.name, "--parallel", str(b),
                        "--batch-out", os.devnull, "-q"], check=True, capture_output=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        os.unlink(f.name)
        return time.perf_counter() - t0, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime

    run(1, 2)  # the weights into the page cache
    print("| sequences | CPU ms / token | CPU: aggregate / single | weight-read bound | wall: aggregate / single |")
    print("|---|---|---|---|---|")
    one = None
    for b in streams:
        (w8, c8), (w40, c40) = run(b, 8), run(b, 40)
        cpu, wall = (c40 - c8) / (32 * b), (w40 - w8) / (32 * b)
        one = one or (cpu, wall)
        print(f"| {b} | {1000 * cpu:.1f} | {one[0] / cpu:.2f}× | {weight_bound(cfg, b):.2f}× | {one[1] / wall:.2f}× |")
    print()


def table(title: str, rows: list[dict], cfg: dict) -> None:
    one = rows[0]
    print(f"{title}\n")
    ranks = len(one["busy"])
    print("| streams | aggregate tok/s | per-stream tok/s | aggregate / single | per-stream / single | weight-read bound |"
          + "".join(f" rank {i} CPU / wall |" for i in range(ranks)))
    print("|---|---|---|---|---|---|" + "---|" * ranks)
    for r in rows:
        print(f"| {r['streams']} | {r['aggregate']:.1f} | {r['per_stream']:.1f} | **{r['aggregate'] / one['aggregate']:.2f}×** | "
              f"{r['per_stream'] / one['per_stream']:.2f}× | {weight_bound(cfg, r['streams']):.2f}× |"
              + "".join(f" {b:.2f} |" for b in r["busy"]))
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--bin", type=Path, default=Path(os.environ.get("K2MLX_BIN", ROOT / "build" / "apps" / "k2mlx" / "k2mlx")))
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--gen", type=int, default=48)
    ap.add_argument("--long", type=int, default=2048, help="prompt tokens of the long request in the TTFT test")
    ap.add_argument("--chunk", type=int, default=256, help="--prefill-chunk of the server")
    ap.add_argument("--step-tokens", type=int, default=0, help="--step-tokens of the server in the TTFT test")
    ap.add_argument("--repeats", type=int, default=2, help="rounds per stream count; the best is reported")
    ap.add_argument("--pipeline", action="store_true", help="also a 2-rank pipeline on loopback")
    ap.add_argument("--cpu", action="store_true", help="only the CPU time per token of generate --batch at each stream count")
    ap.add_argument("--layers", type=int, default=8, help="layers of the generated model")
    ap.add_argument("--kimi-like", action="store_true",
                    help="generate (once, into .cache/) a model with Kimi-K2's proportions: 256 experts top-8, hidden "
                         "2048, 8 heads; about 3.3 GB at 8 layers")
    a = ap.parse_args()
    if a.kimi_like and not a.model:
        a.model = build_kimi_like(ROOT / ".cache" / f"bench-batch-kimi-like-{a.layers}", a.layers)
    model = a.model or build(ROOT / "tests" / ".work" / "bench-pipeline", a.layers)
    cfg = json.loads((model / "config.json").read_text())
    a.vocab = min(cfg["vocab_size"], 1000)
    streams = [int(s) for s in a.streams.split(",")]

    print(f"machine: {machine()}; model: {model.name}; prompt {a.prompt} tokens, {a.gen} generated per stream; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    if a.cpu:
        cpu_per_token(a.bin, model, streams, a.vocab, cfg)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        return
    table("one process", throughput(a.bin, model, 1, streams, a), cfg)
    if a.pipeline:
        t0 = time.perf_counter()
        pipe_streams = [s for s in streams if s <= 4]
        table("2-rank pipeline on loopback (both ranks share this machine's cores), a micro-batch per rank",
              throughput(a.bin, model, 2, pipe_streams, a), cfg)
        table("2-rank pipeline, --micro-batches 1 (every sequence in each step: the ranks take turns)",
              throughput(a.bin, model, 2, pipe_streams, a, "--micro-batches", "1"), cfg)
        print(f"(pipeline run: {time.perf_counter() - t0:.0f} s wall)\n")
    idle, busy = ttft_during_prefill(a.bin, model, a)
    print("| short request (16 tokens) | TTFT (s) |\n|---|---|")
    print(f"| server idle | {idle:.3f} |\n| during a {a.long}-token prefill (chunks of {a.chunk}, --step-tokens "
          f"{a.step_tokens}) | {busy:.3f} |")
    print(f"| **during / idle** | **{busy / idle:.2f}×** |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
