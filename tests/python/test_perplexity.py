# `k2mlx perplexity`: a known answer (an lm_head of zeros predicts the uniform distribution, so PPL is the
# vocabulary size), NLL equal to one computed in float64 from mlx-lm's logits, KL divergence exactly 0 against
# itself and equal to one computed from mlx-lm's logits of a 2-bit copy, text and ids inputs agreeing, and
# bad input giving exit 2 with a message that names it.
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import k2parity
from k2parity import run_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import reference  # noqa: E402  (mlx-lm's forward pass)

WINDOW = 48
IDS = [int(i) for i in np.random.default_rng(11).integers(2, 1279, 3 * WINDOW + 7)]  # 3 windows and a rest


def perplexity(args: list, tmp: Path, name: str = "ppl") -> dict:
    out = tmp / f"{name}.json"
    p = run_engine(["perplexity", *map(str, args), "--json", str(out)])
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def ids_file(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("ppl") / "ids.txt"
    f.write_text(",".join(map(str, IDS)))
    return f


_LOADED: dict = {}


def mlx_lm_logprobs(model_dir: Path, window: list[int]) -> np.ndarray:
    """float64 log-softmax of mlx-lm's float32 logits, [len(window), vocab]."""
    if model_dir not in _LOADED:
        _LOADED[model_dir] = reference.load(model_dir, "float32")[0]
    z = reference.logits(_LOADED[model_dir], window, all_positions=True).astype(np.float64)
    z -= z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_uniform_model_has_the_vocabulary_as_perplexity(engine, ws, ids_file, tmp_path):
    import mlx.core as mx

    src = ws.path("kimi-hf-fp32")
    model = tmp_path / "uniform"
    shutil.copytree(src, model)
    weights = mx.load(str(model / "model.safetensors"))
    weights["lm_head.weight"] = mx.zeros_like(weights["lm_head.weight"])
    mx.save_safetensors(str(model / "model.safetensors"), weights, metadata={"format": "pt"})
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    r = perplexity(["--model", model, "--ids-file", ids_file, "--window", WINDOW, "--dtype", "float32"], tmp_path)
    assert r["windows"] == 3 and r["scored_tokens"] == 3 * (WINDOW - WINDOW // 2)
    assert r["ppl"] == pytest.approx(vocab, rel=1e-5)
    assert r["nll_stderr"] == pytest.approx(0, abs=1e-6)


def test_nll_equals_float64_from_mlx_lm_logits(engine, ws, ids_file, tmp_path):
    model = ws.path("kimi-hf-fp32")
    r = perplexity(["--model", model, "--ids-file", ids_file, "--window", WINDOW, "--score-from", 5,
                    "--dtype", "float32"], tmp_path)
    nll = []
    for w in range(3):
        window = IDS[w * WINDOW:(w + 1) * WINDOW]
        lp = mlx_lm_logprobs(model, window)
        nll += [-lp[j - 1, window[j]] for j in range(5, WINDOW)]
    assert r["scored_tokens"] == len(nll)
    assert r["mean_nll"] == pytest.approx(float(np.mean(nll)), abs=2e-5)
    assert r["nll_stderr"] == pytest.approx(float(np.std(nll, ddof=1) / np.sqrt(len(nll))), rel=1e-3)


def test_kl_is_zero_against_itself_and_matches_mlx_lm_for_a_2_bit_copy(engine, ws, ids_file, tmp_path):
    base, q2 = ws.path("kimi-hf-fp32"), ws.path("kimi-q2")
    same = perplexity(["--model", base, "--base-model", base, "--ids-file", ids_file, "--window", WINDOW,
                       "--dtype", "float32"], tmp_path, "same")
    assert same["mean_kl"] == 0 and same["max_kl"] == 0 and same["same_top"] == 1
    assert same["base_mean_nll"] == same["mean_nll"]

    # mlx-lm's kernels for the 2-bit copy: k2mlx's own CPU kernels would differ by their activation rounding.
    r = perplexity(["--model", q2, "--base-model", base, "--ids-file", ids_file, "--window", WINDOW,
                    "--dtype", "float32", "--kernels", "mlx", "--worst", 3], tmp_path, "q2")
    kl, top_q, top_b = [], [], []
    for w in range(3):
        window = IDS[w * WINDOW:(w + 1) * WINDOW]
        lq, lb = mlx_lm_logprobs(q2, window)[WINDOW // 2 - 1:-1], mlx_lm_logprobs(base, window)[WINDOW // 2 - 1:-1]
        kl += list((np.exp(lb) * (lb - lq)).sum(-1))
        top_q += list(lq.argmax(-1))
        top_b += list(lb.argmax(-1))
    assert r["mean_kl"] > 1e-3, r  # a 2-bit copy of random weights is far from its source
    assert r["mean_kl"] == pytest.approx(float(np.mean(kl)), rel=2e-3)
    assert r["max_kl"] == pytest.approx(float(np.max(kl)), rel=2e-3)
    assert r["same_top"] == pytest.approx(float(np.mean(np.array(top_q) == np.array(top_b))), abs=1.5 / len(kl))
    assert r["same_top"] < 1
    assert len(r["worst"]) == 3 and r["worst"][0]["kl"] == pytest.approx(r["max_kl"])
    assert [w["kl"] for w in r["worst"]] == sorted((w["kl"] for w in r["worst"]), reverse=True)


def test_text_file_scores_the_tokenized_text(engine, ws, tmp_path):
    model = ws.path("kimi-hf-fp32")
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 12)
    p = run_engine(["tokenize", "-m", str(model), "--no-special", "--prompt-file", str(text)])
    assert p.returncode == 0, p.stderr
    ids = tmp_path / "ids.txt"
    ids.write_text(p.stdout)
    a = perplexity(["--model", model, "--text-file", text, "--window", 32, "--dtype", "float32"], tmp_path, "a")
    b = perplexity(["--model", model, "--ids-file", ids, "--window", 32, "--dtype", "float32"], tmp_path, "b")
    assert a == b and a["windows"] >= 2


@pytest.mark.parametrize("args,message", [
    ([], "needs --text-file or --ids-file"),
    (["--ids-file", "{ids}", "--window", "1"], "at least 2 tokens"),
    (["--ids-file", "{ids}", "--window", "600"], "fewer than one window"),
    (["--ids-file", "{ids}", "--score-from", "0"], "first scored token"),
    (["--ids-file", "{ids}", "--window", "48", "--score-from", "48"], "first scored token"),
    (["--ids-file", "{ids}", "--max-windows", "-1"], "window count"),
    (["--ids-file", "{bad_ids}"], "outside the vocabulary"),
    (["--text-file", "{empty}"], "is empty"),
    (["--text-file", "{missing}"], "missing.txt"),
    (["--ids-file", "{ids}", "--text-file", "{empty}"], "excludes"),
    (["--ids-file", "{ids}", "--base-model", "{deepseek}"], "vocabulary"),
])
def test_bad_input_exits_2_naming_it(engine, ws, ids_file, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.txt").write_text("1,2,999999")
    subs = {"ids": ids_file, "bad_ids": tmp_path / "bad.txt", "empty": tmp_path / "empty.txt",
            "missing": tmp_path / "missing.txt", "deepseek": ws.path("deepseek-hf-bf16")}
    p = run_engine(["perplexity", "--model", str(ws.path("kimi-hf-fp32")), "--dtype", "float32",
                    *[a.format(**subs) for a in args]])
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert message in p.stderr, p.stderr
