# The official `openai` npm package and the chat page in headless Chromium, both against a real server.
# Node packages come from scripts/install_node_deps.sh (pinned, into .deps/node); Chromium is Debian's.
from __future__ import annotations

import json
import os
import shutil
import subprocess

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WORK = ROOT / "tests" / ".work"
NODE_MODULES = ROOT / ".deps" / "node" / "node_modules"
HERE = ROOT / "tests" / "python" / "server"


@pytest.fixture(scope="module")
def node_env():
    node = shutil.which("node")
    assert node, "node is needed (Node.js 20 from the machine image)"
    subprocess.run([str(ROOT / "scripts" / "install_node_deps.sh")], check=True, timeout=600)
    return node, dict(os.environ, NODE_PATH=str(NODE_MODULES))


def run_node(node_env, script: str, *args: str, timeout: float = 120) -> dict:
    node, env = node_env
    p = subprocess.run([node, str(HERE / script), *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_openai_npm_sdk(server, node_env):
    out = run_node(node_env, "openai_node_client.cjs", server.url + "/v1")
    assert out["full"]["finish"] in ("length", "stop")
    assert out["full"]["usage"]["completion_tokens"] == out["stream"]["usage"]["completion_tokens"]
    assert out["stream"]["finish"] == out["full"]["finish"]
    assert out["stream"]["chunks"] >= 3
    assert out["stream"]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0  # same prompt twice
    assert out["tool_call"] == {"id": "functions.get_weather:0", "name": "get_weather"}
    st = out["streamed_tool_call"]
    assert (st["id"], st["name"], st["same_arguments"]) == ("functions.get_weather:0", "get_weather", True), st
    assert out["tool_result"]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert out["error"]["status"] == 404 and "nope" in out["error"]["message"]


def test_chat_page_streams_and_keeps_the_conversation(server, node_env):
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    assert os.path.exists(chromium), f"{chromium} is missing: scripts/setup.sh installs Debian's chromium"
    profile = WORK / f"chromium-profile-{os.getpid()}"
    shutil.rmtree(profile, ignore_errors=True)
    before = server.log().count("/v1/chat/completions 200 stream")
    out = run_node(node_env, "chat_page_check.cjs", server.url + "/", str(profile), timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert out["errors"] == []
    assert out["model"] == "tiny-kimi"
    assert out["bubbles"] == ["msg user", "msg assistant", "msg user", "msg assistant"]  # before the reload
    for turn in out["turns"]:
        assert turn["answer"].strip(), turn
        assert "tok/s" in turn["stats"]
    # The second turn resends the conversation, and the server reuses the first turn's prefix.
    assert "prompt tokens reused" in out["turns"][1]["stats"]
    assert not out["turns"][1]["stats"].endswith(" 0 prompt tokens reused")
    assert server.log().count("/v1/chat/completions 200 stream") == before + 2
    # Each answer has its own statistics line; a reload brings the conversation back as it was shown.
    assert len(out["metas"]) == 2 and all("tok/s" in m for m in out["metas"])
    assert out["after"] == out["before"]
    # A stopped answer is kept and says so (the server logs the client going away).
    assert out["stopped"].endswith("(stopped)"), out["stopped"]
    md = out["markdown"]
    assert "<strong>b</strong>" in md and "<code>c&lt;d&gt;</code>" in md
    assert '<pre><code class="language-py">x &lt; y</code></pre>' in md and "<ul><li>one</li><li>two</li></ul>" in md
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert out["thinking"] == {"openWhileThinking": True, "openAfterAnswer": False, "summary": "Thinking", "text": "plan"}
