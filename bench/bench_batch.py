#!/usr/bin/env python3
# Continuous batching through `k2mlx serve`: aggregate and per-stream decode tok/s at 1, 2, 4 and 8 concurrent
# streams (ratios to the single stream of the same run), optionally also on a 2-rank pipeline on loopback, and
# the time to first token of a short request that arrives during another request's long prefill vs idle.
"""Benchmark continuous batching in k2mlx serve.

  bench/bench_batch.py [--model DIR] [--streams 1,2,4,8] [--prompt 64] [--gen 48] [--long 2048] [--chunk 256]
                       [--step-tokens N] [--pipeline] [--bin PATH]

Without --model the bench builds bench_pipeline.py's random Kimi-shaped checkpoint (hidden 1024, 32 experts
top-8, 4-bit g64) into tests/.work/. Greedy /v1/completions with token-id prompts, streamed; a stream's tok/s is
(tokens - 1) / (last chunk - first chunk); the aggregate is all tokens after each stream's first over the time
from the round's first first token to its last chunk. Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
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

from bench_pipeline import build, free_port_block  # noqa: E402
from machine_info import machine  # noqa: E402


def start(binary: Path, model: Path, ranks: int, *args: str):
    log = tempfile.NamedTemporaryFile(prefix="k2batch-", suffix=".log", delete=False)
    serve = ["serve", "-m", str(model), "--port", "0", "--quiet", "--no-log-requests", *args]
    cmd = [str(binary), *serve] if ranks == 1 else \
        [str(binary), "launch", "-n", str(ranks), "--starting-port", str(free_port_block(ranks)), "--", *serve]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        m = re.search(r"listening on http://([\d.]+):(\d+)", Path(log.name).read_text(errors="replace"))
        if m:
            return proc, (m.group(1), int(m.group(2)))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start:\n{Path(log.name).read_text()}")


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


def round_of(addr, streams: int, plen: int, gen: int, vocab: int, salt: int) -> dict:
    with ThreadPoolExecutor(streams) as ex:
        rs = list(ex.map(lambda i: stream(addr, prompt(salt * 100 + i, plen, vocab), gen), range(streams)))
    # Decode throughput: the tokens after each stream's first, over the time from the first first token to the
    # last chunk (prefill of the round's prompts is left out, as in the per-stream figure).
    span = max(r["last"] for r in rs) - min(r["first"] for r in rs)
    return {"aggregate": sum(r["tokens"] - 1 for r in rs) / span, "per_stream": statistics.mean(r["tps"] for r in rs)}


def throughput(binary: Path, model: Path, ranks: int, streams: list[int], a) -> list[dict]:
    proc, addr = start(binary, model, ranks, "--parallel", str(max(streams)), "--prompt-cache-mib", "0",
                       "--prefill-chunk", str(a.chunk))
    try:
        stream(addr, [1, 2, 3], 2)  # warm-up
        out = []
        for s in streams:
            best = None
            for r in range(a.repeats):
                x = round_of(addr, s, a.prompt, a.gen, a.vocab, r)
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


def table(title: str, rows: list[dict]) -> None:
    one = rows[0]
    print(f"{title}\n")
    print("| streams | aggregate tok/s | per-stream tok/s | aggregate / single | per-stream / single |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['streams']} | {r['aggregate']:.1f} | {r['per_stream']:.1f} | **{r['aggregate'] / one['aggregate']:.2f}×** | "
              f"{r['per_stream'] / one['per_stream']:.2f}× |")
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
    ap.add_argument("--layers", type=int, default=8, help="layers of the generated model")
    a = ap.parse_args()
    model = a.model or build(ROOT / "tests" / ".work" / "bench-pipeline", a.layers)
    a.vocab = min(json.loads((model / "config.json").read_text())["vocab_size"], 1000)
    streams = [int(s) for s in a.streams.split(",")]

    print(f"machine: {machine()}; model: {model.name}; prompt {a.prompt} tokens, {a.gen} generated per stream\n")
    table("one process", throughput(a.bin, model, 1, streams, a))
    if a.pipeline:
        t0 = time.perf_counter()
        rows = throughput(a.bin, model, 2, [s for s in streams if s <= 4], a)
        table("2-rank pipeline on loopback (both ranks share this machine's cores)", rows)
        print(f"(pipeline run: {time.perf_counter() - t0:.0f} s wall)\n")
    idle, busy = ttft_during_prefill(a.bin, model, a)
    print("| short request (16 tokens) | TTFT (s) |\n|---|---|")
    print(f"| server idle | {idle:.3f} |\n| during a {a.long}-token prefill (chunks of {a.chunk}, --step-tokens "
          f"{a.step_tokens}) | {busy:.3f} |")
    print(f"| **during / idle** | **{busy / idle:.2f}×** |")


if __name__ == "__main__":
    main()
