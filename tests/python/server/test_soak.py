# A short soak: a few clients for seconds sending bench/http_checks.py's mix of valid, malformed and abandoned
# requests to one `k2mlx serve`. Every answer must be well-formed and within its bound, the server must be idle
# soon after the load and after each deliberately abandoned generation, its RSS must not grow past the bound
# bench/soak_server.py uses (with more slack: a run this short ends close to its warm-up), and SIGTERM must stop
# it promptly. bench/soak_server.py is the long run.
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

import http_checks as hc  # noqa: E402

KEY = "soak-key"
SECONDS = 15.0
CLIENTS = 6
BOUNDS = hc.Bounds(valid=60.0, malformed=5.0)
SHUTDOWN_BOUND = 10.0


def test_mixed_load_leaves_the_server_well(make_server):
    s = make_server("--api-key", KEY, "--queue", str(4 * CLIENTS), name="soak")
    target = hc.Target(s.host, s.port, KEY)
    res = hc.run_load(target, s.proc, SECONDS, CLIENTS, BOUNDS, seed=1, warmup=0.3)
    report = hc.summary(res)
    print(report)
    assert not res.died, report
    assert res.problem_count == 0, report
    assert all(res.counts.get(c, 0) >= 5 for c in ("valid", "malformed", "cancelled")), report
    assert res.final_kib <= hc.rss_limit_kib(res.warm_kib, 0.2, 32), report
    assert hc.abandon_checks(target) == []
    log = s.log()
    assert " 500 " not in log and "internal error" not in log, log[-3000:]
    assert hc.health(target)["status"] == "ok"
    t0 = time.monotonic()
    s.proc.terminate()
    assert s.proc.wait(timeout=3 * SHUTDOWN_BOUND) == 0
    assert time.monotonic() - t0 < SHUTDOWN_BOUND, f"shutdown took {time.monotonic() - t0:.1f} s"
