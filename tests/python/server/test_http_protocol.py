# Raw HTTP against a real `k2mlx serve`: curl's view of the SSE stream, the malformed-request corpus
# (each gets the right status and an OpenAI error body, and the server keeps serving), API keys,
# 16 concurrent clients with a bounded queue, and clients that disconnect mid-generation.
from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello"}]


def post(url: str, path: str, body, headers: dict | None = None, timeout: float = 60):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), payload


def get(url: str, path: str, headers: dict | None = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), payload


def test_curl_sees_openai_sse_format(server):
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test"
    body = json.dumps({"messages": HELLO, "max_tokens": 6, "stream": True, "temperature": 0})
    out = subprocess.run([curl, "-sS", "-N", "--max-time", "60", "-H", "Content-Type: application/json", "-d", body,
                          server.url + CHAT], capture_output=True, check=True, timeout=90).stdout.decode()
    assert out.endswith("data: [DONE]\n\n"), out[-200:]
    events = out.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] in ("length", "stop")
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert "usage" not in chunks[0]  # only with stream_options.include_usage


MALFORMED = [
    # (path, body, status, param or None, words the message must contain)
    (CHAT, b"{not json", 400, None, "not valid JSON"),
    (CHAT, b"[1, 2]", 400, None, "must be a JSON object"),
    (CHAT, {"max_tokens": 3}, 400, "messages", "required"),
    (CHAT, {"messages": "hi"}, 400, "messages", "must be an array"),
    (CHAT, {"messages": []}, 400, "messages", "at least one"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "wizard"),
    (CHAT, {"messages": [{"role": "user"}]}, 400, "messages[0].content", "required"),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content", "got an integer"),
    (CHAT, {"messages": HELLO, "temperature": "hot"}, 400, "temperature", "must be a number"),
    (CHAT, {"messages": HELLO, "temperature": 9}, 400, "temperature", "between 0 and 2"),
    (CHAT, {"messages": HELLO, "top_p": 0}, 400, "top_p", "greater than 0"),
    (CHAT, {"messages": HELLO, "max_tokens": "10"}, 400, "max_tokens", "must be an integer"),
    (CHAT, {"messages": HELLO, "max_tokens": 0}, 400, "max_tokens", "at least 1"),
    (CHAT, {"messages": HELLO, "n": 2}, 400, "n", "n=1"),
    (CHAT, {"messages": HELLO, "stream": "yes"}, 400, "stream", "must be a boolean"),
    (CHAT, {"messages": HELLO, "stream_options": {"include_usage": True}}, 400, "stream_options", "stream"),
    (CHAT, {"messages": HELLO, "stop": 3}, 400, "stop", "string"),
    (CHAT, {"messages": HELLO, "seed": 1.5}, 400, "seed", "integer"),
    (CHAT, {"messages": HELLO, "logprobs": 3}, 400, "logprobs", "must be a boolean"),
    (CHAT, {"messages": HELLO, "top_logprobs": 21, "logprobs": True}, 400, "top_logprobs", "at most 20"),
    (CHAT, {"messages": HELLO, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": {"type": "function", "function": {"name": "g"}}}, 400, "tool_choice", "'g'"),
    (CHAT, {"messages": HELLO, "tool_choice": "required"}, 400, "tool_choice", "tools"),
    (CHAT, {"messages": HELLO, "model": "gpt-4o"}, 404, "model", "gpt-4o"),
    (CHAT, {"messages": HELLO, "max_tokens": 10_000_000}, 400, "max_tokens", "maximum context length"),
    ("/v1/completions", {"max_tokens": 3}, 400, "prompt", "required"),
    ("/v1/completions", {"prompt": [99999999]}, 400, "prompt", "outside the vocabulary"),
    ("/v1/completions", {"prompt": ["a", "b"]}, 400, "prompt", "batch"),
    ("/v1/nothing", {}, 404, None, "no route"),
]


@pytest.mark.parametrize("path,body,status,param,words", MALFORMED, ids=[f"{i}" for i in range(len(MALFORMED))])
def test_malformed_requests_get_clear_errors(server, path, body, status, param, words):
    code, headers, payload = post(server.url, path, body)
    assert code == status, payload
    assert headers["Content-Type"].startswith("application/json")
    err = json.loads(payload)["error"]
    assert words in err["message"], err
    assert err["param"] == param
    assert set(err) == {"message", "type", "param", "code"}
    # ...and the server keeps serving.
    ok, _, _ = post(server.url, CHAT, {"messages": HELLO, "max_tokens": 1})
    assert ok == 200


def test_prompt_longer_than_context(strict_server):
    auth = {"Authorization": "Bearer sekret"}
    long = [{"role": "user", "content": "word " * 400}]
    code, _, payload = post(strict_server.url, CHAT, {"messages": long, "max_tokens": 4}, auth)
    assert code == 400
    err = json.loads(payload)["error"]
    assert err["code"] == "context_length_exceeded" and "256" in err["message"]
    code, _, payload = post(strict_server.url, CHAT, {"messages": HELLO, "max_tokens": 250}, auth)
    assert code == 400 and json.loads(payload)["error"]["code"] == "context_length_exceeded"
    code, _, payload = post(strict_server.url, CHAT, {"messages": HELLO, "max_tokens": 4}, auth)
    assert code == 200, payload


def test_api_key(strict_server):
    body = {"messages": HELLO, "max_tokens": 1}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekret"}):
        code, _, payload = post(strict_server.url, CHAT, body, headers)
        assert code == 401, headers
        assert json.loads(payload)["error"]["code"] == "invalid_api_key"
    assert get(strict_server.url, "/v1/models")[0] == 401
    assert get(strict_server.url, "/v1/models", {"Authorization": "Bearer sekret"})[0] == 200
    assert post(strict_server.url, CHAT, body, {"Authorization": "Bearer sekret"})[0] == 200
    assert get(strict_server.url, "/health")[0] == 200  # liveness stays open


def run_concurrently(url: str, n: int, body: dict, headers: dict | None = None):
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        try:
            results[i] = post(url, CHAT, body, headers, timeout=120)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return results


def test_sixteen_concurrent_clients_all_complete(server):
    results = run_concurrently(server.url, 16, {"messages": HELLO, "max_tokens": 16, "temperature": 0})
    for r in results:
        assert not isinstance(r, Exception), r
        code, _, payload = r
        assert code == 200, payload
        assert json.loads(payload)["usage"]["completion_tokens"] >= 1
    server.wait_idle(10)


def test_full_queue_rejects_cleanly_with_retry_after(strict_server):
    auth = {"Authorization": "Bearer sekret"}
    results = run_concurrently(strict_server.url, 16, {"messages": HELLO, "max_tokens": 40, "temperature": 0}, auth)
    codes = []
    for r in results:
        assert not isinstance(r, Exception), r
        code, headers, payload = r
        codes.append(code)
        if code == 503:
            assert headers.get("Retry-After") == "1"
            assert json.loads(payload)["error"]["code"] == "server_busy"
        else:
            assert code == 200, payload
            assert json.loads(payload)["choices"][0]["finish_reason"] in ("length", "stop")
    assert 200 in codes and 503 in codes, codes
    strict_server.wait_idle(10)
    assert post(strict_server.url, CHAT, {"messages": HELLO, "max_tokens": 2}, auth)[0] == 200


def open_and_abandon(url: str, body: dict, read_bytes: int) -> None:
    """Sends a request, reads `read_bytes` of the response (0 = none), then closes the socket."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    data = json.dumps(body).encode()
    s.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    got = b""
    while len(got) < read_bytes:
        chunk = s.recv(4096)
        assert chunk, "the server closed the stream early"
        got += chunk
    if read_bytes == 0:
        time.sleep(0.5)  # let generation start
    s.close()


@pytest.mark.parametrize("stream", [True, False])
def test_disconnect_cancels_generation(server, stream):
    # 20000 tokens would keep the worker busy for about a minute if the disconnect went unnoticed.
    body = {"messages": [{"role": "user", "content": "Write forever"}], "max_tokens": 20000, "stream": stream,
            "temperature": 0.7}
    before = server.log().count("client disconnected")
    open_and_abandon(server.url, body, 2000 if stream else 0)
    waited = server.wait_idle(5)
    assert waited < 5
    deadline = time.monotonic() + 5
    while server.log().count("client disconnected") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.log().count("client disconnected") == before + 1
    t0 = time.monotonic()
    code, _, _ = post(server.url, CHAT, {"messages": HELLO, "max_tokens": 4})
    assert code == 200 and time.monotonic() - t0 < 10
