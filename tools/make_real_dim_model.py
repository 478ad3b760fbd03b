#!/usr/bin/env python3
# Writes an MLX-format checkpoint with Kimi-K2's real dimensions (hidden 7168, 64 MLA heads, q_lora 1536,
# kv_lora 512, experts 2048 wide, vocabulary 163,840) but fewer layers and experts, with random packed
# weights: for speed and memory measurements only (the values are noise; speed does not depend on them).
"""Real-dimension Kimi-K2 checkpoint with random MLX-affine weights, as mlx-lm's converter lays it out.

  make_real_dim_model.py --out DIR [--layers 5] [--experts 48] [--bits 4] [--group 64] [--shards 6]

Layer 0 is dense (intermediate 18432) as in Kimi-K2; the others are MoE layers (top-8 of --experts, one shared
expert). Attention is stored as embed_q / unembed_out (mlx-lm's current layout). Scales are bf16, chosen so that
dequantized weights have the spread of a trained model's (|w| ~ 0.02); biases centre them on zero. Loads in
both k2mlx and mlx-lm (a tokenizer from make_tiny_model.py is written alongside, for tools that need one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_model as mtm  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "kimi-k2-instruct.config.json"


def config(layers: int, experts: int, bits: int, group: int) -> dict:
    cfg = json.loads(SHARED.read_text())
    cfg.pop("quantization_config", None)
    cfg.update(num_hidden_layers=layers, n_routed_experts=experts, model_type="deepseek_v3")
    cfg["quantization"] = {"group_size": group, "bits": bits}
    return cfg


def quantized(rng: np.random.Generator, shape: tuple[int, ...], bits: int, group: int) -> dict[str, tuple[str, np.ndarray]]:
    *lead, out, inp = shape
    packed = rng.integers(0, 2**32, size=(*lead, out, inp * bits // 32), dtype=np.uint32)
    levels = 2**bits - 1
    scale = np.full((*lead, out, inp // group), 0.04 / levels, dtype=np.float32)
    scale *= rng.uniform(0.5, 1.5, size=scale.shape).astype(np.float32)
    bias = -scale * levels / 2
    return {"weight": ("uint32", packed), "scales": ("bfloat16", mtm.to_bf16_bits(scale)),
            "biases": ("bfloat16", mtm.to_bf16_bits(bias))}


def tensors(cfg: dict, bits: int, group: int, seed: int):
    """Yields (name, (dtype, array)) one module at a time, so memory holds one module."""
    rng = np.random.default_rng(seed)
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    nope, rope, v = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    r, qr, E = cfg["kv_lora_rank"], cfg["q_lora_rank"], cfg["n_routed_experts"]
    I, Im = cfg["intermediate_size"], cfg["moe_intermediate_size"]

    def q(name, shape):
        for part, t in quantized(rng, shape, bits, group).items():
            yield f"{name}.{part}", t

    def norm(name, n):
        yield f"{name}.weight", ("bfloat16", mtm.to_bf16_bits(np.ones(n, dtype=np.float32)))

    yield from q("model.embed_tokens", (cfg["vocab_size"], D))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        yield from norm(f"{p}.input_layernorm", D)
        yield from norm(f"{p}.post_attention_layernorm", D)
        a = f"{p}.self_attn"
        yield from q(f"{a}.q_a_proj", (qr, D))
        yield from norm(f"{a}.q_a_layernorm", qr)
        yield from q(f"{a}.q_b_proj", (H * (nope + rope), qr))
        yield from q(f"{a}.kv_a_proj_with_mqa", (r + rope, D))
        yield from norm(f"{a}.kv_a_layernorm", r)
        yield from q(f"{a}.embed_q", (H, r, nope))
        yield from q(f"{a}.unembed_out", (H, v, r))
        yield from q(f"{a}.o_proj", (D, H * v))
        if i < cfg["first_k_dense_replace"]:
            for n, shape in (("gate_proj", (I, D)), ("up_proj", (I, D)), ("down_proj", (D, I))):
                yield from q(f"{p}.mlp.{n}", shape)
            continue
        router = rng.normal(0, 0.02, size=(E, D)).astype(np.float32)
        yield f"{p}.mlp.gate.weight", ("bfloat16", mtm.to_bf16_bits(router))
        yield f"{p}.mlp.gate.e_score_correction_bias", ("float32", np.zeros(E, dtype=np.float32))
        for n, shape in (("gate_proj", (E, Im, D)), ("up_proj", (E, Im, D)), ("down_proj", (E, D, Im))):
            yield from q(f"{p}.mlp.switch_mlp.{n}", shape)
        for n, shape in (("gate_proj", (Im, D)), ("up_proj", (Im, D)), ("down_proj", (D, Im))):
            yield from q(f"{p}.mlp.shared_experts.{n}", shape)
    yield from norm("model.norm", D)
    yield from q("lm_head", (cfg["vocab_size"], D))


def build(out: Path, layers: int, experts: int, bits: int, group: int, shards: int, seed: int = 0) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cfg = config(layers, experts, bits, group)
    # The random tensors are made once and held (a few GB), then cut into shards of about total/shards bytes.
    made = list(tensors(cfg, bits, group, seed))
    total = sum(t[1].nbytes for _, t in made)
    groups: list[dict] = [{}]
    size = 0
    for name, t in made:
        if groups[-1] and size >= total / max(1, shards) * len(groups) and len(groups) < shards:
            groups.append({})
        groups[-1][name] = t
        size += t[1].nbytes
    weight_map = {}
    for i, group_tensors in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        mtm.write_safetensors(out / fname, group_tensors)
        weight_map.update({n: fname for n in group_tensors})
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1) + "\n")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": [cfg["eos_token_id"]]}) + "\n")
    mtm.write_tokenizer(out, mtm.make_config("deepseek", "bfloat16", False), "deepseek", seed, None)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--experts", type=int, default=48)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--shards", type=int, default=6)
    a = ap.parse_args(argv)
    build(a.out, a.layers, a.experts, a.bits, a.group, a.shards)
    print(a.out)


if __name__ == "__main__":
    main()
