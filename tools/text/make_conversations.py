"""Deterministic chat-template test conversations: system / user / assistant / tool turns, tool
declarations with unsorted nested keys, assistant tool calls (string and object arguments), tool
results, multi-part content (text and images), reasoning_content, names, Unicode and odd whitespace."""
import random

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get the weather for a city.",
                                      "parameters": {"type": "object", "required": ["city"],
                                                     "properties": {"city": {"type": "string", "description": "City name, e.g. 北京"},
                                                                    "unit": {"enum": ["c", "f"], "type": "string"}}}}},
    {"type": "function", "function": {"parameters": {"properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "default": 10}},
                                                     "type": "object"}, "name": "search_web", "description": "Search the web \"quoted\" <html> & more"}},
    {"function": {"name": "calc", "description": "Evaluate math: 1/3 ≈ 0.333", "parameters": {"type": "object", "properties": {"expr": {"type": "string"}},
                                                                                        "additionalProperties": False}}, "type": "function"},
]
TEXTS = ["Hello!", "What's the weather in Beijing?", "请用中文回答：今天天气怎么样？", "こんにちは、元気ですか", "안녕하세요",
         "Line one\nLine two\n\n  indented\ttab", "Emoji 🎉👨‍👩‍👧 and café", "Special <|im_end|> inside text", "",
         "Code:\n```python\ndef f(x):\n    return x**2\n```", "  leading and trailing spaces  ", "Quotes ' \" and backslash \\ ok",
         "A number 3.14 and 1e-5", "{\"json\": true}", "\r\nCRLF line\r\n", "Tabs\t\tand\u00a0nbsp\u3000ideographic"]


def _tool_call(r, idx, as_string):
    tool = r.choice(TOOLS)["function"]["name"]
    args = r.choice([{"city": "Beijing"}, {"city": "東京", "unit": "c"}, {"query": "k2 \"mlx\"", "limit": 3},
                     {"expr": "2+2"}, {}, {"nested": {"b": [1, 2.5, None, True], "a": "x"}}])
    import json
    return {"id": f"functions.{tool}:{idx}", "type": "function",
            "function": {"name": tool, "arguments": json.dumps(args, ensure_ascii=False) if as_string else args}}


def conversations(n=60, seed=99, family="kimi"):
    r = random.Random(seed)
    out = []
    for k in range(n):
        msgs = []
        if r.random() < 0.6:
            msgs.append({"role": "system", "content": r.choice(["You are a helpful assistant.", "你是Kimi。", "Be terse.\nNo emoji."])})
        call_idx = 0
        for _ in range(r.randint(1, 4)):
            u = {"role": "user", "content": r.choice(TEXTS)}
            if family == "kimi" and r.random() < 0.2:
                u["content"] = [{"type": "text", "text": r.choice(TEXTS)}, {"type": "image_url", "image_url": {"url": "x.png"}},
                                {"type": "text", "text": "and this"}]
            if family == "kimi" and r.random() < 0.1:
                u["name"] = "alice"
            msgs.append(u)
            if r.random() < 0.4:
                calls = [_tool_call(r, call_idx + j, r.random() < 0.5 or family != "kimi") for j in range(r.randint(1, 2))]
                call_idx += len(calls)
                a = {"role": "assistant", "content": r.choice(["", "Let me check.", None]) if family != "kimi" else r.choice(["", "Let me check."]),
                     "tool_calls": calls}
                if family == "kimi" and r.random() < 0.5:
                    a["reasoning_content"] = "I should call a tool."
                msgs.append(a)
                for c in calls:
                    t = {"role": "tool", "tool_call_id": c["id"], "content": r.choice(["{\"temp\": 21}", "晴，25°C", "error: timeout", ""])}
                    if family == "kimi" and r.random() < 0.5:
                        t["name"] = c["function"]["name"]
                    msgs.append(t)
            if r.random() < 0.7:
                a = {"role": "assistant", "content": r.choice(TEXTS)}
                if r.random() < 0.3:
                    a["reasoning_content"] = "Thinking about " + r.choice(TEXTS)
                if family == "deepseek" and r.random() < 0.3:
                    a["content"] = "<think>hidden</think>" + a["content"]
                msgs.append(a)
        conv = {"messages": msgs, "add_generation_prompt": r.random() < 0.7}
        if r.random() < 0.5:
            tools = [dict(t) for t in r.sample(TOOLS, r.randint(1, 3))]
            conv["tools"] = tools
        if family == "deepseek":
            conv["extra"] = r.choice([{}, {"thinking": True}, {"enable_thinking": True}, {"thinking": False}])
        out.append(conv)
    return out
