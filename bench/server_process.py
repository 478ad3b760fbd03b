# Starting `k2mlx serve` (or a launcher running it) from a bench script: the server is asked for any free port
# (--port 0) and prints the one it got on stderr, so the scripts read its log until that line appears.
from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")


def start(cmd: list[str], prefix: str, timeout: float) -> tuple[subprocess.Popen, tuple[str, int], Path]:
    """Runs `cmd` with stderr to a temporary log; returns the process, (host, port) and the log's path once the
    server listens. Exits the script with the log when the process ends or `timeout` passes first."""
    log = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    path = Path(log.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = LISTENING.search(path.read_text(errors="replace"))
        if m:
            return proc, (m.group(1), int(m.group(2))), path
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"server did not start:\n{path.read_text(errors='replace')}")
