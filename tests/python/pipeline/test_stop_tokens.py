# One stop-token policy for every command (issue 13, item 12): the ids that end generation are the model's
# config.json eos ids, plus generation_config.json's, plus the tokenizer's end-of-turn markers, decided in one
# place. The test names an id the model emits mid-answer as an extra eos in generation_config.json (as a real
# release does for <|im_end|>) and checks that `generate`, a 2-rank `pipeline` and `serve` all stop right
# before it, without emitting it, while `--ignore-eos` runs through it.
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from pipeline_util import launch, run

PROMPT = "5,17,300,42,9"
MAX = 12


def _tokens(k2, model, tmp_path, *extra):
    out = tmp_path / f"ids-{time.monotonic_ns()}.json"
    p = run(k2, ["generate", "--model", model, "--dtype", "float32", "--ids", PROMPT, "--max-tokens", MAX,
                 "--ids-out", out, "-q", *extra])
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module", params=["kimi", "deepseek"])
def stopping(request, k2, tiny, tmp_path_factory):
    """(model folder whose generation_config.json adds a stop id, the greedy tokens without it, stop index)."""
    tmp = tmp_path_factory.mktemp(f"stop-{request.param}")
    free = _tokens(k2, tiny[request.param], tmp, "--ignore-eos")
    # The first id, from the third on, that did not occur before: the answer must end right before it.
    at = next(i for i in range(2, len(free)) if free[i] not in free[:i])
    model = tmp / "model"
    shutil.copytree(tiny[request.param], model)
    gen_path = model / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    eos = gen.get("eos_token_id", [])
    gen["eos_token_id"] = (eos if isinstance(eos, list) else [eos]) + [free[at]]
    gen_path.write_text(json.dumps(gen))
    return model, free, at


def test_generate_stops_before_a_generation_config_eos(k2, stopping, tmp_path):
    model, free, at = stopping
    assert _tokens(k2, model, tmp_path) == free[:at]
    assert _tokens(k2, model, tmp_path, "--ignore-eos") == free


def test_inspect_lists_the_added_stop_id(k2, stopping):
    model, free, at = stopping
    p = run(k2, ["inspect", "--model", model])
    assert p.returncode == 0, p.stderr
    line = re.search(r"stop tokens: (.*)", p.stdout)
    assert line and str(free[at]) in [s.strip() for s in line.group(1).split(",")], p.stdout


def test_pipeline_stops_where_generate_does(k2, stopping, tmp_path):
    model, free, at = stopping
    out = tmp_path / "pipe.json"
    p = launch(k2, 2, ["pipeline", "--model", model, "--dtype", "float32", "--ids", PROMPT, "--max-tokens", MAX,
                       "--ids-out", out, "-q"])
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text()) == free[:at]


def test_serve_stops_where_generate_does(k2, stopping, tmp_path):
    model, free, at = stopping
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([str(k2), "serve", "-m", str(model), "--dtype", "float32", "--port", "0", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=open(log, "wb"), stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"listening on http://([\d.]+):(\d+)", log.read_text(errors="replace"))):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        body = {"prompt": [int(t) for t in PROMPT.split(",")], "max_tokens": MAX, "temperature": 0}
        req = urllib.request.Request(f"http://{m.group(1)}:{m.group(2)}/v1/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
        assert answer["choices"][0]["finish_reason"] == "stop", answer
        assert answer["usage"]["completion_tokens"] == at, answer
    finally:
        proc.terminate()
        proc.wait(timeout=20)
