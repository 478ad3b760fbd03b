# The pipeline under Open MPI (`mpirun ... k2mlx pipeline --backend mpi`, as the README shows): 2 and 3
# ranks give the tokens `k2mlx generate` gives, a rank killed mid-generation ends the job with an error naming
# it, and without the unversioned libmpi.so (the runtime-only install) the rank says what to install.
# Skipped, with the reason, where Open MPI's mpirun is not installed (scripts/setup.sh installs it).
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pipeline_util import TIMEOUT, run, wait_exit, wait_for_tokens

PROMPT = "5,17,300,42,9,1000,77,3"
GEN = ["--max-tokens", "10", "--ignore-eos", "--dtype", "float32", "-q"]


def _open_mpi() -> str | None:
    mpirun = shutil.which("mpirun")
    if not mpirun:
        return None
    p = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30)
    return mpirun if "Open MPI" in p.stdout + p.stderr else None


MPIRUN = _open_mpi()
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="Open MPI's mpirun is not installed (openmpi-bin)")


def mpirun_cmd(n: int, k2: Path, args: list) -> list[str]:
    # Root needs Open MPI's explicit consent; --oversubscribe lets 3 ranks share 2 cores; binding would pin
    # every rank of a small machine to the same core.
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return [MPIRUN, *root, "--oversubscribe", "--bind-to", "none", "-np", str(n), str(k2), "pipeline", "--backend",
            "mpi", *map(str, args)]


@pytest.fixture(scope="module")
def reference(k2, tiny):
    refs = {}
    for structure, model in tiny.items():
        for tag, extra in (("greedy", ["--temp", "0"]), ("sampled", ["--temp", "0.9", "--top-k", "50", "--seed", "7"])):
            p = run(k2, ["generate", "--model", model, "--ids", PROMPT, *GEN, *extra])
            assert p.returncode == 0, p.stderr
            refs[structure, tag] = p.stdout.split()
            assert len(refs[structure, tag]) == 10
    return refs


@pytest.mark.parametrize("structure,ranks,stages", [("kimi", 2, None), ("deepseek", 3, "0:1,1:3,3:5")],
                         ids=["kimi-2r-auto", "deepseek-3r-0:1,1:3,3:5"])
@pytest.mark.parametrize("tag", ["greedy", "sampled"])
def test_mpirun_tokens_match_generate(k2, tiny, reference, structure, ranks, stages, tag):
    extra = ["--temp", "0"] if tag == "greedy" else ["--temp", "0.9", "--top-k", "50", "--seed", "7"]
    split = ["--stages", stages] if stages else []
    p = subprocess.run(mpirun_cmd(ranks, k2, ["--model", tiny[structure], "--ids", PROMPT, "--prefill-chunk", 3, *GEN,
                                              *split, *extra]),
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split() == reference[structure, tag], p.stderr[-3000:]


def mpi_ranks(mpirun_pid: int) -> dict[int, int]:
    """{OMPI_COMM_WORLD_RANK: pid} of mpirun's children (local ranks are its direct children), from /proc."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) != mpirun_pid:
                continue
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        for e in env:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                found[int(e.split(b"=", 1)[1])] = int(d.name)
    return found


def test_mpirun_killed_rank_ends_the_job_and_is_named(k2, tiny, tmp_path):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    job = subprocess.Popen(mpirun_cmd(2, k2, ["--model", tiny["kimi"], "--ids", "1,2,3", "--max-tokens", "100000",
                                              "--ignore-eos", "--dtype", "float32", "-q"]),
                           stdout=open(out, "w"), stderr=open(err, "w"), start_new_session=True)
    try:
        wait_for_tokens(out, 5, job)
        ranks = mpi_ranks(job.pid)
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGKILL)
        rc, waited = wait_exit(job, 30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    text = err.read_text()
    assert rc != 0
    assert "rank 1" in text and "signal 9" in text, text[-2000:]


def test_missing_libmpi_says_what_to_install(k2, tiny):
    """With libmpi.so hidden (a private mount namespace binds /dev/null over it, as on a runtime-only install)."""
    lib = next((p for p in (Path("/usr/lib/x86_64-linux-gnu/libmpi.so"), Path("/usr/lib/aarch64-linux-gnu/libmpi.so"),
                            Path("/usr/lib/libmpi.so")) if p.exists()), None)
    unshare = shutil.which("unshare")
    if lib is None or unshare is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare and an installed libmpi.so to hide")
    cmd = (f"mount --bind /dev/null {lib} || exit 77; exec {k2} pipeline --backend mpi --model {tiny['kimi']} "
           f"--ids 1,2 --max-tokens 2 -q")
    p = subprocess.run([unshare, "-m", "sh", "-c", cmd], capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode == 77 or "unshare failed" in p.stderr:
        pytest.skip(f"cannot make a private mount namespace here: {p.stderr.strip()}")
    assert p.returncode == 2, p.stderr
    assert "libmpi.so, which is not installed (apt-get install libopenmpi-dev)" in p.stderr, p.stderr
