#!/usr/bin/env python3
# Soak test of `k2mlx serve`: many clients for minutes, each sending a random mix of valid, malformed and
# abandoned requests (bench/http_checks.py), while the server's RSS is sampled every second. Fails when the RSS
# grows past a bound, a request is answered later than its bound, an answer is malformed, the server dies, or
# SIGTERM does not stop it promptly.
"""Soak test of k2mlx serve under a mixed load.

  bench/soak_server.py [--model DIR] [--seconds 300] [--clients 16] [--valid-bound 60] [--malformed-bound 5]
                       [--rss-fraction 0.2] [--rss-slack-mib 16] [--shutdown-bound 10] [--seed 0] [--bin PATH]

Without --model the tiny random Kimi-shaped checkpoint of the server tests (tools/make_tiny_model.py with the
K2-Thinking chat template, tests/.work/server-tiny-kimi) is used, built first if missing. The server runs with
--api-key (so wrong keys can be tried) and a queue larger than the number of clients. Mix: half valid requests
(chat, completions, Anthropic messages, streamed and not, 4-16 tokens; a few GETs), 30 % malformed (raw sockets),
20 % abandoned generations of 500-4000 tokens. The warm-up RSS is the sample at 10 % of the run; the final one is
taken once the server is idle after the load. Prints a summary; exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT.parent / "shared" / "data" / "templates" / "kimi-k2-thinking.jinja"
sys.path.insert(0, str(ROOT / "bench"))

import http_checks as hc  # noqa: E402
import server_process  # noqa: E402
from machine_info import machine  # noqa: E402

API_KEY = "soak-key"


def tiny_model() -> Path:
    out = ROOT / "tests" / ".work" / "server-tiny-kimi"  # the server tests' checkpoint (conftest.py), shared
    if not (out / "model.safetensors").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", "kimi", "--out", str(out),
                        "--chat-template", str(TEMPLATE)], check=True)
    return out


def stop_server(proc: subprocess.Popen, bound: float) -> tuple[float, int | None]:
    """SIGTERM, then the seconds until the process exited and its status (None: killed after 3 x bound)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=3 * bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return time.monotonic() - t0, None
    return time.monotonic() - t0, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--bin", type=Path, default=Path(os.environ.get("K2MLX_BIN", ROOT / "build" / "apps" / "k2mlx" / "k2mlx")))
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--valid-bound", type=float, default=60.0,
                    help="seconds a valid request, or an abandoned stream's first chunk, may take")
    ap.add_argument("--malformed-bound", type=float, default=5.0, help="seconds within which a malformed request is refused")
    # RSS bound: final <= warm-up x (1 + fraction) + slack. After the warm-up every kind of request has been served
    # many times, so MLX's buffer cache (freed buffers kept for reuse) and the allocator's per-thread arenas (one
    # per busy HTTP thread) hold most of their working set; what may still appear is the first batch that combines
    # the largest shapes, and fragmentation. Those are bounded and do not repeat; a leak repeats: one KV cache of
    # an abandoned 4000-token request per cancel (several hundred in 5 minutes) or a request body per malformed
    # request (up to 350 KB, thousands of them) crosses the bound many times over. The slope printed with the
    # summary shows slower growth than the bound can.
    ap.add_argument("--rss-fraction", type=float, default=0.2)
    ap.add_argument("--rss-slack-mib", type=float, default=16.0)
    ap.add_argument("--shutdown-bound", type=float, default=10.0, help="seconds from SIGTERM to exit")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the run before the warm-up RSS sample")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    model = a.model or tiny_model()
    # A queue well above the client count: an abandoned request holds its place until the server notices the
    # disconnect, so a 503 (a failure here) means abandoned requests are not released.
    proc, (host, port), log = server_process.start(
        [str(a.bin), "serve", "-m", str(model), "--port", "0", "--quiet", "--api-key", API_KEY,
         "--queue", str(4 * a.clients)], "k2soak-", 120)
    target = hc.Target(host, port, API_KEY)
    bounds = hc.Bounds(valid=a.valid_bound, malformed=a.malformed_bound)
    print(f"machine: {machine()}; model: {model.name}; {a.clients} clients for {a.seconds:.0f} s; "
          f"load average {os.getloadavg()[0]:.1f}; server log {log}", flush=True)
    failures = []
    try:
        res = hc.run_load(target, proc, a.seconds, a.clients, bounds, seed=a.seed, warmup=a.warmup)
        if not res.died:
            failures += hc.abandon_checks(target)
            try:
                h = hc.health(target)
                hc.check(h["status"] == "ok", f"/health {h}")
            except (hc.Problem, OSError, ValueError) as e:
                failures.append(f"/health after the load: {e}")
    finally:
        shutdown, rc = stop_server(proc, a.shutdown_bound)

    text = log.read_text(errors="replace")
    disconnected = text.count("client disconnected")
    server_errors = len(re.findall(r"\] \S+ (?:\(framing\) |\S+ )5\d\d\b", text))
    # Only abandoned requests ask for more than 16 tokens: one that ran to its limit was not noticed as abandoned
    # (or was one the client gave up on just as it ended; not a failure by itself, the abandon checks decide).
    ran_out = sum(int(n) > 16 for n in re.findall(r" 200 .*\| out (\d+) tok .*\| length$", text, re.M))
    print(hc.summary(res))
    print(f"server log: {disconnected} generations ended by a client disconnect, {ran_out} abandoned ones ran to "
          f"their max_tokens, {server_errors} 5xx answers")
    print(f"shutdown: {shutdown:.2f} s after SIGTERM, exit status {rc}; load average at the end {os.getloadavg()[0]:.1f}")
    print("kinds:\n" + hc.kinds_table(res))

    limit = hc.rss_limit_kib(res.warm_kib, a.rss_fraction, a.rss_slack_mib)
    if res.died:
        failures.append(res.died)
    if res.problem_count:
        failures.append(f"{res.problem_count} requests with problems")
    if server_errors:
        failures.append(f"{server_errors} 5xx answers in the server log")
    if res.final_kib > limit:
        failures.append(f"final RSS {res.final_kib / 1024:.1f} MiB over the bound {limit / 1024:.1f} MiB "
                        f"(warm-up {res.warm_kib / 1024:.1f} MiB x {1 + a.rss_fraction} + {a.rss_slack_mib} MiB)")
    if rc is None or shutdown > a.shutdown_bound:
        failures.append(f"shutdown took {shutdown:.1f} s (bound {a.shutdown_bound} s)" + ("; killed" if rc is None else ""))
    elif rc != 0:
        failures.append(f"exit status {rc} after SIGTERM")
    if failures:
        print("FAIL: " + "; ".join(failures))
        sys.exit(1)
    print(f"PASS (final RSS within {limit / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
