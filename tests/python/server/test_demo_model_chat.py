# The demo model that scripts/run.sh generates carries the repository's chat template
# (tools/templates/tiny-kimi-chat.jinja), so `k2mlx serve` answers chat requests on it. The prompt the server
# builds is checked against jinja2's rendering of the same template, tokenized by HF tokenizers.
from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WORK = ROOT / "tests" / ".work"
TEMPLATE = ROOT / "tools" / "templates" / "tiny-kimi-chat.jinja"


@pytest.fixture(scope="module")
def demo_model(k2mlx):
    out = WORK / "server-demo-kimi"
    if not (out / "model.safetensors").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", "kimi", "--out", str(out),
                        "--chat-template", str(TEMPLATE)], check=True, timeout=300)
    return out


def test_demo_model_serves_chat(demo_model, make_server):
    jinja2 = pytest.importorskip("jinja2")
    tokenizers = pytest.importorskip("tokenizers")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]}, {"role": "user", "content": "And?"}]
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # transformers' settings
    text = env.from_string(TEMPLATE.read_text()).render(messages=messages, add_generation_prompt=True)
    assert text.startswith("<|im_system|>system<|im_middle|>Be brief.<|im_end|><|im_user|>user")
    want = len(tokenizers.Tokenizer.from_file(str(demo_model / "tokenizer.json")).encode(text, add_special_tokens=False).ids)

    s = make_server("--served-model-name", "demo", name="demo", model=demo_model)
    req = urllib.request.Request(s.url + "/v1/chat/completions", method="POST",
                                 data=json.dumps({"messages": messages, "max_tokens": 3}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.loads(r.read())
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["prompt_tokens"] == want
