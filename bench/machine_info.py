# One line describing the machine a benchmark ran on (OS, CPU model, cores, MLX version and device),
# printed with every benchmark table so numbers are never separated from where they were measured.
from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # macOS has no /proc; platform.processor() is informative there
    import mlx.core as mx

    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, MLX {mx.__version__}, {mx.default_device()}"
