# pytest fixtures for the parity suite: the session Workspace (tiny checkpoints and mlx-lm reference outputs,
# built on first use and cached in tests/.work/) and the k2mlx binary. Tests that need the binary are skipped,
# with the reason, when it does not exist; a binary that exists but misbehaves fails them.
from __future__ import annotations

import os

import pytest

import k2parity


def pytest_report_header(config):
    b = k2parity.engine_bin()
    device = "cpu (no mlx-lm bf16 run for unquantized MoE)" if k2parity.mlx_device_is_cpu() else "gpu"
    return [f"k2mlx binary: {b} ({'found' if b.exists() else 'MISSING'})", f"mlx device: {device}"]


@pytest.fixture(scope="session")
def ws() -> k2parity.Workspace:
    return k2parity.Workspace()


@pytest.fixture(scope="session")
def engine():
    if os.environ.get("K2MLX_SKIP_ENGINE"):
        pytest.skip("K2MLX_SKIP_ENGINE is set: engine-side tests disabled on request")
    b = k2parity.engine_bin()
    if not b.exists():
        pytest.skip(f"k2mlx binary not found at {b} (build it, or point K2MLX_BIN at it)")
    return b
