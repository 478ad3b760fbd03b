# N ranks == 1 rank: greedy and seeded-sampled tokens identical, logits within float32 tolerance, on tiny
# Kimi-K2- and DeepSeek-V3-shaped models, for even and uneven splits over 2 and 3 ranks (ring backend
# on 127.0.0.1), plus the memory accounting that shows each rank loaded only its own layers, and a text
# prompt (--prompt) giving what `generate --prompt` gives.
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_util import launch, run

PROMPT = "5,17,300,42,9,1000,77,3,250,64,128,11"
GEN_TOKENS = 12
EQUIV_REL = 1e-4  # float32, same weights: max|Δ| <= 1e-4 · max|logit|

# (structure, ranks, --stages or None for the default byte-balanced split)
CASES = [
    ("kimi", 2, None),
    ("kimi", 2, "0:1,1:4"),
    ("kimi", 3, "0:2,2:3,3:4"),
    ("deepseek", 2, "0:4,4:5"),
    ("deepseek", 3, "0:1,1:3,3:5"),
]


def _ids(name) -> str:
    return "-".join(map(str, name)) if isinstance(name, tuple) else str(name)


@pytest.fixture(scope="module")
def reference(k2, tiny, tmp_path_factory):
    """Single-process engine outputs per structure: greedy ids, seeded sampled ids, all-position logits."""
    out = tmp_path_factory.mktemp("pipeline-ref")
    refs = {}
    for s, model in tiny.items():
        r = {}
        for tag, extra in (("greedy", ["--temp", "0"]), ("sampled", ["--temp", "0.9", "--top-k", "50", "--seed", "7"])):
            f = out / f"{s}-{tag}.json"
            p = run(k2, ["generate", "--model", model, "--dtype", "float32", "--ids", PROMPT, "--max-tokens", GEN_TOKENS,
                         "--ignore-eos", "--ids-out", f, "-q", *extra])
            assert p.returncode == 0, p.stderr
            r[tag] = json.loads(f.read_text())
        f = out / f"{s}-logits.npy"
        p = run(k2, ["logits", "--model", model, "--dtype", "float32", "--ids", PROMPT, "--all-positions", "--out", f, "-q"])
        assert p.returncode == 0, p.stderr
        r["logits"] = np.load(f)
        refs[s] = r
    return refs


@pytest.mark.parametrize("structure,ranks,stages", CASES, ids=[f"{s}-{n}r-{st or 'auto'}" for s, n, st in CASES])
def test_tokens_match_single_process(k2, tiny, reference, tmp_path, structure, ranks, stages):
    split = ["--stages", stages] if stages else []
    for tag, extra in (("greedy", ["--temp", "0"]), ("sampled", ["--temp", "0.9", "--top-k", "50", "--seed", "7"])):
        p = launch(k2, ranks, ["pipeline", "--model", tiny[structure], "--dtype", "float32", "--ids", PROMPT,
                               "--max-tokens", GEN_TOKENS, "--ignore-eos", "--prefill-chunk", 5, "-q",
                               "--ids-out", tmp_path / f"{tag}.{{rank}}.json", *split, *extra])
        assert p.returncode == 0, p.stderr
        for r in range(ranks):
            got = json.loads((tmp_path / f"{tag}.{r}.json").read_text())
            assert got == reference[structure][tag], f"{tag}: rank {r} of {ranks} disagrees with the single process"
        assert p.stdout.split() == [str(t) for t in reference[structure][tag]]


@pytest.mark.parametrize("structure,ranks,stages", CASES, ids=[f"{s}-{n}r-{st or 'auto'}" for s, n, st in CASES])
def test_logits_match_single_process(k2, tiny, reference, tmp_path, structure, ranks, stages):
    split = ["--stages", stages] if stages else []
    out = tmp_path / "logits.npy"
    p = launch(k2, ranks, ["pipeline", "--model", tiny[structure], "--dtype", "float32", "--ids", PROMPT, "-q",
                           "--logits-out", out, "--all-positions", "--prefill-chunk", 5, *split])
    assert p.returncode == 0, p.stderr
    got, ref = np.load(out), reference[structure]["logits"]
    assert got.shape == ref.shape
    err = np.abs(got - ref).max()
    assert err <= EQUIV_REL * np.abs(ref).max(), f"max |Δ| {err} vs max |logit| {np.abs(ref).max()}"
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_no_overlap_mode_gives_the_same_tokens(k2, tiny, reference, tmp_path):
    p = launch(k2, 2, ["pipeline", "--model", tiny["kimi"], "--dtype", "float32", "--ids", PROMPT, "--max-tokens",
                       GEN_TOKENS, "--ignore-eos", "--prefill-chunk", 3, "--no-overlap", "-q", "--stages", "0:3,3:4"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(t) for t in reference["kimi"]["greedy"]]


def test_each_rank_loads_only_its_layers(k2, tiny, tmp_path):
    p = launch(k2, 3, ["pipeline", "--model", tiny["deepseek"], "--dtype", "float32", "--ids", PROMPT, "--max-tokens", 2,
                       "-q", "--stages", "0:1,1:3,3:5", "--stats-out", tmp_path / "stats.{rank}.json"])
    assert p.returncode == 0, p.stderr
    stats = [json.loads((tmp_path / f"stats.{r}.json").read_text()) for r in range(3)]
    total = stats[0]["checkpoint_total_bytes"]
    assert [(s["first_layer"], s["last_layer"]) for s in stats] == [(0, 1), (1, 3), (3, 5)]
    assert [(s["has_embedding"], s["has_head"]) for s in stats] == [(True, False), (False, False), (False, True)]
    assert sum(s["checkpoint_range_bytes"] for s in stats) == total  # the ranges partition the checkpoint
    for s in stats:
        # What the rank bound equals the checkpoint bytes of its range (float32 in, float32 compute) ...
        assert s["weight_bytes"] == s["checkpoint_range_bytes"], s
        # ... and what MLX holds after loading is that, not the whole model.
        assert abs(s["active_memory_after_load"] - s["weight_bytes"]) <= 0.02 * s["weight_bytes"] + 65536, s
        assert s["active_memory_after_load"] < 0.75 * total, s


def test_plan_json_drives_the_split(k2, tiny, tmp_path, reference):
    plan = tmp_path / "plan.json"
    p = run(k2, ["plan", "--model", tiny["kimi"], "--node", "a:1GB", "--node", "b:2GB", "--context", 256,
                 "--usable-fraction", "1", "--json-out", plan])
    assert p.returncode == 0, p.stderr
    stages = json.loads(plan.read_text())["stages"]
    assert [s["node"] for s in stages] == ["a", "b"] and stages[0]["first"] == 0 and stages[1]["last"] == 4
    p = launch(k2, 2, ["pipeline", "--model", tiny["kimi"], "--dtype", "float32", "--ids", PROMPT, "--max-tokens",
                       GEN_TOKENS, "--ignore-eos", "-q", "--plan", plan])
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(t) for t in reference["kimi"]["greedy"]]


def test_text_prompt_matches_generate(k2, tiny, tmp_path):
    # `pipeline --prompt TEXT`: every rank encodes the text with the folder's tokenizer; rank 0 prints text.
    common = ["--model", tiny["kimi"], "--dtype", "float32", "--prompt", "Hello, world", "--max-tokens", GEN_TOKENS,
              "--ignore-eos", "--temp", "0", "-q"]
    ref = run(k2, ["generate", *common, "--ids-out", tmp_path / "ref.json"])
    assert ref.returncode == 0, ref.stderr
    p = launch(k2, 2, ["pipeline", *common, "--ids-out", tmp_path / "ids.json"])
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "ids.json").read_text()) == json.loads((tmp_path / "ref.json").read_text())
    assert p.stdout == ref.stdout and p.stdout.strip()
