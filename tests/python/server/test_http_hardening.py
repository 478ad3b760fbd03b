# Hostile and unusual HTTP against a real `k2mlx serve`, over raw sockets: deeply nested JSON, number overflow,
# 64-bit token ids, impossible framing (each answered at once, not after the 60 s read timeout), pipelined
# requests, keep-alive after a 401, header lines without a colon, and a bounded shutdown with idle clients.
from __future__ import annotations

import json
import socket
import time

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "Hello"}]
PROMPT_BOUND = 5.0  # seconds within which a refused request must be answered (httplib used to wait 60 s)


def connect(server) -> socket.socket:
    s = socket.create_connection((server.host, server.port), timeout=30)
    s.settimeout(30)
    return s


def read_response(f) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response from a socket file: status, headers (lower-case names), body."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    status = int(status_line.split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if status == 100:
        return read_response(f)
    body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n"
    for k, v in {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(body))}.items():
        head += f"{k}: {v}\r\n"
    return head.encode() + b"\r\n" + body


def exchange(server, raw: bytes) -> tuple[int, dict, bytes, float]:
    """Sends raw bytes on a fresh connection; returns the first response and how long it took."""
    with connect(server) as s:
        t0 = time.monotonic()
        s.sendall(raw)
        status, headers, body = read_response(s.makefile("rb"))
        return status, headers, body, time.monotonic() - t0


def error_message(body: bytes) -> str:
    return json.loads(body)["error"]["message"]


def still_serves(server) -> None:
    assert server.health()["status"] == "ok"


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_deeply_nested_tool_schema_and_arguments_are_refused(server):
    tools = '[{"type": "function", "function": {"name": "f", "parameters": ' + nested(100_000) + "}}]"
    body = ('{"messages": [{"role": "user", "content": "x"}], "tools": ' + tools + "}").encode()
    status, _, payload, _ = exchange(server, request_bytes("POST", CHAT, body))
    assert status == 400 and "nested more than" in error_message(payload), payload[:300]
    call = '{"id": "c1", "type": "function", "function": {"name": "f", "arguments": ' + nested(20_000) + "}}"
    body = ('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": null, "tool_calls": ['
            + call + "]}]}").encode()
    status, _, payload, _ = exchange(server, request_bytes("POST", CHAT, body))
    assert status == 400 and "nested more than" in error_message(payload), payload[:300]
    still_serves(server)


def test_number_overflow_is_a_400(server):
    body = b'{"messages": [{"role": "user", "content": "x"}], "temperature": 1e400}'
    status, _, payload, _ = exchange(server, request_bytes("POST", CHAT, body))
    assert status == 400, payload
    assert "not valid JSON" in error_message(payload)


def test_64_bit_token_id_is_refused(server):
    for ids in ([1099511627776], [4294967296 + 5], [-1]):
        body = json.dumps({"prompt": ids, "max_tokens": 1}).encode()
        status, _, payload, _ = exchange(server, request_bytes("POST", "/v1/completions", body))
        assert status == 400, (ids, payload)
        assert json.loads(payload)["error"]["param"] == "prompt"


IMPOSSIBLE_FRAMING = [
    # (head lines after the request line, bytes after the head, status, words)
    ("Content-Length: 99999999999999999999", b"", 413, "too large"),
    ("Content-Length: -5", b"", 400, "Content-Length"),
    ("Content-Length: 62914560", b"", 413, "too large"),  # over the 32 MiB limit, no body sent
    ("Transfer-Encoding: chunked", b"-5\r\nabc\r\n", 400, "chunk size"),
    ("Transfer-Encoding: chunked", b"10000000000\r\n", 413, "too large"),
    ("Content-Length: 2\r\nTransfer-Encoding: chunked", b"", 400, "both"),
    ("Host-without-colon", b"", 400, "without a colon"),
]


def test_impossible_framing_is_answered_at_once(server):
    for head, rest, want, words in IMPOSSIBLE_FRAMING:
        raw = f"POST {CHAT} HTTP/1.1\r\nHost: test\r\n{head}\r\n\r\n".encode() + rest
        status, headers, payload, took = exchange(server, raw)
        assert status == want, (head, payload)
        assert words in error_message(payload), (head, payload)
        assert headers.get("connection") == "close"
        assert took < PROMPT_BOUND, (head, took)
    still_serves(server)


def test_header_line_without_colon_in_a_get(server):
    status, _, payload, _ = exchange(server, b"GET /health HTTP/1.1\r\nHost: test\r\nthis is not a header\r\n\r\n")
    assert status == 400 and "without a colon" in error_message(payload)


def test_pipelined_requests_are_all_answered(server):
    body = json.dumps({"prompt": "Hi", "max_tokens": 2, "temperature": 0}).encode()
    raw = (request_bytes("GET", "/health") + request_bytes("POST", "/v1/completions", body)
           + request_bytes("GET", "/v1/models"))
    with connect(server) as s:
        s.sendall(raw)  # three requests in one write
        f = s.makefile("rb")
        answers = [read_response(f) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 200], answers
    assert json.loads(answers[0][2])["status"] == "ok"
    assert json.loads(answers[1][2])["object"] == "text_completion"
    assert json.loads(answers[2][2])["object"] == "list"


def test_401_consumes_the_body_and_keeps_the_connection(strict_server):
    # Larger than httplib's 4 KiB read buffer, so that most of it is still unread when the 401 is sent.
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 20000}], "max_tokens": 1}).encode()
    with connect(strict_server) as s:
        f = s.makefile("rb")
        s.sendall(request_bytes("POST", CHAT, body, {"Authorization": "Bearer wrong"}))
        status, headers, payload = read_response(f)
        assert status == 401 and json.loads(payload)["error"]["code"] == "invalid_api_key"
        assert headers.get("connection") != "close"
        # The next request on the same connection is parsed from its own bytes, not from the 401'd body.
        s.sendall(request_bytes("GET", "/v1/models", headers={"Authorization": "Bearer sekret"}))
        status, _, payload = read_response(f)
        assert status == 200, payload
        assert json.loads(payload)["data"][0]["id"] == "tiny-kimi"


def test_shutdown_is_bounded_with_idle_half_sent_and_generating_clients(make_server):
    s = make_server("--api-key", "k", name="shutdown")
    idle = connect(s)  # a 401'd client that keeps its connection open
    idle.sendall(request_bytes("POST", CHAT, b'{"messages": []}'))
    assert read_response(idle.makefile("rb"))[0] == 401
    half = connect(s)  # a request whose body never comes
    half.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{{".encode())
    busy = connect(s)  # a generation that would run for about a minute
    body = json.dumps({"messages": [{"role": "user", "content": "Write forever"}], "max_tokens": 20000,
                       "temperature": 0.7}).encode()
    busy.sendall(request_bytes("POST", CHAT, body, {"Authorization": "Bearer k"}))
    deadline = time.monotonic() + 30
    while not s.health()["busy"]:
        assert time.monotonic() < deadline, "the generation did not start"
        time.sleep(0.05)
    t0 = time.monotonic()
    s.proc.terminate()
    s.proc.wait(timeout=20)
    took = time.monotonic() - t0
    assert took < 3.0, f"shutdown took {took:.1f} s"
    for c in (idle, half, busy):
        c.close()
