# logprobs through the official `openai` package: /v1/completions with `logprobs` and `echo` scored
# against `k2mlx logits --all-positions` on the same ids (numpy's log-softmax of its float32 output),
# scoring a text without generating (max_tokens 0, as evaluation harnesses do), and /v1/chat/completions
# `logprobs` + `top_logprobs` in OpenAI's shape, streamed and not.
from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

PROMPT_IDS = [11, 305, 42, 999, 7, 256, 8, 91, 1200, 17]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="module")
def reference_logprobs(k2mlx, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("logits") / "all.npy"
    subprocess.run([str(k2mlx), "logits", "-m", str(tiny_model), "--ids", ",".join(map(str, PROMPT_IDS)), "--all-positions",
                    "-o", str(out), "--quiet"], check=True, timeout=120)
    return log_softmax(np.load(out))  # [n, vocab]


def test_echo_logprobs_equal_k2mlx_logits(client, reference_logprobs):
    r = client.completions.create(model="tiny-kimi", prompt=PROMPT_IDS, max_tokens=3, temperature=0, logprobs=5, echo=True)
    lp = r.choices[0].logprobs
    n = len(PROMPT_IDS)
    assert len(lp.tokens) == n + r.usage.completion_tokens
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    ref = reference_logprobs
    for i in range(1, n):
        want = ref[i - 1, PROMPT_IDS[i]]
        assert math.isclose(lp.token_logprobs[i], want, rel_tol=1e-5, abs_tol=1e-5), (i, lp.token_logprobs[i], want)
        # Alternatives are keyed by text, so two ids with the same text show once: each shown value is
        # one of the 5 best, and the best is there.
        top = sorted(lp.top_logprobs[i].values(), reverse=True)
        want_top = np.sort(ref[i - 1])[::-1][:5]
        assert math.isclose(top[0], want_top[0], abs_tol=1e-5)
        assert all(np.isclose(want_top, v, atol=1e-5).any() for v in top)
    # The first generated token (greedy) is the best of the last prompt position's distribution; it comes
    # from the decode path, so it agrees to float32 rounding of a different reduction order.
    first = lp.token_logprobs[n]
    assert math.isclose(first, ref[n - 1].max(), abs_tol=1e-3), (first, ref[n - 1].max())
    assert len(lp.top_logprobs[n]) <= 5 and max(lp.top_logprobs[n].values()) == pytest.approx(first, abs=1e-6)
    # Offsets are cumulative over the token texts (in bytes).
    assert lp.text_offset[0] == 0 and all(b >= a for a, b in zip(lp.text_offset, lp.text_offset[1:]))


def test_scoring_without_generating(client, reference_logprobs):
    r = client.completions.create(model="tiny-kimi", prompt=PROMPT_IDS, max_tokens=0, temperature=0, logprobs=0, echo=True)
    lp = r.choices[0].logprobs
    assert r.usage.completion_tokens == 0 and len(lp.tokens) == len(PROMPT_IDS)
    total = sum(lp.token_logprobs[1:])
    want = sum(reference_logprobs[i - 1, PROMPT_IDS[i]] for i in range(1, len(PROMPT_IDS)))
    assert math.isclose(total, want, rel_tol=1e-5)


def test_completion_logprobs_without_echo(client):
    r = client.completions.create(model="tiny-kimi", prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == r.usage.completion_tokens == len(lp.token_logprobs)
    assert all(v <= 0 for v in lp.token_logprobs)
    assert "".join(lp.tokens) == r.choices[0].text or r.choices[0].finish_reason == "stop"
    streamed = [c.choices[0].logprobs for c in client.completions.create(
        model="tiny-kimi", prompt="Once upon a time", max_tokens=5, temperature=0, logprobs=2, stream=True) if c.choices and c.choices[0].logprobs]
    assert [v for s in streamed for v in s.token_logprobs] == pytest.approx(lp.token_logprobs, abs=1e-6)


def test_chat_logprobs_shape_stream_and_not(client):
    kw = dict(model="tiny-kimi", messages=[{"role": "user", "content": "Say something"}], max_tokens=6, temperature=0,
              logprobs=True, top_logprobs=3)
    r = client.chat.completions.create(**kw)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for t in content:
        assert len(t.top_logprobs) == 3
        vals = [a.logprob for a in t.top_logprobs]
        assert vals == sorted(vals, reverse=True)
        assert t.logprob == pytest.approx(vals[0], abs=1e-6)  # greedy: the chosen token is the most likely
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token or "\ufffd" in t.token
    streamed = [x for c in client.chat.completions.create(stream=True, **kw)
                if c.choices and c.choices[0].logprobs for x in c.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 5)) for t in streamed] == [(t.token, round(t.logprob, 5)) for t in content]
    plain = client.chat.completions.create(**{k: v for k, v in kw.items() if k not in ("logprobs", "top_logprobs")})
    assert plain.choices[0].logprobs is None


def test_logprob_field_errors(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-kimi", messages=[{"role": "user", "content": "x"}], max_tokens=2, top_logprobs=2)
    assert e.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny-kimi", prompt="x", max_tokens=2, logprobs=50)
    assert e.value.body["param"] == "logprobs"
