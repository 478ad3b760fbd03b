# Fixtures of the multi-rank pipeline suite: the k2mlx binary (the parent conftest's `engine` fixture)
# and tiny float32 Kimi-K2- and DeepSeek-V3-shaped checkpoints written once per session.
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def k2(engine) -> Path:
    return Path(engine)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("pipeline-models")
    models = {}
    for structure in ("kimi", "deepseek"):
        d = out / structure
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_tiny_model.py"), "--structure", structure,
                        "--out", str(d), "--dtype", "float32"], check=True, capture_output=True, timeout=120)
        models[structure] = d
    return models
