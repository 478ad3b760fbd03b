#!/usr/bin/env python3
# Reference outputs from mlx-lm (the implementation k2mlx is checked against): logits for given ids and
# greedy continuations with mlx-lm's own model code and KV cache, in float32 or the checkpoint's dtype.
# Owns the small compatibility shims mlx-lm needs for the tiny checkpoints; owns no model math.
"""Run mlx-lm on a model folder.

  reference.py logits   --model DIR --ids 1,2,3 --out F.npy [--all-positions] [--dtype float32|bfloat16|native]
  reference.py generate --model DIR --ids 1,2,3 --max-tokens N --ids-out F.json [--dtype ...]

--dtype float32 casts every floating parameter (norms, dense weights, quantization scales and biases) to
float32 after loading; this is lossless for bf16 sources, so it gives the exact math of the stored weights.
e_score_correction_bias is already float32 (mlx-lm never casts it). `native` keeps the loaded dtypes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

_COMPAT_INSTALLED = False
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")


def install_mlx_lm_compat() -> None:
    """Generalise one hard-coded constant of mlx-lm 0.32.2: deepseek_v3.Model.sanitize drops the
    multi-token-prediction layer by the literal prefix `model.layers.61` (DeepSeek-V3's layer count).
    The tiny DeepSeek checkpoints keep their MTP layer at `model.layers.<num_hidden_layers>`, so drop every
    layer index >= num_hidden_layers first — exactly what mlx-lm does for the real 61-layer model."""
    global _COMPAT_INSTALLED
    if _COMPAT_INSTALLED:
        return
    from mlx_lm.models import deepseek_v3

    original = deepseek_v3.Model.sanitize

    def sanitize(self, weights):
        n = self.args.num_hidden_layers
        kept = {}
        for k, v in weights.items():
            m = _LAYER_RE.match(k)
            if m is None or int(m.group(1)) < n:
                kept[k] = v
        return original(self, kept)

    deepseek_v3.Model.sanitize = sanitize
    _COMPAT_INSTALLED = True


def stop_ids(model_dir: str | Path) -> set[int]:
    """EOS ids a generator stops on: config.json eos_token_id plus generation_config.json's (mlx-lm lets the
    latter replace the former; an engine stopping on both is the safe superset)."""
    model_dir = Path(model_dir)
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        p = model_dir / name
        if p.exists():
            v = json.loads(p.read_text()).get("eos_token_id")
            if v is not None:
                ids.update(v if isinstance(v, list) else [v])
    return ids


def load(model_dir: str | Path, dtype: str = "native"):
    """Load with mlx-lm's loader (sanitize: FP8 dequant, expert stacking, kv_b split; per-module quantization
    from config, else inferred from shapes). Returns (model, config)."""
    import mlx.core as mx
    from mlx.utils import tree_map_with_path
    from mlx_lm.utils import load_model

    install_mlx_lm_compat()
    model, config = load_model(Path(model_dir), lazy=False)
    if dtype != "native":
        target = {"float32": mx.float32, "bfloat16": mx.bfloat16}[dtype]
        keep = getattr(model, "cast_predicate", lambda _k: True)

        def cast(k, v):
            if mx.issubdtype(v.dtype, mx.floating) and keep(k):
                return v.astype(target)
            return v

        model.update(tree_map_with_path(cast, model.parameters()))
        mx.eval(model.parameters())
    return model, config


def logits(model, ids: list[int], all_positions: bool = False) -> np.ndarray:
    """One-shot forward of `ids` (no cache). float32 [vocab] (last position) or [len(ids), vocab]."""
    import mlx.core as mx

    out = model(mx.array([ids], dtype=mx.int32))[0]
    if not all_positions:
        out = out[-1]
    out = out.astype(mx.float32)
    mx.eval(out)
    return np.array(out)


def greedy(model, ids: list[int], max_tokens: int, stop: set[int] | None = None) -> tuple[list[int], list[float]]:
    """Plain argmax loop with mlx-lm's KV cache, arranged like mlx-lm's generate_step: the prompt but its last
    token fills the cache, the last token then runs as the first single-token step, then one token at a time.
    Returns (generated ids, top-1 minus top-2 logit margin at every step) — the margins tell a tie-induced
    divergence from a real one."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    stop = stop or set()
    cache = make_prompt_cache(model)
    if len(ids) > 1:
        model(mx.array([ids[:-1]], dtype=mx.int32), cache=cache)
        mx.eval([c.state for c in cache])
    step_in = mx.array([ids[-1:]], dtype=mx.int32)
    tokens: list[int] = []
    margins: list[float] = []
    for _ in range(max_tokens):
        last = model(step_in, cache=cache)[0, -1].astype(mx.float32)
        top2 = mx.topk(last, 2)
        nxt = mx.argmax(last)
        mx.eval(nxt, top2)
        t = int(nxt.item())
        lo, hi = sorted(np.array(top2).tolist())
        tokens.append(t)
        margins.append(hi - lo)
        if t in stop:
            break
        step_in = mx.array([[t]], dtype=mx.int32)
    return tokens, margins


def parse_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError as e:
        raise SystemExit(f"--ids: expected comma-separated integers, got {text!r}") from e
    if not ids:
        raise SystemExit("--ids: no ids given")
    return ids


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("logits", "generate"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--ids", required=True)
        p.add_argument("--dtype", choices=["float32", "bfloat16", "native"], default="native")
        if name == "logits":
            p.add_argument("--out", required=True, help=".npy file (float32)")
            p.add_argument("--all-positions", action="store_true")
        else:
            p.add_argument("--max-tokens", type=int, required=True)
            p.add_argument("--ids-out", required=True, help="JSON array of generated ids")
            p.add_argument("--margins-out", help="optional JSON array of per-step top-2 margins")
    a = ap.parse_args(argv)
    ids = parse_ids(a.ids)
    model, _ = load(a.model, a.dtype)
    if a.cmd == "logits":
        np.save(a.out, logits(model, ids, a.all_positions))
    else:
        toks, margins = greedy(model, ids, a.max_tokens, stop_ids(a.model))
        Path(a.ids_out).write_text(json.dumps(toks) + "\n")
        if a.margins_out:
            Path(a.margins_out).write_text(json.dumps(margins) + "\n")


if __name__ == "__main__":
    sys.exit(main())
