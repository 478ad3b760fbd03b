# Helpers for the multi-rank tests: free port blocks on 127.0.0.1, running k2mlx under a timeout,
# starting ranks by hand with MLX_RANK / MLX_HOSTFILE, finding a launcher's rank processes, and
# waiting for generated tokens to appear. Owns no test cases and no fixtures.
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path

TIMEOUT = 120  # seconds any single k2mlx process may take in these tests


def free_ports(n: int) -> int:
    """First port of n consecutive free TCP ports on 127.0.0.1 (unique per call within a run)."""
    for _ in range(200):
        base = random.randint(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block found")


def run(binary: Path, args: list, timeout: float = TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def launch(binary: Path, n: int, args: list, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return run(binary, ["launch", "-n", n, "--starting-port", free_ports(n), "--", *args], timeout=timeout)


def write_ring_hostfile(path: Path, n: int) -> Path:
    base = free_ports(n)
    path.write_text(json.dumps([[f"127.0.0.1:{base + r}"] for r in range(n)]))
    return path


def start_rank(binary: Path, rank: int, hostfile: Path, args: list, out: Path, err: Path) -> subprocess.Popen:
    env = dict(os.environ, MLX_RANK=str(rank), MLX_HOSTFILE=str(hostfile))
    return subprocess.Popen([str(binary), *map(str, args)], env=env, stdout=open(out, "w"), stderr=open(err, "w"))


def rank_processes(launcher_pid: int) -> dict[int, int]:
    """{MLX_RANK: pid} of the launcher's children, from /proc."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != launcher_pid:
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for e in env:
            if e.startswith(b"MLX_RANK="):
                found[int(e.split(b"=", 1)[1])] = int(d.name)
    return found


def wait_for_tokens(path: Path, count: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Waits until `path` (rank 0's stdout) holds at least `count` generated ids."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().split()) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended early with {proc.returncode} before {count} tokens")
        time.sleep(0.05)
    raise AssertionError(f"no {count} tokens within {timeout} s in {path}")


def wait_exit(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """(return code, seconds waited); kills the process and fails if it is still running after `timeout`."""
    start = time.time()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"process still running {timeout} s later (hang)")
    return rc, time.time() - start


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False
