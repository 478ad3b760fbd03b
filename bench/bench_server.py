#!/usr/bin/env python3
# Overhead of serving: time to first token and decode tok/s through `k2mlx serve` (streamed
# /v1/completions with the same token ids) against `k2mlx generate` on the same model in the same
# invocation, and the gain from prompt reuse on a multi-turn chat (server with vs without the cache).
"""Benchmark k2mlx serve against direct generation.

  bench/bench_server.py [--model DIR] [--prompt 512] [--gen 64] [--repeats 5] [--turns 6] [--bin PATH]

Without --model a tiny random Kimi-shaped checkpoint (tools/make_tiny_model.py, with the K2-Thinking chat
template) is written to tests/.work/. Greedy decoding, so both paths produce the same tokens. The
server is timed from the client: TTFT = request sent -> first SSE chunk; tok/s = (tokens - 1) / (last
chunk - first chunk). Ratios are server / direct for both TTFT (lower is better) and tok/s (higher is
better). Prints Markdown tables to paste into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT.parent / "shared" / "data" / "templates" / "kimi-k2-thinking.jinja"
sys.path.insert(0, str(ROOT / "bench"))

import server_process  # noqa: E402


def start_server(binary: Path, model: Path, *args: str):
    proc, addr, _ = server_process.start([str(binary), "serve", "-m", str(model), "--port", "0", "--quiet",
                                          "--no-log-requests", *args], "k2serve-", 120)
    return proc, addr


def stream(addr, path: str, body: dict) -> dict:
    """Streams one request; returns ttft, decode tok/s, completion tokens, cached tokens and text."""
    conn = http.client.HTTPConnection(*addr, timeout=600)
    body = dict(body, stream=True, stream_options={"include_usage": True})
    t0 = time.perf_counter()
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    first = last = None
    usage, text = None, ""
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        j = json.loads(line[6:])
        if j.get("usage"):
            usage = j["usage"]
        if j["choices"]:
            c = j["choices"][0]
            piece = c.get("text") or (c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("reasoning_content") or ""
            if piece:
                now = time.perf_counter()
                first = first or now
                last = now
                text += piece
    conn.close()
    n = usage["completion_tokens"]
    return {"ttft": (first or time.perf_counter()) - t0, "tps": (n - 1) / (last - first) if n > 1 and last > first else 0.0,
            "tokens": n, "cached": usage["prompt_tokens_details"]["cached_tokens"], "prompt": usage["prompt_tokens"],
            "text": text}


def direct(binary: Path, model: Path, ids: list[int], gen: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([str(binary), "generate", "-m", str(model), "--ids", ",".join(map(str, ids)), "-n", str(gen),
                        "--temp", "0", "--quiet", "--stats-json", f.name], check=True, stdout=subprocess.DEVNULL)
        s = json.loads(Path(f.name).read_text())
    return {"ttft": s["prefill_seconds"], "tps": s["decode_tps"], "tokens": s["generated_tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--bin", type=Path, default=Path(os.environ.get("K2MLX_BIN", ROOT / "build" / "apps" / "k2mlx" / "k2mlx")))
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens for the overhead comparison")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--turns", type=int, default=6, help="turns of the multi-turn reuse conversation")
    a = ap.parse_args()

    model = a.model
    if model is None:
        model = ROOT / "tests" / ".work" / "bench-server-tiny-kimi"
        if not (model / "model.safetensors").exists():
            subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", "kimi",
                            "--out", str(model), "--chat-template", str(TEMPLATE)], check=True)
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    regular = min(vocab, 1000)

    # 1. Overhead: same ids, greedy, prompt cache off so every request prefills the whole prompt.
    rows = {"direct": [], "server": []}
    proc, addr = start_server(a.bin, model, "--prompt-cache-mib", "0")
    try:
        stream(addr, "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0})  # warm-up
        for r in range(a.repeats):
            ids = [(7 * i + 13 * r) % regular for i in range(a.prompt)]
            rows["direct"].append(direct(a.bin, model, ids, a.gen))
            rows["server"].append(stream(addr, "/v1/completions", {"prompt": ids, "max_tokens": a.gen, "temperature": 0}))
    finally:
        proc.terminate()
        proc.wait(10)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("ttft", "tps", "tokens")} for k, v in rows.items()}

    # 2. Prompt reuse: the same conversation with and without the cache.
    system = "You are a careful assistant. " * 60
    questions = [f"Question {i}: tell me about topic number {i}." for i in range(a.turns)]
    reuse = {}
    for label, args in (("cache off", ["--prompt-cache-mib", "0"]), ("cache on", [])):
        proc, addr = start_server(a.bin, model, *args)
        try:
            stream(addr, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            msgs = [{"role": "system", "content": system}]
            turns = []
            for q in questions:
                msgs.append({"role": "user", "content": q})
                r = stream(addr, "/v1/chat/completions", {"messages": msgs, "max_tokens": 16, "temperature": 0})
                msgs.append({"role": "assistant", "content": r["text"]})
                turns.append(r)
            reuse[label] = turns
        finally:
            proc.terminate()
            proc.wait(10)

    print(f"machine: {platform.machine()} {platform.system()} ({os.cpu_count()} CPUs); model: {model.name}; "
          f"prompt {a.prompt} tokens, {a.gen} generated, median of {a.repeats}")
    print()
    print("| path | TTFT (s) | decode tok/s | tokens |")
    print("|---|---|---|---|")
    for k in ("direct", "server"):
        print(f"| {k} | {med[k]['ttft']:.4f} | {med[k]['tps']:.1f} | {med[k]['tokens']:.0f} |")
    print(f"| **server / direct** | **{med['server']['ttft'] / med['direct']['ttft']:.2f}×** | "
          f"**{med['server']['tps'] / med['direct']['tps']:.2f}×** | |")
    print()
    print("| turn | prompt tokens | cached | TTFT cache off (s) | TTFT cache on (s) | speed-up |")
    print("|---|---|---|---|---|---|")
    off, on = reuse["cache off"], reuse["cache on"]
    for i, (x, y) in enumerate(zip(off, on), 1):
        print(f"| {i} | {y['prompt']} | {y['cached']} | {x['ttft']:.4f} | {y['ttft']:.4f} | {x['ttft'] / y['ttft']:.2f}× |")
    tx, ty = sum(x["ttft"] for x in off[1:]), sum(y["ttft"] for y in on[1:])
    print(f"| turns 2..{len(on)} total | | | {tx:.4f} | {ty:.4f} | **{tx / ty:.2f}×** |")


if __name__ == "__main__":
    main()
