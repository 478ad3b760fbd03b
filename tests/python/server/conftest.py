# Fixtures for the server tests: a tiny random Kimi-shaped checkpoint with the K2-Thinking chat template
# (built once into tests/.work/), and real `k2mlx serve` processes on free 127.0.0.1 ports, each killed at
# the end. Random weights give gibberish text: these tests check protocol behaviour, not content.
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
WORK = ROOT / "tests" / ".work"
TEMPLATE = ROOT.parent / "shared" / "data" / "templates" / "kimi-k2-thinking.jinja"
START_TIMEOUT = 60.0


def k2mlx_bin() -> Path:
    return Path(os.environ.get("K2MLX_BIN", ROOT / "build" / "apps" / "k2mlx" / "k2mlx"))


class Server:
    """One `k2mlx serve` process; stderr (the request log) goes to a file the tests can read."""

    def __init__(self, model: Path, *args: str, name: str = "server"):
        self.log_path = WORK / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        cmd = [str(k2mlx_bin()), "serve", "-m", str(model), "--port", "0", "--quiet", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            m = re.search(r"listening on http://([\d.]+):(\d+)", self.log())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"k2mlx serve did not start:\n{self.log()}")
            time.sleep(0.05)
        self.url = f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> dict:
        import json

        with urllib.request.urlopen(self.url + "/health", timeout=10) as r:
            return json.loads(r.read())

    def wait_idle(self, timeout: float) -> float:
        """Seconds until the worker is idle with an empty queue; raises after `timeout`."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            h = self.health()
            if not h["busy"] and h["queued"] == 0:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise AssertionError(f"worker still busy after {timeout} s: {self.health()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def k2mlx():
    b = k2mlx_bin()
    if not b.exists():
        pytest.skip(f"k2mlx binary not found at {b} (build it, or point K2MLX_BIN at it)")
    return b


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    out = WORK / "server-tiny-kimi"
    if not (out / "model.safetensors").exists():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", "kimi", "--out", str(out),
                        "--chat-template", str(TEMPLATE)], check=True, timeout=300)
    return out


@pytest.fixture(scope="session")
def server(k2mlx, tiny_model):
    s = Server(tiny_model, "--served-model-name", "tiny-kimi", name="server")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def strict_server(k2mlx, tiny_model):
    """Small context, small queue and an API key."""
    s = Server(tiny_model, "--served-model-name", "tiny-kimi", "--context", "256", "--queue", "2",
               "--api-key", "sekret", name="strict")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def deepseek_server(k2mlx, tiny_model):
    """The tiny model with DeepSeek-V3.1's chat template (--chat-template), thinking on by default."""
    s = Server(tiny_model, "--served-model-name", "tiny-ds", "--chat-template", str(TEMPLATE.parent / "deepseek-v3.1.jinja"),
               "--chat-template-kwargs", '{"thinking": true}', name="deepseek")
    yield s
    s.stop()


@pytest.fixture
def make_server(k2mlx, tiny_model):
    """Starts extra servers (flags as arguments; on the tiny model unless `model` is given); each is stopped
    after the test."""
    made: list[Server] = []

    def make(*args: str, name: str = "extra", model: Path | None = None) -> Server:
        made.append(Server(model or tiny_model, *args, name=name))
        return made[-1]

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def client(server):
    import openai  # pinned in scripts/requirements.txt

    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=60, max_retries=0)


def node_bin() -> str | None:
    return shutil.which("node")
