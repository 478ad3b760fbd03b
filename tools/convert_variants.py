#!/usr/bin/env python3
# MLX-format variants of a tiny HF checkpoint, produced by mlx-lm's own converter (mlx_lm.convert), plus two
# derived cases no converter writes on purpose: 3-bit tensors under a 4-bit global, and a mixed recipe with
# its per-module overrides stripped (loaders must infer bits/group from tensor shapes). Owns no model math.
"""Produce MLX variants of a Hugging Face-layout checkpoint with mlx_lm.convert.

  convert_variants.py --src HF_DIR --out-root DIR [--only q4,mixed_3_6,...] [--list]

Each variant lands in DIR/<name>. Variant names and recipes: see VARIANTS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference import install_mlx_lm_compat  # noqa: E402

# name -> recipe. `bits`/`group` go to mlx_lm.convert as q_bits/q_group_size; `predicate` is a built-in
# mlx-lm recipe name; `derive` post-edits another variant's config.json (see _derive_*).
VARIANTS: dict[str, dict] = {
    "q2": {"bits": 2, "group": 64},
    "q3": {"bits": 3, "group": 64},
    "q4": {"bits": 4, "group": 64},
    "q5": {"bits": 5, "group": 64},
    "q6": {"bits": 6, "group": 64},
    "q8": {"bits": 8, "group": 64},
    "q4_g32": {"bits": 4, "group": 32},
    "q4_g128": {"bits": 4, "group": 128},
    "q3_g32": {"bits": 3, "group": 32},
    # --q-group-size deliberately not passed, as in a plain `mlx_lm convert --quant-predicate mixed_3_6`:
    # mlx-lm then records per-module group_size as null (spec §6.3).
    "mixed_3_6": {"predicate": "mixed_3_6"},
    "mixed_3_6_g64": {"predicate": "mixed_3_6", "group": 64},
    "q3_under_q4": {"derive": "q3"},
    "mixed_3_6_no_overrides": {"derive": "mixed_3_6"},
}


def convert_one(src: Path, dst: Path, recipe: dict, quiet: bool = True) -> None:
    """One mlx_lm.convert call, in-process (importing mlx-lm once is most of the cost of a tiny conversion)."""
    from mlx_lm.convert import convert

    install_mlx_lm_compat()
    if dst.exists():
        shutil.rmtree(dst)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        convert(
            str(src),
            str(dst),
            quantize=True,
            q_bits=recipe.get("bits"),
            q_group_size=recipe.get("group"),
            quant_predicate=recipe.get("predicate"),
            # The kimi folder's config class lives in configuration_deepseek.py (auto_map), as in the release.
            trust_remote_code=True,
        )


def _derive_q3_under_q4(base: Path, dst: Path) -> None:
    """3-bit tensors, config says 4-bit: a plain 3-bit conversion has no per-module entries, so only the
    global needs editing. mlx-lm still loads it (it infers bits from shapes for unlisted modules)."""
    shutil.copytree(base, dst)
    cfg = json.loads((dst / "config.json").read_text())
    q = {"group_size": cfg["quantization"]["group_size"], "bits": 4, "mode": "affine"}
    cfg["quantization"] = dict(q)
    cfg["quantization_config"] = dict(q)
    (dst / "config.json").write_text(json.dumps(cfg, indent=4) + "\n")


def _derive_no_overrides(base: Path, dst: Path) -> None:
    """mixed 3/6-bit tensors with only the global entry ({group 64, bits 4}) left in config.json: the
    'Expected shape (..., 896) but received (..., 672)' situation of spec §6.4, where the loader must infer
    every module's bits (3 or 6) from shapes."""
    shutil.copytree(base, dst)
    cfg = json.loads((dst / "config.json").read_text())
    g = cfg["quantization"]
    q = {"group_size": g.get("group_size") or 64, "bits": g.get("bits") or 4, "mode": g.get("mode", "affine")}
    cfg["quantization"] = dict(q)
    cfg["quantization_config"] = dict(q)
    (dst / "config.json").write_text(json.dumps(cfg, indent=4) + "\n")


_DERIVERS = {"q3_under_q4": _derive_q3_under_q4, "mixed_3_6_no_overrides": _derive_no_overrides}


def make_variant(name: str, src: Path, out_root: Path, quiet: bool = True) -> Path:
    """Build variant `name` of `src` under out_root/name (building the variant it derives from if needed)."""
    recipe = VARIANTS[name]
    dst = out_root / name
    if dst.exists():
        shutil.rmtree(dst)
    if "derive" in recipe:
        base = out_root / recipe["derive"]
        if not (base / "config.json").exists():
            make_variant(recipe["derive"], src, out_root, quiet)
        _DERIVERS[name](base, dst)
    else:
        convert_one(src, dst, recipe, quiet)
    return dst


def folder_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.iterdir() if f.is_file())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", help="HF-layout folder (bf16, fp32 or FP8)")
    ap.add_argument("--out-root", help="variants are written to OUT_ROOT/<name>")
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    ap.add_argument("--list", action="store_true", help="print the variant table and exit")
    ap.add_argument("--verbose", action="store_true", help="show mlx_lm.convert's own output")
    a = ap.parse_args(argv)
    if a.list:
        for k, v in VARIANTS.items():
            print(f"{k:24s} {v}")
        return
    if not a.src or not a.out_root:
        ap.error("--src and --out-root are required")
    names = a.only.split(",") if a.only else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    out_root = Path(a.out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    for n in names:
        t = time.time()
        p = make_variant(n, Path(a.src), out_root, quiet=not a.verbose)
        print(f"{n:24s} {folder_size(p) / 2**20:7.2f} MiB  {time.time() - t:5.1f} s  -> {p}")


if __name__ == "__main__":
    main()
