# Faults: a rank killed mid-generation makes the others exit non-zero within 30 s with a message naming
# the lost rank (with and without `k2mlx launch`); a rank that never comes up gives a clear error after a
# bounded wait; a hostfile with a bad entry, or mismatched stages, give a clear error and exit status 2.
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from pipeline_util import (TIMEOUT, alive, free_ports, rank_processes, run, start_rank, wait_exit, wait_for_tokens,
                           write_ring_hostfile)

LOST_WITHIN = 30  # seconds (the bound)
LONG = ["--ids", "1,2,3", "--max-tokens", "100000", "--ignore-eos", "--dtype", "float32", "-q"]


@pytest.mark.parametrize("victim", [0, 1, 2])
def test_killed_rank_under_launch_stops_the_job_and_is_named(k2, tiny, tmp_path, victim):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    launcher = subprocess.Popen([str(k2), "launch", "-n", "3", "--starting-port", str(free_ports(3)), "--", "pipeline",
                                 "--model", str(tiny["kimi"]), *LONG], stdout=open(out, "w"), stderr=open(err, "w"))
    try:
        wait_for_tokens(out, 5, launcher)
        ranks = rank_processes(launcher.pid)
        assert sorted(ranks) == [0, 1, 2], ranks
        os.kill(ranks[victim], signal.SIGKILL)
        rc, waited = wait_exit(launcher, LOST_WITHIN)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    text = err.read_text()
    assert rc != 0
    assert waited < LOST_WITHIN
    assert f"lost rank {victim} of 3" in text, text[-2000:]
    assert "signal 9" in text
    for r, pid in ranks.items():
        assert not alive(pid), f"rank {r} (pid {pid}) is still running after the job ended"


@pytest.mark.parametrize("victim", [0, 1])
def test_killed_rank_without_launcher_survivor_names_it(k2, tiny, tmp_path, victim):
    hostfile = write_ring_hostfile(tmp_path / "hosts.json", 2)
    procs = [start_rank(k2, r, hostfile, ["pipeline", "--model", tiny["kimi"], *LONG], tmp_path / f"out{r}.txt",
                        tmp_path / f"err{r}.txt") for r in range(2)]
    survivor = 1 - victim
    try:
        wait_for_tokens(tmp_path / "out0.txt", 5, procs[0])
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        rc, waited = wait_exit(procs[survivor], LOST_WITHIN)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    text = (tmp_path / f"err{survivor}.txt").read_text()
    assert rc != 0 and waited < LOST_WITHIN
    assert f"lost the connection to rank {victim}" in text, text[-2000:]


@pytest.mark.parametrize("present", [0, 1])
def test_rank_that_never_comes_up_gives_a_bounded_clear_error(k2, tiny, tmp_path, present):
    hostfile = write_ring_hostfile(tmp_path / "hosts.json", 2)
    p = start_rank(k2, present, hostfile, ["pipeline", "--model", tiny["kimi"], "--ids", "1,2", "--connect-timeout", 3],
                   tmp_path / "out.txt", tmp_path / "err.txt")
    rc, waited = wait_exit(p, 20)
    text = (tmp_path / "err.txt").read_text()
    assert rc != 0 and waited < 20
    assert "did not all connect within 3 s" in text, text
    assert f"rank {1 - present}" in text, text


def test_remote_rank_that_cannot_start_is_named(k2, tiny, tmp_path):
    # Rank 1 lives on a host that does not exist: ssh fails (or is missing), the launcher names rank 1 and
    # stops rank 0, which would otherwise wait for its neighbour.
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([{"ssh": "localhost", "ips": ["127.0.0.1"]},
                                    {"ssh": "k2mlx-no-such-host.invalid", "ips": ["127.0.0.1"]}]))
    start = time.time()
    p = run(k2, ["launch", "--hostfile", hostfile, "--starting-port", free_ports(2), "--", "pipeline", "--model",
                 tiny["kimi"], "--ids", "1,2", "--connect-timeout", 60], timeout=60)
    assert p.returncode != 0
    assert time.time() - start < 30
    assert "lost rank 1 of 2 (host k2mlx-no-such-host.invalid)" in p.stderr, p.stderr


BAD_HOSTFILES = {
    "bad-ip": ([{"ssh": "localhost", "ips": ["127.0.0.1"]}, {"ssh": "m3", "ips": ["10.0.0.300"]}], "entry 1"),
    "no-ssh": ([{"ips": ["127.0.0.1"]}], "entry 0"),
    "bad-port": ([["127.0.0.1:70000"]], "entry 0"),
    "typo-key": ([{"ssh": "localhost", "ipz": ["127.0.0.1"]}], "ipz"),
    "not-a-list": ({"ssh": "localhost"}, "list"),
}


@pytest.mark.parametrize("case", sorted(BAD_HOSTFILES))
def test_bad_hostfile_entry_is_a_clear_error(k2, tiny, tmp_path, case):
    content, needle = BAD_HOSTFILES[case]
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps(content))
    p = run(k2, ["launch", "--hostfile", hostfile, "--", "pipeline", "--model", tiny["kimi"], "--ids", "1"], timeout=30)
    assert p.returncode == 2, p.stderr
    assert "error:" in p.stderr and needle in p.stderr and str(hostfile) in p.stderr, p.stderr
    hostfile.write_text("[{\"ssh\": \"localhost\",")
    p = run(k2, ["launch", "--hostfile", hostfile, "--", "pipeline", "--model", tiny["kimi"], "--ids", "1"], timeout=30)
    assert p.returncode == 2 and "not valid JSON" in p.stderr, p.stderr


def test_stage_count_mismatch_is_reported(k2, tiny):
    p = run(k2, ["launch", "-n", 2, "--starting-port", free_ports(2), "--", "pipeline", "--model", tiny["kimi"],
                 "--ids", "1,2", "--stages", "0:4"], timeout=TIMEOUT)
    assert p.returncode == 2, p.stderr
    assert "1 stages are given but the job has 2 ranks" in p.stderr


def test_mpi_backend_without_libmpi_names_what_is_missing(k2, tiny):
    """MLX's MPI backend dlopen()s the unversioned libmpi.so; with only Open MPI's runtime installed the rank
    must say so (it used to say "Cannot initialize MPI ... hostfile addresses are reachable")."""
    import ctypes

    try:
        ctypes.CDLL("libmpi.so")
        pytest.skip("libmpi.so is installed here, so the MPI backend can start")
    except OSError:
        pass
    p = run(k2, ["pipeline", "--backend", "mpi", "--model", tiny["kimi"], "--ids", "1,2", "--max-tokens", 1], timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "libmpi.so" in p.stderr and "libopenmpi-dev" in p.stderr, p.stderr
