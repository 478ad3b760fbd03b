# Long prompts and memory: prompts given by file are cut into chunks sized to a memory budget by default, and
# the chunked result equals one-shot prefill and a fixed chunk size (float32); a prefill that cannot get its
# memory ends with a clear error (exit 2), never a crash (MLX's CPU backend segfaults when malloc fails).
# The 16K-token default-flag test takes minutes on the CPU backend, so it runs only with K2MLX_LONG_TESTS=1;
# the 40,000-token run is bench/bench_long_context.py's (numbers in docs/benchmarks.md). The peak-memory test checks
# `inspect`'s prediction against MLX's measured peak (logits --stats) at 8K tokens.
from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import numpy as np
import pytest

import k2parity as kp

MODEL = "deepseek-hf-bf16"  # 4 heads: the widest attention of the tiny checkpoints
TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
LONG = 16384
# Weights (~60 MB) + KV cache + one chunk's buffers (<= 2048 x 16K scores, ~1 GiB) stay below this; one-shot
# prefill of 16K tokens would need ~9 GB.
MAX_RSS_BYTES = 3 << 30


def write_ids(path: Path, n: int, seed: int) -> Path:
    ids = [int(i) for i in np.random.default_rng(seed).integers(2, 1279, n)]
    path.write_text(", ".join(map(str, ids)) + "\n")
    return path


def run_measured(args: list, timeout=900, preexec=None) -> tuple[subprocess.CompletedProcess, int | None]:
    """Runs k2mlx (under /usr/bin/time -v when available); returns the process and its peak RSS in bytes."""
    cmd = [str(kp.engine_bin()), *map(str, args)]
    if TIME:
        cmd = [TIME, "-v", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    rss = None
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[1]) * 1024
    return p, rss


def logits_from_file(model: Path, ids_file: Path, out: Path, *extra) -> tuple[np.ndarray, int]:
    """The logits and the chunk size the command reports."""
    p, _ = run_measured(["logits", "--model", model, "--ids-file", ids_file, "--out", out, "--dtype", "float32",
                         *extra])
    kp._check(p, out)
    chunk = [int(line.rsplit(" ", 1)[1]) for line in p.stderr.splitlines() if line.startswith("prefill: ")]
    assert chunk, f"logits did not report its prefill chunk size: {p.stderr[-1000:]!r}"
    return np.load(out), chunk[0]


def test_budget_sized_chunks_equal_one_shot_and_fixed_chunks(ws, engine, tmp_path):
    """A small --prefill-memory-mib makes the default sizing cut a 400-token prompt into many chunks (the same
    function sizes up to 2048-token chunks for long prompts at the default budget); all positions must equal
    the one-shot prefill and fixed 256-token chunks."""
    model = ws.path(MODEL)
    f = write_ids(tmp_path / "ids.txt", 400, 400)
    sized, chunk = logits_from_file(model, f, tmp_path / "sized.npy", "--prefill-memory-mib", 2, "--all-positions")
    assert 32 <= chunk < 200, f"a 2 MiB budget should give small chunks, got {chunk}"
    one_shot, chunk = logits_from_file(model, f, tmp_path / "one.npy", "--all-positions")
    assert chunk == 400, f"a 400-token prompt fits one chunk at the default budget, got chunks of {chunk}"
    fixed, _ = logits_from_file(model, f, tmp_path / "fixed.npy", "--prefill-chunk", 256, "--all-positions")
    kp.assert_exact(sized, one_shot, "budget-sized chunks vs one-shot", kp.EQUIV_REL)
    kp.assert_exact(fixed, one_shot, "--prefill-chunk 256 vs one-shot", kp.EQUIV_REL)


PEAK = 8192


def test_prefill_peak_within_prediction(ws, engine, tmp_path):
    """`inspect --context N` predicts the peak of a default-flag prefill of N tokens (float32, the blocked CPU
    attention, chunks sized to the default budget); `logits --stats` measures it as MLX's allocator peak after
    loading (the memory the prediction models: RSS adds the process's libraries and glibc's retained pages).
    They must agree within 10 %, and the stats line must carry the same prediction."""
    model = ws.path(MODEL)
    p = kp.run_engine(["inspect", "--model", model, "--context", PEAK], timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    predicted = [int(l.split(":")[1].split()[0]) for l in p.stdout.splitlines() if l.startswith("predicted peak memory:")]
    assert predicted, f"inspect printed no prediction: {p.stdout[-2000:]!r}"
    f = write_ids(tmp_path / "ids.txt", PEAK, PEAK)
    p, _ = run_measured(["logits", "--model", model, "--ids-file", f, "--out", tmp_path / "a.npy", "--stats", "-q"],
                        timeout=300)
    kp._check(p, tmp_path / "a.npy")
    line = [l for l in p.stderr.splitlines() if l.startswith("stats: ")]
    assert line, f"logits --stats printed no stats line: {p.stderr[-2000:]!r}"
    stats = dict(kv.split("=") for kv in line[-1].split()[1:])
    assert int(stats["predicted_peak_bytes"]) == predicted[0], (stats, predicted)
    peak = int(stats["peak_mlx_bytes"])
    assert abs(peak / predicted[0] - 1) <= 0.10, (
        f"{PEAK}-token prefill peaked at {peak} B, {peak / predicted[0]:.3f}x the predicted {predicted[0]} B")


def _limit_address_space(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def test_allocation_failure_is_a_clear_error(ws, engine, tmp_path):
    """A one-shot prefill of 8K tokens on MLX's SDPA path (--kernels mlx --prefill-chunk 8192: three [4, 8192, 8192]
    float32 buffers, ~3.2 GB) in a process limited to 2 GiB of address space: k2mlx must refuse with exit 2, saying
    how much it needs and which flag to change (without the check MLX segfaults). The blocked CPU attention (the
    default) needs no such buffers and runs this prompt in ~0.2 GB."""
    f = write_ids(tmp_path / "ids.txt", 8192, 8192)
    p, _ = run_measured(["logits", "--model", ws.path(MODEL), "--ids-file", f, "--out", tmp_path / "x.npy",
                         "--dtype", "float32", "--kernels", "mlx", "--prefill-chunk", 8192, "-q"], timeout=120,
                        preexec=_limit_address_space(2 << 30))
    assert p.returncode == 2, f"exit {p.returncode} (want 2, a clear error): {p.stderr[-2000:]!r}"
    assert "needs about" in p.stderr and "--prefill-chunk" in p.stderr, p.stderr[-2000:]


@pytest.mark.skipif(not os.environ.get("K2MLX_LONG_TESTS"), reason="minutes on the CPU backend; K2MLX_LONG_TESTS=1")
def test_16k_prompt_default_flags(ws, engine, tmp_path):
    """16,384 ids from a file through `logits` and `generate` with default flags: bounded RSS, last-position
    logits equal to --prefill-chunk 512, and generate's first greedy token is their argmax."""
    model = ws.path(MODEL)
    f = write_ids(tmp_path / "ids.txt", LONG, LONG)
    p, rss = run_measured(["logits", "--model", model, "--ids-file", f, "--out", tmp_path / "a.npy", "--dtype",
                           "float32", "-q"])
    kp._check(p, tmp_path / "a.npy")
    if rss is not None:
        assert rss < MAX_RSS_BYTES, f"default-flag prefill of {LONG} tokens peaked at {rss / 2**30:.2f} GiB RSS"
    auto = np.load(tmp_path / "a.npy")
    chunked, _ = logits_from_file(model, f, tmp_path / "b.npy", "--prefill-chunk", 512)
    kp.assert_exact(auto, chunked, f"{LONG}-token prompt: default chunking vs --prefill-chunk 512", kp.EQUIV_REL)
    out = tmp_path / "gen.json"
    p, _ = run_measured(["generate", "--model", model, "--ids-file", f, "-n", 1, "--temp", 0, "--dtype", "float32",
                         "--ignore-eos", "--ids-out", out, "-q"])
    kp._check(p, out)
    assert json.loads(out.read_text())[0] == int(np.argmax(auto))
