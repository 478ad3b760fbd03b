# The same ids give the same tokens on every path, at bfloat16 as well as float32: `generate`, the `logits`
# argmax chain, a 2- and a 3-rank pipeline, `serve` (one process and a 2-rank pipeline, with and without
# prompt reuse, with and without a repetition penalty). In bfloat16 a token computed inside a prefill chunk
# rounds differently from the same token computed alone, so these pass only when every path cuts a prompt the
# same way (Session::prefill's rule: chunks of the prompt minus its last token, then that token alone).
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pipeline_util import free_ports, launch, run

ROOT = Path(__file__).resolve().parents[3]
# Longer than the default repetition context (20), so that a penalty's window is a proper tail of the prompt.
PROMPT = [5, 17, 300, 42, 9, 1000, 77, 3, 250, 64, 128, 11, 901, 33, 7, 480, 1200, 66, 2, 95,
          610, 19, 844, 23, 1101, 58, 700, 4, 333, 150]
GEN = 12
GREEDY = ["--temp", "0"]
PENALTY = ["--temp", "0", "--repetition-penalty", "1.3"]  # the server's repetition context is the default too
# (structure, dtype); in the two bfloat16 models tokens change with the chunking, so they catch a path that
# cuts a prompt differently
MODELS = [("kimi", "bfloat16"), ("deepseek", "bfloat16"), ("kimi", "float32")]


def csv(ids) -> str:
    return ",".join(map(str, ids))


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny) -> dict:
    out = tmp_path_factory.mktemp("path-equality")
    made = {("kimi", "float32"): tiny["kimi"]}
    for structure, dtype in MODELS:
        if (structure, dtype) in made:
            continue
        d = out / f"{structure}-{dtype}"
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", structure,
                        "--out", str(d), "--dtype", dtype], check=True, capture_output=True, timeout=120)
        made[(structure, dtype)] = d
    return made


def generate(k2, model, dtype, prompt, sampling, *extra) -> list[int]:
    p = run(k2, ["generate", "--model", model, "--dtype", dtype, "--ids", csv(prompt), "--max-tokens", GEN,
                 "--ignore-eos", "-q", *sampling, *extra])
    assert p.returncode == 0, p.stderr
    return [int(t) for t in p.stdout.split()]


def pipeline(k2, ranks, model, dtype, prompt, sampling, *extra) -> list[int]:
    p = launch(k2, ranks, ["pipeline", "--model", model, "--dtype", dtype, "--ids", csv(prompt), "--max-tokens", GEN,
                           "--ignore-eos", "-q", *sampling, *extra])
    assert p.returncode == 0, p.stderr
    return [int(t) for t in p.stdout.split()]


CASES = [(s, d, tag) for s, d in MODELS for tag in ("greedy", "penalty")]


@pytest.mark.parametrize("structure,dtype,tag", CASES, ids=[f"{s}-{d}-{t}" for s, d, t in CASES])
def test_generate_equals_pipeline_ranks(k2, models, structure, dtype, tag):
    model, sampling = models[(structure, dtype)], GREEDY if tag == "greedy" else PENALTY
    for chunk in ("0", "7"):
        want = generate(k2, model, dtype, PROMPT, sampling, "--prefill-chunk", chunk)
        for ranks in (2, 3):
            got = pipeline(k2, ranks, model, dtype, PROMPT, sampling, "--prefill-chunk", chunk)
            assert got == want, f"{ranks} ranks, --prefill-chunk {chunk}: {got} != generate's {want}"


@pytest.mark.parametrize("structure,dtype", MODELS, ids=[f"{s}-{d}" for s, d in MODELS])
def test_generate_equals_logits_argmax_chain(k2, models, tmp_path, structure, dtype):
    """With one-token chunks `logits` does exactly the steps `generate` does, so its argmax at each position
    after the prompt is the next generated token (a chain of greedy choices, checked in one call)."""
    model = models[(structure, dtype)]
    want = generate(k2, model, dtype, PROMPT, GREEDY, "--prefill-chunk", "1")
    out = tmp_path / "logits.npy"
    p = run(k2, ["logits", "--model", model, "--dtype", dtype, "--ids", csv(PROMPT + want[:-1]), "--all-positions",
                 "--prefill-chunk", "1", "--out", out, "-q"])
    assert p.returncode == 0, p.stderr
    chain = np.load(out).argmax(-1)[len(PROMPT) - 1:]
    assert chain.tolist() == want


class Serve:
    """`k2mlx serve` (or `launch -n N -- serve`) on a free port, for /v1/completions with token-id prompts."""

    def __init__(self, k2, model, dtype, ranks, log: Path):
        serve = ["serve", "-m", str(model), "--port", "0", "--dtype", dtype, "--quiet"]
        cmd = [str(k2), *serve] if ranks == 1 else \
            [str(k2), "launch", "-n", str(ranks), "--starting-port", str(free_ports(ranks)), "--", *serve]
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (m := re.search(r"listening on http://([\d.]+):(\d+)", log.read_text(errors="replace"))):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"serve did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        self.url = f"http://{m.group(1)}:{m.group(2)}"

    def complete(self, prompt, penalty: bool) -> tuple[str, int]:
        body = {"prompt": prompt, "max_tokens": GEN, "temperature": 0}
        if penalty:
            body["repetition_penalty"] = 1.3
        req = urllib.request.Request(self.url + "/v1/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            j = json.loads(r.read())
        return j["choices"][0]["text"], j["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


TEXT = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun by the old red barn."


@pytest.mark.parametrize("structure,dtype", MODELS[:2], ids=[f"{s}-{d}" for s, d in MODELS[:2]])
def test_serve_equals_generate_with_and_without_reuse(k2, models, tmp_path, structure, dtype):
    """A text prompt (65 tokens) through /v1/completions on one process and on 2 ranks gives `generate`'s text."""
    model = models[(structure, dtype)]
    servers = [Serve(k2, model, dtype, ranks, tmp_path / f"serve-{ranks}.log") for ranks in (1, 2)]
    try:
        for tag, sampling in (("greedy", GREEDY), ("penalty", PENALTY)):
            p = run(k2, ["generate", "--model", model, "--dtype", dtype, "--prompt", TEXT, "--max-tokens", GEN, "-q",
                         *sampling])
            assert p.returncode == 0, p.stderr
            want = p.stdout.removesuffix("\n")
            for s in servers:
                text, _ = s.complete(TEXT, tag == "penalty")
                assert text == want, f"{tag}, {s.url}: serve differs from generate"
        # Prompt reuse: a prompt that extends an earlier one reuses its prefix. The reused part was cut into
        # different chunks, so here only the paths among themselves must agree (one process = 2 ranks), and
        # the prefix must have been reused on both.
        longer = TEXT + " Then it rained on the hills and the river rose."
        got = [s.complete(longer, False) for s in servers]
        assert got[0] == got[1] and got[0][1] > 0, got
    finally:
        for s in servers:
            s.stop()
