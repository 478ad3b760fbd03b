# A 2-rank pipeline job serving through rank 0 (`k2mlx launch -n 2 -- serve ...`) against a single-process
# `k2mlx serve` on the same float32 tiny model: the official `openai` client gets the same text (plain and
# streamed, temperature 0), a follow-up turn reuses the KV cache on both ranks and still matches, a
# client that disconnects cancels generation on every rank, and a killed rank 1 ends the job, named.
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT.parent / "shared" / "data" / "templates" / "kimi-k2-instruct.jinja"
START_TIMEOUT = 60.0
LOST_WITHIN = 30.0
MODEL = "tiny-pipe"


def ring_ports(n: int) -> int:
    """First of n consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


class Job:
    """`k2mlx serve` (ranks=1) or `k2mlx launch -n N -- serve` on a free HTTP port; stderr goes to a file."""

    def __init__(self, binary: Path, model: Path, log: Path, ranks: int = 1, extra: tuple = ()):
        serve = ["serve", "-m", str(model), "--port", "0", "--dtype", "float32", "--served-model-name", MODEL, *extra]
        cmd = [str(binary), *serve] if ranks == 1 else \
            [str(binary), "launch", "-n", str(ranks), "--starting-port", str(ring_ports(ranks)), "--", *serve]
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            m = re.search(r"listening on http://([\d.]+):(\d+)", self.log())
            if m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{' '.join(cmd)} did not start:\n{self.log()}")
            time.sleep(0.05)
        self.url = f"http://{m.group(1)}:{m.group(2)}"
        with urllib.request.urlopen(self.url + "/health", timeout=10) as r:
            assert r.status == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", timeout=60, max_retries=0)

    def ranks(self) -> dict[int, int]:
        """{MLX_RANK: pid} of a launcher's children."""
        found = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) != self.proc.pid:
                    continue
                env = (d / "environ").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            for e in env:
                if e.startswith(b"MLX_RANK="):
                    found[int(e.split(b"=", 1)[1])] = int(d.name)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline-serve") / "tiny-kimi-f32"
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", "kimi", "--out", str(out),
                    "--dtype", "float32", "--chat-template", str(TEMPLATE)], check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def jobs(k2mlx, model, tmp_path_factory):
    logs = tmp_path_factory.mktemp("pipeline-serve-logs")
    single = Job(k2mlx, model, logs / "single.log")
    try:
        pipe = Job(k2mlx, model, logs / "pipeline.log", ranks=2)
    except Exception:
        single.stop()
        raise
    yield single, pipe
    pipe.stop()
    single.stop()
    assert pipe.proc.returncode is not None and single.proc.returncode is not None


def chat(job: Job, messages: list, max_tokens: int, stream: bool = False) -> tuple[str, int, str]:
    """(text, cached prompt tokens, finish reason) of one temperature-0 chat completion."""
    c = job.client()
    if not stream:
        r = c.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0)
        m = r.choices[0].message
        text = (getattr(m, "reasoning_content", None) or "") + (m.content or "")
        return text, r.usage.prompt_tokens_details.cached_tokens, r.choices[0].finish_reason
    text, finish, cached = "", None, -1
    for ch in c.chat.completions.create(model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0,
                                        stream=True, stream_options={"include_usage": True}):
        if ch.choices:
            d = ch.choices[0].delta
            text += (getattr(d, "reasoning_content", None) or "") + (d.content or "")
            finish = ch.choices[0].finish_reason or finish
        if ch.usage:
            cached = ch.usage.prompt_tokens_details.cached_tokens
    return text, cached, finish


def assert_same(single: Job, pipe: Job, messages: list, max_tokens: int) -> None:
    want, _, want_finish = chat(single, messages, max_tokens)
    got, _, finish = chat(pipe, messages, max_tokens)
    assert (got, finish) == (want, want_finish)


def test_pipeline_serves_the_same_text_and_reuses_prompts(jobs):
    single, pipe = jobs
    first = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three colours."}]
    want, _, want_finish = chat(single, first, 24)
    assert want
    got, cached, finish = chat(pipe, first, 24)
    assert (got, finish) == (want, want_finish)
    # The same request streamed: the prompt minus its last token comes from the cache now.
    got, cached, finish = chat(pipe, first, 24, stream=True)
    assert (got, finish) == (want, want_finish) and cached > 0
    # A follow-up turn extends the conversation: its prefix is reused on both ranks.
    follow = first + [{"role": "assistant", "content": want}, {"role": "user", "content": "And three more?"}]
    want2, want2_cached, _ = chat(single, follow, 20, stream=True)
    got2, got2_cached, _ = chat(pipe, follow, 20, stream=True)
    assert got2 == want2
    assert got2_cached > 0 and want2_cached > 0
    # Back to an unrelated prompt: the caches are trimmed to the common prefix and stay in step.
    other = [{"role": "user", "content": "Count to five."}]
    assert_same(single, pipe, other, 16)
    log = pipe.log()
    assert "cached 0)" in log and re.search(r"cached [1-9]\d*\)", log), log[-2000:]


def test_sampling_parameters_reach_the_last_rank(jobs):
    # Seeded sampling with every filter and the repetition penalty, on a follow-up turn (prompt reuse):
    # the last rank samples with rank 0's parameters and the same penalty window as one process.
    single, pipe = jobs
    params = dict(model=MODEL, max_tokens=20, temperature=0.9, top_p=0.95, seed=1234,
                  extra_body={"top_k": 40, "repetition_penalty": 1.3, "min_p": 0.01})
    first = [{"role": "user", "content": "Tell me a story about a fox."}]
    outs = []
    for job in (single, pipe):
        a = job.client().chat.completions.create(messages=first, **params).choices[0].message.content or ""
        follow = first + [{"role": "assistant", "content": a}, {"role": "user", "content": "Go on."}]
        r = job.client().chat.completions.create(messages=follow, **params)
        outs.append((a, r.choices[0].message.content, r.usage.prompt_tokens_details.cached_tokens > 0))
    assert outs[0] == outs[1]
    assert outs[1][2]


def test_disconnect_cancels_on_every_rank(jobs):
    single, pipe = jobs
    before = pipe.log().count("client disconnected")
    host, port = pipe.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    body = ('{"model": "%s", "messages": [{"role": "user", "content": "Write forever"}], "max_tokens": 20000, '
            '"stream": true, "temperature": 0}' % MODEL).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while len(got) < 1500:
        chunk = s.recv(4096)
        assert chunk, "the server closed the stream early"
        got += chunk
    s.close()
    deadline = time.monotonic() + 10
    while pipe.log().count("client disconnected") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipe.log().count("client disconnected") == before + 1, pipe.log()[-2000:]
    # The ranks are still in step and free (20000 tokens would take minutes): the next request gives the
    # single-process answer, quickly.
    t0 = time.monotonic()
    assert_same(single, pipe, [{"role": "user", "content": "Hello"}], 12)
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("busy", [False, True])
def test_killed_rank_1_ends_the_job_and_is_named(k2mlx, model, tmp_path, busy):
    job = Job(k2mlx, model, tmp_path / "job.log", ranks=2)
    try:
        ranks = job.ranks()
        assert sorted(ranks) == [0, 1], ranks
        if busy:  # kill it while a streamed request is generating
            stream = job.client().chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Write forever"}], max_tokens=20000, temperature=0,
                stream=True)
            for i, _ in enumerate(stream):
                if i == 5:
                    break
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.monotonic()
        try:
            rc = job.proc.wait(timeout=LOST_WITHIN)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the launcher still runs {LOST_WITHIN} s after rank 1 was killed:\n{job.log()[-2000:]}")
        assert time.monotonic() - t0 < LOST_WITHIN
        assert rc != 0
        log = job.log()
        assert "lost rank 1 of 2" in log and "signal 9" in log, log[-2000:]
        for pid in ranks.values():
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    finally:
        job.stop()


def test_concurrent_requests_through_the_pipeline_equal_one_process(jobs):
    # Several sequences in flight on every rank (one KV cache per slot), decoded in batched steps.
    import json as _json
    import threading
    from concurrent.futures import ThreadPoolExecutor

    single, pipe = jobs
    convs = [[{"role": "user", "content": f"Say something about {w}"}] for w in ("cats", "the sea", "rain", "Paris", "3")]
    want = [chat(single, m, 10)[0::2] for m in convs]
    most, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            with urllib.request.urlopen(pipe.url + "/health", timeout=10) as r:
                most[0] = max(most[0], _json.loads(r.read()).get("running", 0))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(len(convs)) as ex:
        got = list(ex.map(lambda m: chat(pipe, m, 10, stream=True)[0::2], convs))
    stop.set()
    watcher.join(5)
    assert most[0] >= 2, "the requests never ran together through the pipeline"
    assert got == want
