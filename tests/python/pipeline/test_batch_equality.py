# Continuous batching gives every sequence what it gets alone: B = 1..8 sequences generated together (different
# prompt lengths, token limits, a stop id, seeded sampling, one cancelled part-way, more sequences than places so
# that some are admitted while others decode) equal, each, the same job run by itself (`generate --ids`, float32),
# in one process and through 2- and 3-rank pipelines. Also: a prompt that extends a finished one reuses its cache.
from __future__ import annotations

import json

import pytest

from pipeline_util import launch, run

BASE = [5, 17, 300, 42, 9, 1000, 77, 3, 250, 64, 128, 11, 808, 21, 4, 99, 123, 456, 7, 31, 2, 640, 512, 33, 8]


def _jobs():
    """Eight jobs of different shapes; (job, solo-args) pairs."""
    jobs = []
    for i in range(8):
        n = [1, 3, 25, 7, 12, 18, 5, 22][i]
        ids = [(t * (i + 3) + i) % 1000 + 1 for t in BASE][:n]
        job = {"ids": ids, "max_tokens": [6, 9, 12, 4, 10, 8, 11, 7][i]}
        if i == 4:
            job.update({"temperature": 0.9, "top_k": 50, "seed": 11})
        if i == 6:
            job.update({"temperature": 0.7, "seed": 3})
        jobs.append(job)
    return jobs


def _solo(k2, model, job, tmp_path, tag):
    out = tmp_path / f"solo-{tag}.json"
    args = ["generate", "--model", model, "--dtype", "float32", "--ids", ",".join(map(str, job["ids"])),
            "--max-tokens", job["max_tokens"], "--ignore-eos", "--ids-out", out, "-q",
            "--temp", job.get("temperature", 0), "--top-k", job.get("top_k", 0), "--seed", job.get("seed", 0)]
    p = run(k2, args)
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def cases(k2, tiny, tmp_path_factory):
    """Per structure: the jobs (with a stop id and a cancellation added) and what each gives alone."""
    tmp = tmp_path_factory.mktemp("batch-solo")
    out = {}
    for structure, model in tiny.items():
        jobs = _jobs()
        solo = [_solo(k2, model, j, tmp, f"{structure}-{i}") for i, j in enumerate(jobs)]
        # Job 2 stops at the id it would emit fourth (not emitted); job 5 is cancelled after 3 tokens.
        stop = solo[2][3]
        jobs[2]["stop_tokens"] = [stop]
        expect = [dict(tokens=s, finish_reason="length") for s in solo]
        expect[2] = dict(tokens=solo[2][: solo[2].index(stop)], finish_reason="stop")
        jobs[5]["cancel_after"] = 3
        expect[5] = dict(tokens=solo[5][:3], finish_reason="cancelled")
        out[structure] = (jobs, expect)
    return out


def _write(path, jobs):
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return path


def _check(got_path, expect):
    got = [json.loads(line) for line in got_path.read_text().splitlines()]
    assert len(got) == len(expect)
    for i, (g, e) in enumerate(zip(got, expect)):
        assert "error" not in g, g
        assert (g["tokens"], g["finish_reason"]) == (e["tokens"], e["finish_reason"]), f"job {i}: {g} != alone {e}"


@pytest.mark.parametrize("batch", range(1, 9))
def test_batch_of_b_equals_each_alone(k2, tiny, cases, tmp_path, batch):
    jobs, expect = cases["kimi"]
    out = tmp_path / "out.jsonl"
    p = run(k2, ["generate", "--model", tiny["kimi"], "--dtype", "float32", "--batch", _write(tmp_path / "in.jsonl", jobs[:batch]),
                 "--parallel", batch, "--ignore-eos", "--batch-out", out, "-q"])
    assert p.returncode == 0, p.stderr
    _check(out, expect[:batch])


def test_more_jobs_than_places_are_admitted_while_others_decode(k2, tiny, cases, tmp_path):
    jobs, expect = cases["deepseek"]
    out = tmp_path / "out.jsonl"
    p = run(k2, ["generate", "--model", tiny["deepseek"], "--dtype", "float32", "--batch", _write(tmp_path / "in.jsonl", jobs),
                 "--parallel", 3, "--ignore-eos", "--batch-out", out, "-q", "--prefill-chunk", 4])
    assert p.returncode == 0, p.stderr
    _check(out, expect)


def test_step_token_budget_cuts_prompts_between_steps_with_the_same_tokens(k2, tiny, cases, tmp_path):
    # 5 tokens per step shared with up to 7 decode rows: the long prompts are cut into pieces of 1 to 4 tokens,
    # several prompts share a step, and every sequence still gets what it gets alone.
    jobs, expect = cases["kimi"]
    out = tmp_path / "out.jsonl"
    p = run(k2, ["generate", "--model", tiny["kimi"], "--dtype", "float32", "--batch", _write(tmp_path / "in.jsonl", jobs),
                 "--parallel", 8, "--step-tokens", 5, "--ignore-eos", "--batch-out", out, "-q"])
    assert p.returncode == 0, p.stderr
    _check(out, expect)
    bad = run(k2, ["generate", "--model", tiny["kimi"], "--batch", tmp_path / "in.jsonl", "--step-tokens", -1])
    assert bad.returncode == 2 and "--step-tokens" in bad.stderr


@pytest.mark.parametrize("structure,ranks,stages", [("kimi", 2, "0:1,1:4"), ("deepseek", 3, "0:2,2:3,3:5")])
def test_pipeline_batch_equals_each_alone(k2, tiny, cases, tmp_path, structure, ranks, stages):
    jobs, expect = cases[structure]
    out = tmp_path / "out.jsonl"
    p = launch(k2, ranks, ["pipeline", "--model", tiny[structure], "--dtype", "float32",
                           "--batch", _write(tmp_path / "in.jsonl", jobs), "--parallel", 4, "--ignore-eos",
                           "--batch-out", out, "-q", "--stages", stages, "--prefill-chunk", 5])
    assert p.returncode == 0, p.stderr
    _check(out, expect)


def test_prompt_extending_a_finished_one_reuses_its_cache(k2, tiny, tmp_path):
    first = {"ids": BASE[:20], "max_tokens": 5}
    second = {"ids": BASE, "max_tokens": 6}
    out = tmp_path / "out.jsonl"
    p = run(k2, ["generate", "--model", tiny["kimi"], "--dtype", "float32", "--batch", _write(tmp_path / "in.jsonl", [first, second]),
                 "--parallel", 1, "--ignore-eos", "--prompt-cache-mib", 64, "--batch-out", out, "-q"])
    assert p.returncode == 0, p.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert got[0]["cached_tokens"] == 0 and got[1]["cached_tokens"] == 20
    assert got[1]["tokens"] == _solo(k2, tiny["kimi"], second, tmp_path, "second")
