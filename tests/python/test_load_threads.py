# Loading with reader threads: sharded checkpoints (bf16, FP8 with per-expert tensors, MLX 4-bit) give
# bit-identical logits with --load-threads 1 (each tensor read as it is bound) and with several readers; a
# truncated shard still exits 2 naming the file; --progress writes GB/s to stderr and leaves stdout alone.
from __future__ import annotations

import shutil

import numpy as np
import pytest

import k2parity as kp

SEQ = kp.SEQS["short"]


def _logits(engine, model, out, *extra) -> np.ndarray:
    proc = kp.run_engine(["logits", "--model", model, "--ids", kp.ids_arg(SEQ), "--out", out, "--dtype", "float32",
                          *extra])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(out)


@pytest.mark.parametrize("name", ["kimi-hf-bf16-sharded", "deepseek-hf-fp8", "kimi-q4"])
def test_reader_threads_load_identical_weights(ws, engine, tmp_path, name):
    model = ws.path(name)
    if name != "kimi-q4":
        assert len(list(model.glob("*.safetensors"))) > 1, f"{name} is expected to be sharded"
    one = _logits(engine, model, tmp_path / "one.npy", "--load-threads", "1")
    for threads in ("2", "7", "0"):
        many = _logits(engine, model, tmp_path / f"t{threads}.npy", "--load-threads", threads)
        assert one.dtype == many.dtype and one.shape == many.shape
        assert np.array_equal(one, many), f"{name}: --load-threads {threads} differs from 1 " \
                                          f"(max |diff| {np.abs(one - many).max()})"


@pytest.mark.parametrize("threads", ["1", "4"])
def test_truncated_shard_exits_2_naming_it(ws, engine, tmp_path, threads):
    model = tmp_path / "ckpt"
    shutil.copytree(ws.path("kimi-hf-bf16-sharded"), model)
    shard = sorted(model.glob("model-*.safetensors"))[1]
    with open(shard, "r+b") as f:
        f.truncate(shard.stat().st_size * 6 // 10)
    proc = kp.run_engine(["logits", "--model", model, "--ids", kp.ids_arg(SEQ), "--out", tmp_path / "x.npy",
                          "--load-threads", threads], timeout=120)
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    assert shard.name in proc.stderr and "truncated" in proc.stderr, proc.stderr[-1500:]


def test_bad_load_threads_exits_2(ws, engine, tmp_path):
    proc = kp.run_engine(["logits", "--model", ws.path("kimi-hf-bf16"), "--ids", "1", "--out", tmp_path / "x.npy",
                          "--load-threads", "-3"])
    assert proc.returncode == 2 and "--load-threads" in proc.stderr, proc.stderr[-800:]


def test_progress_goes_to_stderr_only(ws, engine):
    proc = kp.run_engine(["inspect", "--model", ws.path("kimi-hf-bf16-sharded"), "--load", "--progress"])
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "GB/s" in proc.stderr and "loading [" in proc.stderr, proc.stderr[-800:]
    assert "loading [" not in proc.stdout and "load time" in proc.stdout
