# The official `openai` Python package against a real `k2mlx serve`: chat (plain and streamed, with
# usage), legacy completions, the model list, stop sequences, tool calls (forced, then the result sent
# back) and prompt reuse (cached tokens reported, identical output with and without the cache).
from __future__ import annotations

import json

import pytest

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def delta_text(chunk) -> str:
    """Content plus reasoning of one streamed chunk (the random model may open a <think> block)."""
    if not chunk.choices:
        return ""
    d = chunk.choices[0].delta
    return (getattr(d, "reasoning_content", None) or "") + (d.content or "")


def test_models_lists_the_served_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tiny-kimi"]


def test_chat_completion(client):
    r = client.chat.completions.create(model="tiny-kimi", messages=[{"role": "user", "content": "Hello"}],
                                       max_tokens=8, temperature=0)
    assert r.object == "chat.completion" and r.model == "tiny-kimi"
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("length", "stop")
    assert r.usage.completion_tokens <= 8
    assert choice.finish_reason == "stop" or r.usage.completion_tokens == 8
    assert r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream_and_reports_usage(client):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]
    full = client.chat.completions.create(model="tiny-kimi", messages=msgs, max_tokens=12, temperature=0)
    stream = client.chat.completions.create(model="tiny-kimi", messages=msgs, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(delta_text(c) for c in chunks)
    expected = (full.choices[0].message.content or "") + (getattr(full.choices[0].message, "reasoning_content", None) or "")
    assert sorted(text) == sorted(expected) and len(text) == len(expected)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == full.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_prompt_reuse_reports_cached_tokens_and_changes_nothing(client):
    msgs = [{"role": "user", "content": "What is the capital of Sweden? Answer in one word."}]
    kw = dict(model="tiny-kimi", max_tokens=10, temperature=0.9, seed=7)
    a = client.chat.completions.create(messages=msgs, **kw)
    b = client.chat.completions.create(messages=msgs, **kw)
    assert b.usage.prompt_tokens_details.cached_tokens == b.usage.prompt_tokens - 1
    assert a.choices[0].message.content == b.choices[0].message.content
    # A follow-up turn reuses at least the whole first prompt.
    follow = msgs + [{"role": "assistant", "content": b.choices[0].message.content}, {"role": "user", "content": "Why?"}]
    c = client.chat.completions.create(messages=follow, **kw)
    assert c.usage.prompt_tokens_details.cached_tokens >= a.usage.prompt_tokens - 1
    assert c.usage.prompt_tokens > a.usage.prompt_tokens


def test_stop_sequence_cuts_the_answer(client):
    msgs = [{"role": "user", "content": "Count please"}]
    base = client.chat.completions.create(model="tiny-kimi", messages=msgs, max_tokens=24, temperature=0).choices[0]
    text = base.message.content
    assert len(text) > 6, text
    stop = text[3:6]
    cut = text[: text.index(stop)]
    for stream in (False, True):
        r = client.chat.completions.create(model="tiny-kimi", messages=msgs, max_tokens=24, temperature=0, stop=[stop],
                                           stream=stream)
        if stream:
            parts = list(r)
            got = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
            finish = [c.choices[0].finish_reason for c in parts if c.choices and c.choices[0].finish_reason]
        else:
            got, finish = r.choices[0].message.content, [r.choices[0].finish_reason]
        assert got == cut and finish == ["stop"]


def test_legacy_completions(client):
    r = client.completions.create(model="tiny-kimi", prompt="Once upon a time", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.choices[0].finish_reason in ("length", "stop")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny-kimi", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True) if c.choices)
    assert streamed == r.choices[0].text
    echo = client.completions.create(model="tiny-kimi", prompt="Once upon a time", max_tokens=3, echo=True, temperature=0)
    assert echo.choices[0].text.startswith("Once upon a time")


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(client, stream):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    kw = dict(model="tiny-kimi", tools=[WEATHER_TOOL], max_tokens=6, temperature=0,
              tool_choice={"type": "function", "function": {"name": "get_weather"}})
    if stream:
        calls: dict[int, dict] = {}
        for chunk in client.chat.completions.create(messages=msgs, stream=True, **kw):
            for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                c = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                c["id"] += tc.id or ""
                c["name"] += tc.function.name or ""
                c["arguments"] += tc.function.arguments or ""
        assert list(calls) == [0]
        call = calls[0]
    else:
        r = client.chat.completions.create(messages=msgs, **kw)
        assert r.choices[0].message.tool_calls, r
        tc = r.choices[0].message.tool_calls[0]
        call = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
        first_prompt = r.usage.prompt_tokens
    assert call["name"] == "get_weather"
    assert call["id"] == "functions.get_weather:0"
    # Send the call and its result back, as an agent would.
    follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"temperature_c": 21})},
    ]
    r2 = client.chat.completions.create(model="tiny-kimi", messages=follow, tools=[WEATHER_TOOL], max_tokens=5, temperature=0)
    assert r2.choices[0].finish_reason in ("length", "stop", "tool_calls")
    assert r2.usage.prompt_tokens_details.cached_tokens > 0
    if not stream:
        assert r2.usage.prompt_tokens > first_prompt


def test_openai_errors_surface_as_sdk_exceptions(client):
    import openai

    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert "gpt-4o" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-kimi", messages=[{"role": "user", "content": "x"}], temperature=7)
    assert e.value.body["param"] == "temperature"
