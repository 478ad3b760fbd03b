"""k2mlx's chat-template rendering against Python jinja2 (configured as transformers configures it)
rendering the published template files with the same conversations: byte-identical output."""
import json
import pathlib

import pytest

import make_conversations
import references

TEMPLATES = pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" / "templates"
CASES = {
    "kimi-k2-instruct.jinja": ("kimi", {"bos_token": "[BOS]", "eos_token": "[EOS]"}),
    "kimi-k2-thinking.jinja": ("kimi", {"bos_token": "[BOS]", "eos_token": "[EOS]"}),
    "deepseek-v3.1.jinja": ("deepseek", {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}),
}


def _reference(source, conv, specials, kimi):
    tools = conv.get("tools")
    if kimi:
        tools = references.deep_sort_dict(tools)
    try:
        return {"ok": references.chat_environment().from_string(source).render(
            messages=conv["messages"], tools=tools, documents=None,
            add_generation_prompt=conv.get("add_generation_prompt", False), **specials, **conv.get("extra", {}))}
    except Exception as e:  # noqa: BLE001 - any jinja2 failure must be a failure on our side too
        return {"error": f"{type(e).__name__}: {e}"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_templates_match_jinja2(probe, tmp_path, name):
    family, specials = CASES[name]
    source = (TEMPLATES / name).read_text()
    convs = make_conversations.conversations(n=60, seed=sum(name.encode()), family=family)
    (tmp_path / "specials.json").write_text(json.dumps(specials, ensure_ascii=False))
    args = ["render", "--template", str(TEMPLATES / name), "--specials", str(tmp_path / "specials.json")]
    if family == "kimi":
        args.append("--kimi-sort")
    lines = probe.run(args, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in convs).encode()).decode().splitlines()
    got = [json.loads(line) for line in lines]
    ok = errors = 0
    bad = []
    for i, (c, g) in enumerate(zip(convs, got)):
        ref = _reference(source, c, specials, family == "kimi")
        if "ok" in ref:
            ok += 1
            if g.get("ok") != ref["ok"]:
                bad.append((i, ref["ok"], g))
        else:
            errors += 1
            if "error" not in g:
                bad.append((i, ref["error"], g))
    print(f"{name}: {len(convs)} conversations, {ok} rendered identically checked, {errors} raise in both; "
          f"{len(bad)} differences")
    assert len(got) == len(convs)
    assert not bad, bad[:2]
    assert ok >= 50
