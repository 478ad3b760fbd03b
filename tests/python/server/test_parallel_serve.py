# `serve --parallel 4`: concurrent streaming requests are decoded together (the /health "running" count shows
# more than one at once) and each gets exactly the text it gets alone (float32, greedy); a short request that
# arrives while a long one decodes joins the batch and finishes first; beyond parallel + queue, 503.
from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

PROMPTS = [[(i * 37 + k * 11) % 900 + 20 for k in range(n)] for i, n in enumerate([3, 17, 40, 8, 25, 1])]


def stream_completion(url: str, prompt: list[int], max_tokens: int) -> tuple[str, str, float]:
    """(text, finish_reason, seconds to the first text) of one streamed /v1/completions request."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    text, finish, first = "", None, None
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        choice = json.loads(line[6:])["choices"][0]
        if choice["text"] and first is None:
            first = time.monotonic() - t0
        text += choice["text"]
        finish = choice["finish_reason"] or finish
    conn.close()
    return text, finish, first


class RunningWatcher:
    """Polls /health in the background and remembers the largest number of running sequences seen."""

    def __init__(self, server):
        self.server, self.most, self._stop = server, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.most = max(self.most, self.server.health().get("running", 0))
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._t.join(5)
        return self.most


def test_concurrent_streams_each_equal_their_solo_result(make_server):
    s = make_server("--parallel", "4", "--dtype", "float32", "--prompt-cache-mib", "0", name="parallel")
    solo = [stream_completion(s.url, p, 24)[:2] for p in PROMPTS]  # one at a time
    watcher = RunningWatcher(s)
    with ThreadPoolExecutor(len(PROMPTS)) as ex:
        together = list(ex.map(lambda p: stream_completion(s.url, p, 24)[:2], PROMPTS))
    assert watcher.stop() >= 2, "the requests never ran together"
    assert together == solo
    assert s.health()["parallel"] == 4
    s.wait_idle(10)


def test_request_arriving_during_a_long_decode_joins_and_finishes_first(make_server):
    s = make_server("--parallel", "2", "--dtype", "float32", "--prompt-cache-mib", "0", "--max-tokens", "400",
                    name="parallel-late")
    short_solo = stream_completion(s.url, PROMPTS[0], 4)[:2]
    long_solo = stream_completion(s.url, PROMPTS[2], 300)[:2]
    done: dict[str, float] = {}

    def run(name, prompt, n):
        out = stream_completion(s.url, prompt, n)
        done[name] = time.monotonic()
        return out

    with ThreadPoolExecutor(2) as ex:
        long_f = ex.submit(run, "long", PROMPTS[2], 300)
        while s.health().get("running", 0) < 1:
            time.sleep(0.01)
        short_f = ex.submit(run, "short", PROMPTS[0], 4)
        assert short_f.result()[:2] == short_solo
        assert long_f.result()[:2] == long_solo
    assert done["short"] < done["long"], "the short request waited for the long one"
