# Request kinds for soak tests of `k2mlx serve`, and the checks on their answers:
#  - valid requests on every generation route (OpenAI chat and completions, Anthropic messages; streamed and not)
#    and a few cheap GETs, whose answers must be well-formed (status, JSON shape, a stream's closing event);
#  - malformed requests over raw sockets (bad JSON, wrong types, deep nesting, impossible framing, garbage bytes,
#    unknown paths, wrong keys) that must be refused with the expected 4xx, or for bytes that are not a request
#    the connection closed, within a bound;
#  - requests abandoned by the client: after the first streamed chunk, after a random delay, or mid-body.
# run_load() drives client threads through a random mix of them while sampling the server's RSS; abandon_checks()
# then leaves one long generation in each way on an idle server and requires it to stop. Shared by
# bench/soak_server.py (minutes, many clients) and tests/python/server/test_soak.py (seconds, a few clients).
from __future__ import annotations

import http.client
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHAT, COMPLETIONS, MESSAGES = "/v1/chat/completions", "/v1/completions", "/v1/messages"
WORDS = ("the model reads a long story about seven quiet rivers while experts route every token through a "
         "small network of layers and caches").split()
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
CHAT_FINISH = {"stop", "length", "tool_calls"}
ANTHROPIC_STOP = {"end_turn", "max_tokens", "stop_sequence", "tool_use"}


class Problem(Exception):
    """An answer that is not what the server promises."""


def check(cond, what: str) -> None:
    if not cond:
        raise Problem(what)


@dataclass
class Target:
    host: str
    port: int
    api_key: str = ""

    def openai_auth(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def anthropic_auth(self) -> dict:
        return {"anthropic-version": "2023-06-01", **({"x-api-key": self.api_key} if self.api_key else {})}


@dataclass
class Bounds:
    valid: float = 60.0      # seconds a valid request (or a cancelled one's first chunk) may take
    malformed: float = 5.0   # seconds within which a malformed request must be refused or its connection closed


@dataclass
class Record:
    """What one request did; a kind fills in `sent` (for reports) and `seconds` (the time held to the bound, when
    it is not the whole call)."""
    category: str
    name: str
    bound: float | None
    sent: bytes = b""
    seconds: float | None = None
    problem: str = ""


# ---------------------------------------------------------------------------------------------------------------
# Raw HTTP/1.1 over sockets: the malformed and cancelled kinds need bytes no client library sends.

def request_bytes(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: soak\r\n"
    for k, v in {"Content-Type": "application/json", **(headers or {}), "Content-Length": str(len(body))}.items():
        head += f"{k}: {v}\r\n"
    return head.encode() + b"\r\n" + body


def connect(t: Target, timeout: float) -> socket.socket:
    s = socket.create_connection((t.host, t.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_response(f) -> tuple[int, dict, bytes] | None:
    """One response from a socket file (Content-Length, chunked or until close); None when the server closed the
    connection before a status line."""
    status_line = f.readline()
    if not status_line:
        return None
    check(status_line.startswith(b"HTTP/1.1 ") and status_line.endswith(b"\r\n"), f"bad status line {status_line[:80]!r}")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = f.readline()
        check(line.endswith(b"\r\n"), f"response head cut off after {headers}")
        if line == b"\r\n":
            break
        k, sep, v = line.decode("latin-1").partition(":")
        check(sep == ":", f"response header line without a colon: {line[:80]!r}")
        headers[k.strip().lower()] = v.strip()
    if status == 100:
        return read_response(f)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(f.readline().split(b";")[0], 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):  # trailers
                    pass
                return status, headers, body
            body += f.read(size)
            check(f.read(2) == b"\r\n", "chunk not followed by CRLF")
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
        check(len(body) == int(headers["content-length"]), "response body shorter than its Content-Length")
        return status, headers, body
    return status, headers, f.read()


def closed_by_server(f) -> bool:
    """True when the next read sees the end of the connection (a clean close or a reset)."""
    try:
        return f.read(1) == b""
    except ConnectionResetError:
        return True


def reset_close(s: socket.socket) -> None:
    """Closes with a TCP reset instead of a FIN (SO_LINGER 0), as a killed client does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ---------------------------------------------------------------------------------------------------------------
# Valid requests: random small bodies on every route; the answer's shape is checked.

def conversation(rng: random.Random) -> list[dict]:
    words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    msgs = [{"role": "system", "content": words(rng.randint(3, 12))}] if rng.random() < 0.3 else []
    for _ in range(rng.randint(0, 2)):  # earlier turns, so that the prompt cache is used and evicted
        msgs += [{"role": "user", "content": words(rng.randint(2, 20))}, {"role": "assistant", "content": words(5)}]
    return msgs + [{"role": "user", "content": words(rng.randint(1, 30))}]


def sampling(rng: random.Random, body: dict) -> dict:
    body["temperature"] = rng.choice([0, 0, 0.7, 1.0])
    if rng.random() < 0.3:
        body["top_p"] = 0.9
    if rng.random() < 0.3:
        body["seed"] = rng.randint(0, 1000)
    if rng.random() < 0.2:
        body["stop"] = [rng.choice(WORDS)]
    return body


def post(t: Target, path: str, body: dict, headers: dict, timeout: float) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(t.host, t.port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read()
    finally:
        conn.close()


def get(t: Target, path: str, headers: dict, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(t.host, t.port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def answer_json(status: int, ctype: str, payload: bytes) -> dict:
    check(status == 200, f"status {status}: {payload[:300]!r}")
    check(ctype.startswith("application/json"), f"Content-Type {ctype!r}")
    j = json.loads(payload)
    check(isinstance(j, dict), "answer is not a JSON object")
    return j


def sse_events(status: int, ctype: str, payload: bytes) -> list[bytes]:
    """The events of a server-sent event stream; each must end in a blank line."""
    check(status == 200, f"status {status}: {payload[:300]!r}")
    check(ctype.startswith("text/event-stream"), f"Content-Type {ctype!r}")
    check(payload.endswith(b"\n\n"), f"stream does not end with a blank line: ...{payload[-200:]!r}")
    return payload[:-2].split(b"\n\n")


def check_usage(u: dict, max_tokens: int) -> None:
    check(isinstance(u, dict), f"usage {u!r}")
    check(isinstance(u.get("prompt_tokens"), int) and u["prompt_tokens"] > 0, f"usage {u}")
    check(isinstance(u.get("completion_tokens"), int) and 0 <= u["completion_tokens"] <= max_tokens, f"usage {u}")
    check(u.get("total_tokens") == u["prompt_tokens"] + u["completion_tokens"], f"usage {u}")


def openai_chunks(events: list[bytes], obj: str) -> list[dict]:
    """The JSON chunks of an OpenAI stream, which must close with `data: [DONE]`; all of one object and one id."""
    check(events[-1] == b"data: [DONE]", f"stream does not end with data: [DONE]: {events[-1][:200]!r}")
    chunks = []
    for e in events[:-1]:
        check(e.startswith(b"data: ") and b"\n" not in e, f"bad event {e[:200]!r}")
        chunks.append(json.loads(e[6:]))
    check(chunks, "stream without chunks")
    check({c.get("object") for c in chunks} == {obj}, f"objects {({c.get('object') for c in chunks})}")
    check(len({c.get("id") for c in chunks}) == 1, "chunks of one stream with different ids")
    return chunks


def check_stream_end(chunks: list[dict], finishes: set, include_usage: bool, max_tokens: int) -> None:
    with_choices = [c for c in chunks if c["choices"]]
    check(with_choices, "no chunk with a choice")
    reasons = [c["choices"][0]["finish_reason"] for c in with_choices]
    check(reasons[-1] in finishes and all(r is None for r in reasons[:-1]), f"finish reasons {reasons}")
    if include_usage:
        check(not chunks[-1]["choices"], "include_usage: the last chunk has choices")
        check_usage(chunks[-1]["usage"], max_tokens)


def valid_chat(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    n, stream = rng.randint(4, 16), rng.random() < 0.5
    body = sampling(rng, {"messages": conversation(rng), "max_tokens": n, "stream": stream})
    if rng.random() < 0.15:
        body["tools"] = [TOOL]
    logprobs = rng.random() < 0.2
    if logprobs:
        body.update(logprobs=True, top_logprobs=2)
    usage = stream and rng.random() < 0.5
    if usage:
        body["stream_options"] = {"include_usage": True}
    rec.name += "_stream" if stream else ""
    rec.sent = json.dumps(body).encode()[:300]
    answer = post(t, CHAT, body, t.openai_auth(), b.valid * 2)
    if stream:
        chunks = openai_chunks(sse_events(*answer), "chat.completion.chunk")
        first = chunks[0]["choices"][0]["delta"]
        check(first == {"role": "assistant", "content": ""}, f"first delta {first}")
        check(all(isinstance(ch.get("delta"), dict) for c in chunks for ch in c["choices"]), "a chunk without a delta")
        check_stream_end(chunks, CHAT_FINISH, usage, n)
        return
    j = answer_json(*answer)
    check(j.get("object") == "chat.completion" and len(j.get("choices", [])) == 1, f"answer {j}")
    c = j["choices"][0]
    m = c.get("message", {})
    check(m.get("role") == "assistant", f"message {m}")
    check(isinstance(m.get("content"), str) or (m.get("content") is None and m.get("tool_calls")), f"message {m}")
    check(c.get("finish_reason") in CHAT_FINISH, f"finish_reason {c.get('finish_reason')}")
    check(not logprobs or isinstance((c.get("logprobs") or {}).get("content"), list), f"logprobs {c.get('logprobs')}")
    check_usage(j.get("usage"), n)


def valid_completion(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    n, stream = rng.randint(4, 16), rng.random() < 0.5
    prompt = [rng.randint(10, 250) for _ in range(rng.randint(1, 40))] if rng.random() < 0.3 else \
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))
    body = sampling(rng, {"prompt": prompt, "max_tokens": n, "stream": stream})
    if rng.random() < 0.2:
        body["logprobs"] = 2
    usage = stream and rng.random() < 0.5
    if usage:
        body["stream_options"] = {"include_usage": True}
    rec.name += "_stream" if stream else ""
    rec.sent = json.dumps(body).encode()[:300]
    answer = post(t, COMPLETIONS, body, t.openai_auth(), b.valid * 2)
    if stream:
        chunks = openai_chunks(sse_events(*answer), "text_completion")
        check(all(isinstance(ch.get("text"), str) for c in chunks for ch in c["choices"]), "a chunk without text")
        check_stream_end(chunks, {"stop", "length"}, usage, n)
        return
    j = answer_json(*answer)
    check(j.get("object") == "text_completion" and len(j.get("choices", [])) == 1, f"answer {j}")
    c = j["choices"][0]
    check(isinstance(c.get("text"), str) and c.get("finish_reason") in {"stop", "length"}, f"choice {c}")
    check("logprobs" not in body or isinstance((c.get("logprobs") or {}).get("tokens"), list), f"logprobs {c.get('logprobs')}")
    check_usage(j.get("usage"), n)


def anthropic_body(rng: random.Random) -> dict:
    """A conversation in Anthropic's shape: the system prompt is a field, not a message."""
    msgs = conversation(rng)
    body = {"model": "soak", "messages": [m for m in msgs if m["role"] != "system"]}
    if msgs[0]["role"] == "system":
        body["system"] = msgs[0]["content"]
    return body


def valid_messages(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    n, stream = rng.randint(4, 16), rng.random() < 0.5
    body = sampling(rng, {**anthropic_body(rng), "max_tokens": n, "stream": stream})
    body.pop("seed", None)
    if "stop" in body:
        body["stop_sequences"] = body.pop("stop")
    rec.name += "_stream" if stream else ""
    rec.sent = json.dumps(body).encode()[:300]
    answer = post(t, MESSAGES, body, t.anthropic_auth(), b.valid * 2)
    if not stream:
        j = answer_json(*answer)
        check(j.get("type") == "message" and j.get("role") == "assistant", f"answer {j}")
        check(isinstance(j.get("content"), list) and all(c.get("type") in ("text", "thinking", "tool_use")
                                                          for c in j["content"]), f"content {j.get('content')}")
        check(j.get("stop_reason") in ANTHROPIC_STOP, f"stop_reason {j.get('stop_reason')}")
        u = j.get("usage") or {}
        check(u.get("input_tokens", 0) > 0 and 0 <= u.get("output_tokens", -1) <= n, f"usage {u}")
        return
    names, datas = [], []
    for e in sse_events(*answer):
        lines = e.split(b"\n")
        check(len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), f"bad event {e[:200]!r}")
        names.append(lines[0][7:].decode())
        datas.append(json.loads(lines[1][6:]))
        check(datas[-1].get("type") == names[-1], f"event {names[-1]} with data type {datas[-1].get('type')}")
    check(names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], f"events {names}")
    check(datas[-2]["delta"].get("stop_reason") in ANTHROPIC_STOP, f"message_delta {datas[-2]}")
    check(0 <= datas[-2]["usage"].get("output_tokens", -1) <= n, f"message_delta {datas[-2]}")
    check(names.count("content_block_start") == names.count("content_block_stop"), f"unbalanced blocks: {names}")


def valid_cheap(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    path = rng.choice(["/health", "/v1/models", "/v1/messages/count_tokens"])
    rec.name += path.replace("/", "_")
    if path == "/v1/messages/count_tokens":
        j = answer_json(*post(t, path, anthropic_body(rng), t.anthropic_auth(), b.valid * 2))
        check(isinstance(j.get("input_tokens"), int) and j["input_tokens"] > 0, f"answer {j}")
        return
    status, payload = get(t, path, t.openai_auth(), b.valid * 2)
    j = answer_json(status, "application/json", payload)
    check((j.get("status") == "ok") if path == "/health" else (j.get("object") == "list" and j.get("data")), f"answer {j}")


VALID = {"chat": valid_chat, "completion": valid_completion, "messages": valid_messages, "cheap": valid_cheap}


# ---------------------------------------------------------------------------------------------------------------
# Malformed requests: (path, raw body or JSON, extra headers, statuses accepted). Each is sent on a fresh
# connection; a refused request whose framing was fine must leave the connection usable, which a follow-up
# GET on it checks.

HELLO = [{"role": "user", "content": "Hello"}]


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


DEEP_TOOLS = ('{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", '
              '"parameters": ' + nested(50_000) + "}}]}").encode()

BAD_BODIES = {
    "bad_json": (CHAT, b"{not json", {400}),
    "json_array": (CHAT, b"[1, 2]", {400}),
    "truncated_json": (COMPLETIONS, b'{"prompt": "Hi", "max_tok', {400}),
    "messages_not_array": (CHAT, {"messages": "hi"}, {400}),
    "max_tokens_string": (CHAT, {"messages": HELLO, "max_tokens": "10"}, {400}),
    "max_tokens_zero": (CHAT, {"messages": HELLO, "max_tokens": 0}, {400}),
    "temperature_string": (CHAT, {"messages": HELLO, "temperature": "hot"}, {400}),
    "role_unknown": (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, {400}),
    "content_integer": (CHAT, {"messages": [{"role": "user", "content": 5}]}, {400}),
    "temperature_1e400": (CHAT, b'{"messages": [{"role": "user", "content": "x"}], "temperature": 1e400}', {400}),
    "nested_50000": (CHAT, DEEP_TOOLS, {400}),
    "token_id_64bit": (COMPLETIONS, {"prompt": [4294967301], "max_tokens": 1}, {400}),
    "prompt_missing": (COMPLETIONS, {"max_tokens": 3}, {400}),
    "invalid_utf8": (CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}', {400}),
    "anthropic_max_tokens_string": (MESSAGES, {"model": "m", "max_tokens": "8", "messages": HELLO}, {400}),
    "anthropic_no_messages": (MESSAGES, {"model": "m", "max_tokens": 8}, {400}),
    "unknown_post_path": ("/v1/nope", {"messages": HELLO}, {404}),
    "unknown_get_path": ("/nope", None, {404}),
}

# Framing the server refuses before routing: (request head after the request line, bytes after the head, status).
BAD_FRAMING = {
    "content_length_huge": ("Content-Length: 99999999999999999999", b"", 413),
    "content_length_negative": ("Content-Length: -5", b"", 400),
    "content_length_over_limit": ("Content-Length: 62914560", b"", 413),
    "chunk_size_negative": ("Transfer-Encoding: chunked", b"-5\r\nabc\r\n", 400),
    "chunk_size_not_hex": ("Transfer-Encoding: chunked", b"zz\r\nabc\r\n", 400),
    "chunk_size_huge": ("Transfer-Encoding: chunked", b"10000000000\r\n", 413),
    "length_and_chunked": ("Content-Length: 2\r\nTransfer-Encoding: chunked", b"", 400),
    "header_without_colon": ("Host-without-colon", b"", 400),
}


def error_body(payload: bytes) -> None:
    j = json.loads(payload)
    check(isinstance(j, dict) and isinstance(j.get("error"), dict) and isinstance(j["error"].get("message"), str),
          f"error body {payload[:300]!r}")


def exchange(t: Target, raw: bytes, b: Bounds, rec: Record) -> tuple[socket.socket, object, tuple | None, float]:
    """Sends `raw` on a fresh connection; returns the socket, its file, the first response (None: closed) and when
    the sending began; the time to the response goes in rec.seconds."""
    rec.sent = raw[:300]
    s = connect(t, max(2 * b.malformed, b.malformed + 5))
    t0 = time.monotonic()
    try:
        s.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may refuse before the whole body is sent; its answer is still readable
    f = s.makefile("rb")
    try:
        r = read_response(f)
    except ConnectionResetError:
        r = None
    rec.seconds = time.monotonic() - t0
    return s, f, r, t0


def malformed_body(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    name = rng.choice(list(BAD_BODIES))
    path, body, want = BAD_BODIES[name]
    rec.name += "_" + name
    auth = t.anthropic_auth() if path.startswith(MESSAGES) else t.openai_auth()
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    raw = request_bytes("GET" if body is None else "POST", path, data, auth)
    s, f, r, _ = exchange(t, raw, b, rec)
    with s:
        check(r is not None, "connection closed without an answer")
        status, headers, payload = r
        check(status in want, f"status {status} (want {sorted(want)}): {payload[:300]!r}")
        error_body(payload)
        check(headers.get("connection") != "close", "a refused but well-framed request closed the connection")
        s.sendall(request_bytes("GET", "/v1/models", headers=t.openai_auth()))
        r = read_response(f)
        check(r is not None and r[0] == 200, f"the request after the refused one got {r and r[0]}")


def malformed_auth(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    if not t.api_key:  # a server without a key accepts every key
        rec.name = "body"
        return malformed_body(t, rng, b, rec)
    how = rng.choice(["wrong_bearer", "missing", "wrong_x_api_key"])
    rec.name += "_" + how
    path = MESSAGES if how == "wrong_x_api_key" else rng.choice([CHAT, COMPLETIONS, "/v1/models"])
    headers = {"Authorization": "Bearer not-the-key"} if how == "wrong_bearer" else \
        {"x-api-key": "not-the-key", "anthropic-version": "2023-06-01"} if how == "wrong_x_api_key" else {}
    body = b"" if path == "/v1/models" else json.dumps({"messages": HELLO, "prompt": "x", "model": "m", "max_tokens": 8}).encode()
    s, f, r, _ = exchange(t, request_bytes("GET" if not body else "POST", path, body, headers), b, rec)
    with s:
        check(r is not None, "connection closed without an answer")
        check(r[0] == 401, f"status {r[0]} (want 401): {r[2][:300]!r}")
        error_body(r[2])


def malformed_framing(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    name = rng.choice(list(BAD_FRAMING))
    head, rest, want = BAD_FRAMING[name]
    rec.name += "_" + name
    s, f, r, t0 = exchange(t, f"POST {rng.choice([CHAT, MESSAGES])} HTTP/1.1\r\nHost: soak\r\n{head}\r\n\r\n".encode() + rest,
                       b, rec)
    with s:
        check(r is not None, "connection closed without an answer")
        status, headers, payload = r
        check(status == want, f"status {status} (want {want}): {payload[:300]!r}")
        error_body(payload)
        check(headers.get("connection") == "close", "a framing error did not close the connection")
        check(closed_by_server(f), "connection still open after Connection: close")
        rec.seconds = time.monotonic() - t0  # the close counts towards the bound


def malformed_stream(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    """Bytes that are not a whole request: a body cut short (then the client half-closes), garbage, bare LF line
    ends. The server must answer 4xx or close the connection at once; it must not wait for its read timeout."""
    how = rng.choice(["truncated_body", "garbage", "bare_lf"])
    rec.name += "_" + how
    if how == "truncated_body":
        body = json.dumps({"messages": HELLO, "max_tokens": 4}).encode()
        raw = request_bytes("POST", CHAT, body, t.openai_auth())[:-rng.randint(1, len(body))]
    elif how == "garbage":
        raw = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400))) + b"\r\n\r\n"
    else:
        raw = f"POST {CHAT} HTTP/1.1\nHost: soak\nContent-Length: 2\n\n{{}}".encode()
    rec.sent = raw[:300]
    s = connect(t, max(2 * b.malformed, b.malformed + 5))
    with s:
        t0 = time.monotonic()
        try:
            s.sendall(raw)
            if how == "truncated_body":
                s.shutdown(socket.SHUT_WR)  # nothing more will come: the server sees the end of the stream
        except (BrokenPipeError, ConnectionResetError):
            pass
        f = s.makefile("rb")
        try:
            r = read_response(f)
        except ConnectionResetError:
            r = None
        if r is not None:
            check(400 <= r[0] < 500, f"status {r[0]}: {r[2][:300]!r}")
            error_body(r[2])
            # httplib answers an unparsable request line with a keep-alive 400 (the connection then idles for
            # the keep-alive time); the framing layer's refusals say Connection: close and must close.
            if r[1].get("connection") == "close":
                check(closed_by_server(f), "connection still open after Connection: close")
        rec.seconds = time.monotonic() - t0


MALFORMED = {"body": malformed_body, "auth": malformed_auth, "framing": malformed_framing, "stream": malformed_stream}


# ---------------------------------------------------------------------------------------------------------------
# Cancelled requests: long generations the client abandons.

def long_request(t: Target, rng: random.Random, stream: bool) -> tuple[str, bytes]:
    path = rng.choice([CHAT, COMPLETIONS, MESSAGES])
    body = {"max_tokens": rng.randint(500, 4000), "temperature": 0.8, "stream": stream}
    if path == COMPLETIONS:
        body["prompt"] = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40)))
    else:
        body["messages"] = [{"role": "user", "content": "Write forever about " + rng.choice(WORDS)}]
    if path == MESSAGES:
        body["model"] = "soak"
    auth = t.anthropic_auth() if path == MESSAGES else t.openai_auth()
    return path, request_bytes("POST", path, json.dumps(body).encode(), auth)


def close_somehow(s: socket.socket, rng: random.Random) -> None:
    if rng.random() < 0.5:
        reset_close(s)
    else:
        s.close()


def cancel_after_first_chunk(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    path, raw = long_request(t, rng, True)
    rec.name += path.replace("/", "_")
    rec.sent = raw[:300]
    s = connect(t, b.valid * 2)
    t0 = time.monotonic()
    s.sendall(raw)
    got = b""

    def more() -> None:
        nonlocal got
        piece = s.recv(65536)
        if not piece:
            s.close()
            raise Problem(f"the server closed the stream before its first chunk: {got[:300]!r}")
        got += piece

    # The head (a refusal has a body but no event: it is answered, not awaited), then the first chunk that
    # carries an event (Anthropic's message_start comes at once, OpenAI's first data line once admitted).
    while b"\r\n\r\n" not in got:
        more()
    if not got.startswith(b"HTTP/1.1 200 "):
        s.close()
        raise Problem(f"answer {got[:300]!r}")
    while b"data: " not in got.split(b"\r\n\r\n", 1)[1]:
        more()
    rec.seconds = time.monotonic() - t0
    close_somehow(s, rng)


def cancel_after_delay(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    stream = rng.random() < 0.5
    path, raw = long_request(t, rng, stream)
    rec.name += path.replace("/", "_") + ("_stream" if stream else "")
    rec.sent = raw[:300]
    s = connect(t, b.valid * 2)
    s.sendall(raw)
    time.sleep(rng.uniform(0, 1.5))  # queued, prefilling or generating: whatever the moment catches
    close_somehow(s, rng)


def cancel_mid_body(t: Target, rng: random.Random, b: Bounds, rec: Record) -> None:
    path, raw = long_request(t, rng, rng.random() < 0.5)
    rec.name += path.replace("/", "_")
    cut = raw[:rng.randint(1, len(raw) - 1)]
    rec.sent = cut[:300]
    s = connect(t, b.valid * 2)
    s.sendall(cut)
    time.sleep(rng.uniform(0, 0.3))
    close_somehow(s, rng)


CANCELLED = {"first_chunk": cancel_after_first_chunk, "delay": cancel_after_delay, "mid_body": cancel_mid_body}


def abandon_checks(t: Target, bound: float = 5.0, idle_first: float = 30.0) -> list[str]:
    """One abandoned 20000-token generation per way of leaving (streamed or not; FIN or reset; at once or after
    half a second), each on an otherwise idle server, which must be idle again within `bound` seconds. In the
    random mix an abandoned request the server misses only costs throughput; here it would run for minutes, so
    the checks stop at the first one missed."""
    for stream in (False, True):
        for reset in (False, True):
            for delay in (0.05, 0.5):
                what = f"{'stream' if stream else 'json'}, {'reset' if reset else 'close'} after {delay} s"
                body = {"messages": [{"role": "user", "content": "Write forever"}], "max_tokens": 20000,
                        "temperature": 0.8, "stream": stream}
                try:
                    wait_idle(t, idle_first)
                    s = connect(t, 30)
                    s.sendall(request_bytes("POST", CHAT, json.dumps(body).encode(), t.openai_auth()))
                    time.sleep(delay)
                    reset_close(s) if reset else s.close()
                    wait_idle(t, bound)
                except (Problem, OSError, ValueError) as e:
                    return [f"abandoned request ({what}): {e}"]
    return []


MIX = {"valid": (VALID, 0.5), "malformed": (MALFORMED, 0.3), "cancelled": (CANCELLED, 0.2)}


def one_request(t: Target, rng: random.Random, b: Bounds, category: str | None = None) -> Record:
    if category is None:
        category = rng.choices(list(MIX), [w for _, w in MIX.values()])[0]
    kinds = MIX[category][0]
    name = rng.choice(list(kinds))
    # A cancelled request's first chunk is held to the valid bound; its delays are the client's own.
    bound = b.malformed if category == "malformed" else b.valid if category == "valid" or name == "first_chunk" else None
    rec = Record(category, name, bound)
    t0 = time.monotonic()
    try:
        kinds[name](t, rng, b, rec)
    except Problem as e:
        rec.problem = str(e)
    except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        rec.problem = f"{type(e).__name__}: {e}"  # timeouts, resets, unparsable or wrongly shaped answers
    if rec.seconds is None:
        rec.seconds = time.monotonic() - t0
    if not rec.problem and rec.bound is not None and rec.seconds > rec.bound:
        rec.problem = f"took {rec.seconds:.3f} s, over the bound of {rec.bound} s"
    return rec


# ---------------------------------------------------------------------------------------------------------------
# Memory of the server process.

def rss_kib(pid: int) -> int | None:
    """Resident set size in KiB (Linux /proc; `ps` elsewhere, e.g. macOS); None when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None
    except FileNotFoundError:
        if sys.platform.startswith("linux"):
            return None
    except OSError:
        return None
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return int(out) if out else None


def health(t: Target, timeout: float = 10) -> dict:
    status, payload = get(t, "/health", {}, timeout)
    check(status == 200, f"/health: status {status}")
    return json.loads(payload)


def wait_idle(t: Target, timeout: float) -> float:
    """Seconds until the server reports no running and no queued request; raises Problem after `timeout`."""
    t0 = time.monotonic()
    while True:
        h = health(t)
        if not h["busy"] and h["queued"] == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise Problem(f"still busy after {timeout} s: {h}")
        time.sleep(0.1)


@dataclass
class LoadResult:
    seconds: float
    counts: dict = field(default_factory=dict)      # category -> requests
    problems: list = field(default_factory=list)    # Records with a problem (the first 50)
    problem_count: int = 0
    longest: dict = field(default_factory=dict)     # category -> (seconds, name) of the slowest bounded request
    kinds: dict = field(default_factory=dict)       # category_name -> requests
    rss: list = field(default_factory=list)         # (seconds since start, KiB)
    warm_at: float = 0.0                            # seconds into the load of the warm-up sample
    warm_kib: int = 0
    idle_seconds: float | None = None               # after the load, until the server was idle (None: not within the bound)
    died: str = ""

    @property
    def peak_kib(self) -> int:
        return max((r for _, r in self.rss), default=0)

    @property
    def final_kib(self) -> int:
        return self.rss[-1][1] if self.rss else 0

    def rss_slope_mib_per_min(self) -> float:
        """Least-squares slope of RSS over the time after the warm-up (MiB per minute)."""
        pts = [(s, r / 1024) for s, r in self.rss if s >= self.warm_at]
        if len(pts) < 2:
            return 0.0
        mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
        var = sum((x - mx) ** 2 for x, _ in pts)
        return 60 * sum((x - mx) * (y - my) for x, y in pts) / var if var else 0.0


def run_load(t: Target, proc: subprocess.Popen, seconds: float, clients: int, bounds: Bounds, seed: int = 0,
             warmup: float = 0.1, idle_bound: float = 15.0) -> LoadResult:
    """`clients` threads send random requests from MIX for `seconds`; RSS is sampled every second. The warm-up RSS
    is the sample at `warmup` x `seconds`; the final one is taken once the server is idle after the load."""
    res = LoadResult(seconds=seconds, warm_at=warmup * seconds)
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic()
    deadline = t0 + seconds

    def record(rec: Record) -> None:
        with lock:
            res.counts[rec.category] = res.counts.get(rec.category, 0) + 1
            key = f"{rec.category}:{rec.name}"
            res.kinds[key] = res.kinds.get(key, 0) + 1
            if rec.bound is not None and rec.seconds > res.longest.get(rec.category, (0.0, ""))[0]:
                res.longest[rec.category] = (rec.seconds, rec.name)
            if rec.problem:
                res.problem_count += 1
                if len(res.problems) < 50:
                    res.problems.append(rec)

    def client(i: int) -> None:
        rng = random.Random(seed * 1009 + i)
        while time.monotonic() < deadline and not stop.is_set():
            record(one_request(t, rng, bounds))

    def sampler() -> None:
        while not stop.is_set():
            kib = rss_kib(proc.pid)
            if kib is None or proc.poll() is not None:
                res.died = f"the server exited (status {proc.poll()}) {time.monotonic() - t0:.1f} s into the load"
                stop.set()
                return
            now = time.monotonic() - t0
            with lock:
                res.rss.append((now, kib))
                if not res.warm_kib and now >= res.warm_at:
                    res.warm_kib = kib
            stop.wait(1.0)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    watch = threading.Thread(target=sampler, daemon=True)
    watch.start()
    for th in threads:
        th.start()
    for th in threads:
        # A client finishes its last request at most about 2 x the valid bound after the deadline (socket timeouts).
        th.join(max(0.0, deadline - time.monotonic()) + 2 * bounds.valid + 10)
        if th.is_alive():
            res.problem_count += 1
            res.problems.append(Record("client", "thread", None, problem="a client thread hung past every socket timeout"))
    stop.set()
    watch.join(5)
    if not res.died:
        try:
            res.idle_seconds = wait_idle(t, idle_bound)
        except (Problem, OSError, ValueError) as e:
            res.problem_count += 1
            res.problems.append(Record("idle", "health", None, problem=str(e)))
        kib = rss_kib(proc.pid)
        if kib is not None:
            res.rss.append((time.monotonic() - t0, kib))
        res.warm_kib = res.warm_kib or (res.rss[0][1] if res.rss else 0)
    return res


def rss_limit_kib(warm_kib: int, fraction: float, slack_mib: float) -> int:
    return int(warm_kib * (1 + fraction) + slack_mib * 1024)


def summary(res: LoadResult) -> str:
    mib = lambda k: f"{k / 1024:.1f}"  # noqa: E731
    total = sum(res.counts.values())
    lv, lm = res.longest.get("valid", (0.0, "-")), res.longest.get("malformed", (0.0, "-"))
    lc = res.longest.get("cancelled", (0.0, "-"))
    lines = [
        f"requests: {total} in {res.seconds:.0f} s ({total / max(res.seconds, 1e-9):.1f}/s): "
        f"valid {res.counts.get('valid', 0)}, malformed {res.counts.get('malformed', 0)}, "
        f"cancelled {res.counts.get('cancelled', 0)}",
        f"RSS MiB: warm-up {mib(res.warm_kib)} (at {res.warm_at:.0f} s), peak {mib(res.peak_kib)}, final {mib(res.final_kib)}; "
        f"slope after warm-up {res.rss_slope_mib_per_min():+.2f} MiB/min",
        f"longest answer: valid {lv[0]:.2f} s ({lv[1]}), malformed {lm[0]:.2f} s ({lm[1]}), "
        f"cancelled request's first chunk {lc[0]:.2f} s",
        f"idle {res.idle_seconds:.2f} s after the clients stopped" if res.idle_seconds is not None else
        "not idle within the bound after the clients stopped",
        f"problems: {res.problem_count}" + (f"; {res.died}" if res.died else ""),
    ]
    for rec in res.problems[:20]:
        lines.append(f"  {rec.category}:{rec.name}: {rec.problem}\n    sent: {rec.sent[:200]!r}")
    return "\n".join(lines)


def kinds_table(res: LoadResult) -> str:
    return "\n".join(f"  {k}: {n}" for k, n in sorted(res.kinds.items()))


if __name__ == "__main__":
    # One request of each kind against a running server: http_checks.py HOST PORT [API_KEY]
    target = Target(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
    rng = random.Random(int(os.environ.get("SEED", "0")))
    for cat, (kinds, _) in MIX.items():
        for _ in range(3 * len(kinds)):
            r = one_request(target, rng, Bounds(), cat)
            print(f"{r.category}:{r.name} {r.seconds:.3f}s {r.problem or 'ok'}")
