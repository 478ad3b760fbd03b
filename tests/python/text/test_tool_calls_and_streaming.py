"""Tool-call parsing of rendered Kimi / DeepSeek assistant turns (the calls the templates wrote must
come back verbatim), robustness on malformed and random output, and the streaming decoder against
tiktoken's decode on random id sequences (same text, never broken UTF-8)."""
import json
import pathlib
import random

import make_conversations
import references

TEMPLATES = pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" / "templates"


def _parse(probe, texts, *args):
    out = probe.run(["parse", *args], probe.records([t.encode() for t in texts])).decode().splitlines()
    return [json.loads(line) for line in out]


def test_kimi_tool_calls_round_trip(probe):
    env = references.chat_environment()
    tmpl = env.from_string((TEMPLATES / "kimi-k2-thinking.jinja").read_text())
    texts, expected = [], []
    for conv in make_conversations.conversations(n=80, seed=5, family="kimi"):
        for m in conv["messages"]:
            if m["role"] == "assistant" and m.get("tool_calls"):
                full = tmpl.render(messages=[m], tools=None, add_generation_prompt=False)
                body = full.split("<|im_assistant|>assistant<|im_middle|>", 1)[1].removesuffix("<|im_end|>")
                texts.append(body)
                expected.append(m)
    assert len(texts) >= 20
    for m, got in zip(expected, _parse(probe, texts)):
        assert got["content"] == m["content"]
        assert got["reasoning"] == m.get("reasoning_content", "")
        want = [(c["id"], c["function"]["name"], c["function"]["arguments"] if isinstance(c["function"]["arguments"], str)
                 else json.dumps(c["function"]["arguments"], ensure_ascii=False)) for c in m["tool_calls"]]
        assert [(c["id"], c["name"], c["arguments"]) for c in got["tool_calls"]] == want


def test_kimi_spelling_variants_and_malformed(probe):
    ok = ("pre<|tool_call_section_begin|><|tool_call_begin|> functions.a.b:3 <|tool_call_argument_begin|> {\"x\": 1} "
          "<|tool_call_end|><|tool_call_section_end|>post")
    [p] = _parse(probe, [ok])
    assert p["content"] == "prepost"
    assert p["tool_calls"] == [{"id": "functions.a.b:3", "name": "a.b", "arguments": "{\"x\": 1}", "index": 3}]
    malformed = ["x<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0 no argument marker",
                 "<|tool_calls_section_begin|>garbage<|tool_calls_section_end|>",
                 "<|tool_calls_section_begin|><|tool_call_begin|><|tool_call_argument_begin|>{}<|tool_call_end|>"]
    for text, p in zip(malformed, _parse(probe, malformed)):
        assert p["tool_calls"] == [] and p["content"] == text


def test_parser_never_crashes_on_random_output(probe):
    r = random.Random(3)
    pieces = ["<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_end|>",
              "<|tool_call_argument_begin|>", "<think>", "</think>", "functions.f:1", "{\"a\": [1]}", " ", "\n", "x", "é",
              "<｜tool▁calls▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>"]
    texts = ["".join(r.choice(pieces) for _ in range(r.randint(0, 30))) for _ in range(2000)]
    for fmt in ("kimi", "deepseek"):
        assert len(_parse(probe, texts, "--format", fmt)) == len(texts)


def test_deepseek_tool_calls_round_trip(probe):
    env = references.chat_environment()
    tmpl = env.from_string((TEMPLATES / "deepseek-v3.1.jinja").read_text())
    msg = {"role": "assistant", "content": "Sure.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"type": "function", "function": {"name": "calc", "arguments": "{\"expr\": \"1+1\"}"}}]}
    full = tmpl.render(messages=[msg], bos_token="", add_generation_prompt=False)
    [p] = _parse(probe, [full.removesuffix("<｜end▁of▁sentence｜>")], "--format", "deepseek")
    assert p["content"] == "Sure."
    assert [(c["name"], c["arguments"]) for c in p["tool_calls"]] == [
        ("get_weather", "{\"city\": \"Paris\"}"), ("calc", "{\"expr\": \"1+1\"}")]


def test_streaming_decoder_matches_tiktoken_decode(probe, kimi_model_dir, kimi_encoding):
    r = random.Random(11)
    seqs = []
    for _ in range(1500):
        n = r.randint(0, 40)
        seqs.append([r.randrange(0, 163840) if r.random() < 0.9 else r.randrange(163584, 163840) for _ in range(n)])
    text = "中文 emoji 🎉👨‍👩‍👧 café".encode()
    seqs.append(kimi_encoding.encode_ordinary(text.decode()))
    data = "".join(" ".join(map(str, s)) + "\n" for s in seqs).encode()
    streamed = probe.parse_records(probe.run(["stream", "--model", str(kimi_model_dir)], data))
    plain = probe.parse_records(probe.run(["decode", "--model", str(kimi_model_dir)], data))
    for s, a, b in zip(seqs, streamed, plain):
        ref = kimi_encoding.decode_bytes(s).decode("utf-8", "replace").encode()
        assert a == ref and b == ref
    assert streamed[-1] == text


def test_random_bytes_encode_round_trip(probe, kimi_model_dir, kimi_encoding):
    r = random.Random(12)
    docs = [bytes(r.getrandbits(8) for _ in range(r.randint(0, 400))) for _ in range(600)]
    got = probe.encode(["--model", str(kimi_model_dir)], docs)
    decoded = probe.parse_records(probe.run(["decode", "--model", str(kimi_model_dir)],
                                            "".join(" ".join(map(str, g)) + "\n" for g in got).encode()))
    for d, g, back in zip(docs, got, decoded):
        text = d.decode("utf-8", "replace")
        assert g == kimi_encoding.encode(text, allowed_special="all")
        assert back == text.encode()
