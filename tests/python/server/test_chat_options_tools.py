# Chat-template options and tool calling through the official `openai` package against `k2mlx serve`:
# the rendered prompt (llama.cpp's /apply-template) equals what transformers' render_jinja_template makes
# of the same request with jinja2; --chat-template / --chat-template-kwargs; reasoning_content from an
# open <think> block; tool_choice required / none / named in Kimi-K2's and DeepSeek-V3.1's formats; and
# streamed tool-call deltas that reassemble to the non-streamed call.
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[4] / "shared" / "data" / "templates"
KIMI_THINKING = TEMPLATES / "kimi-k2-thinking.jinja"
DEEPSEEK = TEMPLATES / "deepseek-v3.1.jinja"
SPECIALS = {"bos_token": "[BOS]", "eos_token": "[EOS]"}  # the tiny model's tokenizer_config.json

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
]


def post(server, path: str, body: dict) -> dict:
    req = urllib.request.Request(server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def reference(template, messages, *, add_generation_prompt=True, continue_final_message=False, tools=None, **kwargs) -> str:
    """The prompt transformers renders (jinja2, its own environment and continue_final_message rule)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template.read_text(),
                                        add_generation_prompt=add_generation_prompt,
                                        continue_final_message=continue_final_message, **SPECIALS, **kwargs)
    return rendered[0]


CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
                {"role": "assistant", "content": "Blue. "}, {"role": "user", "content": "Another one"},
                {"role": "assistant", "content": "The next colour is "}]


@pytest.mark.parametrize("options", [
    {},
    {"add_generation_prompt": False},
    {"continue_final_message": True, "add_generation_prompt": False},
    {"continue_final_message": True},
])
def test_template_options_render_as_transformers_does(server, options):
    msgs = CONVERSATION if options.get("continue_final_message") else CONVERSATION[:4]
    got = post(server, "/apply-template", {"messages": msgs, **options})["prompt"]
    want = reference(KIMI_THINKING, msgs, add_generation_prompt=options.get("add_generation_prompt", not options.get("continue_final_message", False)),
                     continue_final_message=options.get("continue_final_message", False))
    assert got == want
    if options.get("continue_final_message"):
        assert got.endswith("The next colour is ")


def test_continue_with_generation_prompt_is_refused(client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-kimi", messages=CONVERSATION, max_tokens=2,
                                       extra_body={"continue_final_message": True, "add_generation_prompt": True})
    assert e.value.body["param"] == "continue_final_message"


@pytest.mark.parametrize("kwargs", [None, {"thinking": False}, {"thinking": True, "enable_thinking": False}])
def test_chat_template_file_and_kwargs(deepseek_server, kwargs):
    msgs = CONVERSATION[:4]
    body = {"messages": msgs}
    if kwargs is not None:
        body["chat_template_kwargs"] = kwargs
    got = post(deepseek_server, "/apply-template", body)["prompt"]
    want = reference(DEEPSEEK, msgs, **({"thinking": True} | (kwargs or {})))
    assert got == want
    assert got.endswith("<think>" if (kwargs or {}).get("thinking", True) else "</think>")


def test_reasoning_content_from_open_think_block(deepseek_server):
    import openai

    c = openai.OpenAI(base_url=deepseek_server.url + "/v1", api_key="x", timeout=60, max_retries=0)
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    r = c.chat.completions.create(model="tiny-ds", messages=msgs, max_tokens=10, temperature=0)
    m = r.choices[0].message
    reasoning = getattr(m, "reasoning_content", None) or ""
    assert reasoning, m  # the prompt opened <think>: the answer starts as reasoning
    assert "<think>" not in (m.content or "")
    streamed = {"reasoning": "", "content": ""}
    for chunk in c.chat.completions.create(model="tiny-ds", messages=msgs, max_tokens=10, temperature=0, stream=True):
        if chunk.choices:
            d = chunk.choices[0].delta
            streamed["reasoning"] += getattr(d, "reasoning_content", None) or ""
            streamed["content"] += d.content or ""
    assert streamed == {"reasoning": reasoning, "content": m.content or ""}
    # Kept inline on request: the same text, all in content.
    inline = c.chat.completions.create(model="tiny-ds", messages=msgs, max_tokens=10, temperature=0,
                                       extra_body={"separate_reasoning": False}).choices[0].message
    assert getattr(inline, "reasoning_content", None) is None
    assert inline.content.startswith(reasoning)
    # Thinking off (request kwargs over the server default): nothing is reasoning.
    off = c.chat.completions.create(model="tiny-ds", messages=msgs, max_tokens=6, temperature=0,
                                    extra_body={"chat_template_kwargs": {"thinking": False}}).choices[0].message
    assert not getattr(off, "reasoning_content", None)


def test_reasoning_content_with_kimi_thinking_template(client):
    # The assistant turn is continued from an opened <think>: Kimi-K2-Thinking's answer starts in thinking.
    msgs = [{"role": "user", "content": "Plan a trip."}, {"role": "assistant", "content": "<think>"}]
    r = client.chat.completions.create(model="tiny-kimi", messages=msgs, max_tokens=8, temperature=0,
                                       extra_body={"continue_final_message": True})
    assert getattr(r.choices[0].message, "reasoning_content", None)


def collect_stream(stream):
    calls: dict[int, dict] = {}
    firsts: dict[int, object] = {}
    fragments = 0
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for tc in chunk.choices[0].delta.tool_calls or []:
            if tc.index not in calls:
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments or ""}
                firsts[tc.index] = tc
            else:
                assert tc.id is None and tc.function.name is None  # only the first delta names the call
                calls[tc.index]["arguments"] += tc.function.arguments or ""
                fragments += 1
    return [calls[i] for i in sorted(calls)], fragments, finish


def as_dicts(message):
    return [{"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in message.tool_calls or []]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_always_calls_a_declared_tool(client, seed):
    msgs = [{"role": "user", "content": f"Question number {seed}: what now?"}]
    kw = dict(model="tiny-kimi", messages=msgs, tools=TOOLS, tool_choice="required", max_tokens=40, temperature=1.0, seed=seed)
    calls = as_dicts(client.chat.completions.create(**kw).choices[0].message)
    assert len(calls) >= 1 and calls[0]["name"] in ("get_weather", "get_time")
    assert calls[0]["id"] == f"functions.{calls[0]['name']}:0"
    streamed, _, _ = collect_stream(client.chat.completions.create(stream=True, **kw))
    assert streamed == calls


def test_streamed_tool_call_reassembles_to_the_non_streamed_one(client):
    msgs = [{"role": "user", "content": "Weather in Oslo?"}]
    kw = dict(model="tiny-kimi", messages=msgs, tools=TOOLS, max_tokens=24, temperature=0,
              tool_choice={"type": "function", "function": {"name": "get_time"}})
    whole = client.chat.completions.create(**kw).choices[0]
    calls = as_dicts(whole.message)
    assert [c["name"] for c in calls][:1] == ["get_time"]
    streamed, fragments, finish = collect_stream(client.chat.completions.create(stream=True, **kw))
    assert streamed == calls and finish == whole.finish_reason
    assert len(calls[0]["arguments"]) == 0 or fragments >= 1  # arguments came after the naming delta
    # The SDK's own stream helper reassembles the deltas to the same call.
    # (Its final completion refuses answers cut by the token limit, so its running snapshot is read.)
    with client.chat.completions.stream(**kw) as helper:
        for _ in helper:
            pass
        snapshot = helper.current_completion_snapshot
    assert as_dicts(snapshot.choices[0].message) == calls


def test_tool_choice_none_declares_and_calls_nothing(server, client):
    msgs = [{"role": "user", "content": "Weather?"}]
    assert "tool_declare" not in post(server, "/apply-template", {"messages": msgs, "tools": TOOLS, "tool_choice": "none"})["prompt"]
    assert "tool_declare" in post(server, "/apply-template", {"messages": msgs, "tools": TOOLS})["prompt"]
    r = client.chat.completions.create(model="tiny-kimi", messages=msgs, tools=TOOLS, tool_choice="none", max_tokens=6, temperature=0)
    assert not r.choices[0].message.tool_calls


def test_deepseek_format_forced_call(deepseek_server):
    import openai

    c = openai.OpenAI(base_url=deepseek_server.url + "/v1", api_key="x", timeout=60, max_retries=0)
    msgs = [{"role": "user", "content": "Weather in Rome?"}]
    prompt = post(deepseek_server, "/apply-template", {"messages": msgs, "tools": TOOLS[:1], "tool_choice": "required"})["prompt"]
    assert prompt.endswith("<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>")
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = c.chat.completions.create(model="tiny-ds", messages=msgs, tools=TOOLS[:1], tool_choice=choice, max_tokens=8, temperature=0)
        calls = as_dicts(r.choices[0].message)
        assert [(x["id"], x["name"]) for x in calls[:1]] == [("call_0", "get_weather")]
    r = c.chat.completions.create(model="tiny-ds", messages=msgs, tools=TOOLS, tool_choice="required", max_tokens=40, temperature=0)
    assert as_dicts(r.choices[0].message)[0]["name"] in ("get_weather", "get_time")
