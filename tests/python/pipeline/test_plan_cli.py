# `k2mlx plan` from the command line: the founding case (Kimi-K2 config, 192 GB + 512 GB, 40,000 tokens)
# at 3-bit fits with the 192 GB node under 160 GB; 4-bit at default wired limits is refused with how much
# is missing where, and fits once the limits are raised; bad node specs are clear errors.
from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline_util import run

CONFIG = Path(__file__).resolve().parents[4] / "shared" / "data" / "kimi-k2-instruct.config.json"
NODES = ["--node", "m2:192GB:800", "--node", "m3:512GB:819", "--context", 40000]


def _stage_totals(stdout: str) -> dict[str, float]:
    """{node: total GB} from the first plan table."""
    totals = {}
    for line in stdout.splitlines():
        m = re.match(r"(m2|m3)\s+\[\d+,\d+\)\s+\d+\s+([\d.]+) GB\s+([\d.]+) GB\s+([\d.]+) GB\s+([\d.]+) GB", line)
        if m and m.group(1) not in totals:
            totals[m.group(1)] = float(m.group(5))
    return totals


def test_founding_case_3bit_fits_with_m2_under_160gb(k2, tmp_path):
    out = tmp_path / "plan.json"
    p = run(k2, ["plan", "--config", CONFIG, "--quant", "3:64", *NODES, "--json-out", out], timeout=60)
    assert p.returncode == 0, p.stderr
    assert "fits" in p.stdout
    totals = _stage_totals(p.stdout)
    assert set(totals) == {"m2", "m3"} and totals["m2"] < 160, p.stdout
    stages = json.loads(out.read_text())["stages"]
    assert stages[0]["first"] == 0 and stages[0]["last"] == stages[1]["first"] and stages[1]["last"] == 61
    assert stages[0]["total"] < 160e9


def test_founding_case_4bit_reports_what_is_missing_then_fits_with_raised_limits(k2):
    p = run(k2, ["plan", "--config", CONFIG, "--quant", "4:64", *NODES], timeout=60)
    assert p.returncode == 2
    assert "does not fit" in p.stderr and "missing" in p.stderr and "node m3" in p.stderr, p.stderr
    p = run(k2, ["plan", "--config", CONFIG, "--quant", "4:64", *NODES, "--usable", "m2=160GB", "--usable", "m3=480GB"],
            timeout=60)
    assert p.returncode == 0, p.stderr
    assert _stage_totals(p.stdout)["m2"] <= 160


def test_bad_node_spec_is_a_clear_error(k2):
    p = run(k2, ["plan", "--config", CONFIG, "--node", "m2=192", "--node", "m3:512"], timeout=60)
    assert p.returncode == 2 and "m2=192" in p.stderr, p.stderr
    p = run(k2, ["plan", "--config", CONFIG, "--node", "m2:192", "--usable", "m9=100GB"], timeout=60)
    assert p.returncode == 2 and "m9" in p.stderr, p.stderr


def test_out_of_range_values_name_the_flag(k2):
    for flags, words in [
        (["--context", "1000000000000"], "--context"),
        (["--context", "1e20"], "--context"),
        (["--sequences", "1e12"], "--sequences"),
        (["--prefill-chunk", "0"], "--prefill-chunk"),
        (["--context", "2.5"], "--context"),
        (["--node", "m2:-192GB"], "negative"),
        (["--node", "m2:192GB", "--node", "m2:512GB"], "both named 'm2'"),
        (["--node", "m2:192GB", "--usable", "m2=900GB"], "--usable 'm2=900GB'"),
    ]:
        nodes = [] if "--node" in flags else ["--node", "m2:192GB:800", "--node", "m3:512GB:819"]
        p = run(k2, ["plan", "--config", CONFIG, "--quant", "3:64", *nodes, *flags], timeout=60)
        assert p.returncode == 2, (flags, p.returncode, p.stderr)
        assert words in p.stderr, (flags, p.stderr)
