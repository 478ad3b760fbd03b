# The official `anthropic` Python package against `k2mlx serve`'s /v1/messages: a plain message, the
# documented event sequence when streaming (and the same text as without), a tool-use round trip
# (streamed and not, checked against the OpenAI route on the same conversation), count_tokens,
# x-api-key, and malformed requests answered with 4xx in Anthropic's error shape.
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

anthropic = pytest.importorskip("anthropic", reason="the anthropic SDK is not installed (scripts/requirements.txt pins it)")

WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
OPENAI_WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                   "parameters": WEATHER["input_schema"]}}


# The SDK (2.x) no longer sends temperature itself; the server still reads it (greedy answers compare).
GREEDY = {"extra_body": {"temperature": 0}}


@pytest.fixture
def claude(server):
    return anthropic.Anthropic(base_url=server.url, api_key="unused", timeout=60, max_retries=0)


def raw(server, body, headers=None, path="/v1/messages"):
    req = urllib.request.Request(server.url + path, data=body if isinstance(body, bytes) else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_plain_message(claude):
    m = claude.messages.create(model="claude-any", max_tokens=8, system="Be brief.", **GREEDY,
                               messages=[{"role": "user", "content": "Hello"}])
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-any"
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.output_tokens <= 8 and m.usage.input_tokens > 5
    assert all(b.type in ("text", "thinking") for b in m.content)


def test_stream_event_sequence_and_same_text(claude):
    kw = dict(model="claude-any", max_tokens=12, **GREEDY,
              system=[{"type": "text", "text": "Be brief."}], messages=[{"role": "user", "content": "Tell me a story"}])
    whole = claude.messages.create(**kw)
    events = list(claude.messages.create(stream=True, **kw))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    # Blocks open, take deltas and close in order, one at a time.
    open_index = None
    text = {"text": "", "thinking": ""}
    for e in events[1:-2]:
        if e.type == "content_block_start":
            assert open_index is None
            open_index = e.index
            kind = e.content_block.type
        elif e.type == "content_block_delta":
            assert e.index == open_index
            text[kind] += e.delta.text if e.delta.type == "text_delta" else e.delta.thinking
        elif e.type == "content_block_stop":
            assert e.index == open_index
            open_index = None
    assert open_index is None
    want = {"text": "".join(b.text for b in whole.content if b.type == "text"),
            "thinking": "".join(b.thinking for b in whole.content if b.type == "thinking")}
    assert text == want
    assert events[-2].delta.stop_reason == whole.stop_reason
    assert events[-2].usage.output_tokens == whole.usage.output_tokens


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_round_trip(claude, client, stream):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    kw = dict(model="claude-any", max_tokens=10, tools=[WEATHER], messages=msgs, **GREEDY,
              tool_choice={"type": "tool", "name": "get_weather"})
    # The OpenAI route on the same conversation gives the reference call.
    ref = client.chat.completions.create(model="tiny-kimi", messages=msgs, tools=[OPENAI_WEATHER], max_tokens=10, temperature=0,
                                         tool_choice={"type": "function", "function": {"name": "get_weather"}})
    ref_call = ref.choices[0].message.tool_calls[0]
    if stream:
        tool_id = tool_name = None
        partial = ""
        stop = None
        for e in claude.messages.create(stream=True, **kw):
            if e.type == "content_block_start" and e.content_block.type == "tool_use":
                tool_id, tool_name = e.content_block.id, e.content_block.name
            elif e.type == "content_block_delta" and e.delta.type == "input_json_delta":
                partial += e.delta.partial_json
            elif e.type == "message_delta":
                stop = e.delta.stop_reason
        assert partial == ref_call.function.arguments
    else:
        m = claude.messages.create(**kw)
        [use] = [b for b in m.content if b.type == "tool_use"]
        tool_id, tool_name, stop = use.id, use.name, m.stop_reason
        assert isinstance(use.input, dict)
    assert (tool_id, tool_name) == (ref_call.id, "get_weather")
    assert stop in ("tool_use", "max_tokens")
    # The agent runs the tool and sends the result back.
    follow = msgs + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "21 C, sunny"}]},
    ]
    m2 = claude.messages.create(model="claude-any", max_tokens=5, tools=[WEATHER], messages=follow, **GREEDY)
    assert m2.stop_reason in ("end_turn", "max_tokens", "tool_use")
    # Both APIs render the conversation alike.
    n = claude.messages.count_tokens(model="claude-any", tools=[WEATHER], messages=follow).input_tokens
    openai_follow = msgs + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": tool_id, "type": "function",
                                                               "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": tool_id, "content": "21 C, sunny"}]
    r = client.chat.completions.create(model="tiny-kimi", messages=openai_follow, tools=[OPENAI_WEATHER], max_tokens=1)
    assert n == r.usage.prompt_tokens


def test_thinking_block_round_trip_renders(claude):
    msgs = [{"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "Greet back.", "signature": ""},
                                              {"type": "text", "text": "Hello!"}]},
            {"role": "user", "content": "Again"}]
    m = claude.messages.create(model="claude-any", max_tokens=4, messages=msgs, **GREEDY,
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert m.usage.input_tokens > 10


@pytest.mark.parametrize("body,param_hint", [
    ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "m", "max_tokens": 4, "messages": []}, "messages"),
    ({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "image"),
    ({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}], "temperature": 1.5}, "temperature"),
    ({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tools"),
])
def test_malformed_requests_get_anthropic_errors(server, claude, body, param_hint):
    status, err = raw(server, body)
    assert status == 400
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert param_hint in err["error"]["message"]
    if "max_tokens" in body:  # (the SDK itself insists on max_tokens, and sends temperature only as extra_body)
        sdk_body = {k: v for k, v in body.items() if k != "temperature"}
        with pytest.raises(anthropic.BadRequestError) as e:
            claude.messages.create(**sdk_body, extra_body={"temperature": body["temperature"]} if "temperature" in body else None)
        assert e.value.body["error"]["type"] == "invalid_request_error"


def test_broken_json_gets_anthropic_error(server):
    status, err = raw(server, b"{not json")
    assert status == 400 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error"


def test_x_api_key(strict_server):
    ok = anthropic.Anthropic(base_url=strict_server.url, api_key="sekret", timeout=60, max_retries=0)
    m = ok.messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert m.type == "message"
    wrong = anthropic.Anthropic(base_url=strict_server.url, api_key="nope", timeout=60, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        wrong.messages.create(model="m", max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    status, _ = raw(strict_server, {"messages": [{"role": "user", "content": "Hi"}]}, path="/apply-template")
    assert status == 401  # the rendering route is behind the key as well
    status, body = raw(strict_server, {"messages": [{"role": "user", "content": "Hi"}]}, {"x-api-key": "sekret"}, path="/apply-template")
    assert status == 200 and body["prompt"].endswith("<|im_assistant|>assistant<|im_middle|>")
