#!/usr/bin/env python3
# Writes tiny random Kimi-K2 / DeepSeek-V3 checkpoints in the layout of the ORIGINAL Hugging Face releases
# (per-expert tensors, kv_b_proj, optional FP8 + 128x128 weight_scale_inv, optional shards + index) plus
# config.json, generation_config.json and a small byte-level BPE tokenizer. MLX-format variants: convert_variants.py.
"""Tiny random checkpoints with the structure of Kimi-K2 (`kimi`) and DeepSeek-V3 (`deepseek`).

Usage:
  make_tiny_model.py --structure kimi --out DIR [--dtype bfloat16|float32] [--fp8] [--shards N] [--seed S]

Every quantizable input dimension is a multiple of 128, so affine group sizes 32/64/128 and bits 2..8 all
apply to every Linear. Weights are drawn per tensor from a generator seeded by (seed, tensor name), so a
tensor's values do not depend on which other tensors exist.
"""

from __future__ import annotations

import argparse
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
from safetensors import TensorSpec, serialize_file

# Dimensions shared by both structures. hidden / ranks / head dims / FFN widths are multiples of 128 so every
# quantized input dim fits group 128; kv_a's output (kv_lora_rank + rope 64 = 192) is NOT a multiple of 128,
# which exercises the padded last FP8 block exactly like the real 576-row kv_a_proj_with_mqa.
_COMMON = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "hidden_act": "silu",
    "hidden_size": 256,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "kv_lora_rank": 128,
    "moe_intermediate_size": 128,
    "moe_layer_freq": 1,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "q_lora_rank": 128,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_method": "noaux_tc",
    "use_cache": True,
    "v_head_dim": 128,
}

# Kimi-K2: one dense layer, a single routing group, YaRN with beta 1/1 (a hard step), theta 50000.
# Special ids sit at vocab-256.. like the real 163584.. block; eos (config) and <|im_end|>
# (generation_config) are two different ids as in the release.
_KIMI = {
    "model_type": "kimi_k2",
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "first_k_dense_replace": 1,
    "n_routed_experts": 16,
    "num_experts_per_tok": 4,
    "n_group": 1,
    "topk_group": 1,
    "routed_scaling_factor": 2.827,
    "rope_theta": 50000.0,
    "rope_scaling": {
        "beta_fast": 1.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "max_position_embeddings": 131072,
    "num_nextn_predict_layers": 0,
    "pretraining_tp": 1,
    "vocab_size": 1536,
    "bos_token_id": 1280,
    "eos_token_id": 1281,
}

# DeepSeek-V3: three dense layers, group-limited routing (8 groups of 4, keep 4), theta 10000, YaRN 40 with
# beta 32/1, and one MTP layer stored as model.layers.<num_hidden_layers>.* that loaders must skip.
_DEEPSEEK = {
    "model_type": "deepseek_v3",
    "num_hidden_layers": 5,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "first_k_dense_replace": 3,
    "n_routed_experts": 32,
    "num_experts_per_tok": 4,
    "n_group": 8,
    "topk_group": 4,
    "routed_scaling_factor": 2.5,
    "rope_theta": 10000,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "max_position_embeddings": 163840,
    "num_nextn_predict_layers": 1,
    "vocab_size": 1280,
    "bos_token_id": 0,
    "eos_token_id": 1,
}

STRUCTURES = {"kimi": _KIMI, "deepseek": _DEEPSEEK}

# Kimi special tokens relative to bos (spec §7.3: 163584 + offset); gaps are real.
_KIMI_SPECIALS = {
    0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>",
    6: "<|start_header_id|>", 7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>",
    11: "<|tool_calls_section_begin|>", 12: "<|tool_calls_section_end|>", 13: "<|tool_call_begin|>",
    14: "<|tool_call_argument_begin|>", 15: "<|tool_call_end|>", 17: "<|im_middle|>",
}

FP8_BLOCK = 128
FP8_MAX = 448.0  # largest finite float8_e4m3fn


def make_config(structure: str, dtype: str, fp8: bool) -> dict:
    cfg = dict(_COMMON)
    cfg.update(json.loads(json.dumps(STRUCTURES[structure])))
    cfg["torch_dtype"] = "bfloat16" if fp8 else dtype
    if structure == "kimi":
        # As in the release: transformers has no built-in `kimi_k2` config type, so the folder ships one
        # (tokenizer loading via AutoTokenizer needs it; pass trust_remote_code to mlx-lm / transformers).
        cfg["auto_map"] = {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}
    if fp8:
        cfg["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [FP8_BLOCK, FP8_BLOCK],
        }
    return dict(sorted(cfg.items()))


def stop_ids(cfg: dict, structure: str) -> list[int]:
    """Every id a generator may stop on: config eos plus generation_config eos."""
    ids = {cfg["eos_token_id"]}
    if structure == "kimi":
        ids.add(cfg["bos_token_id"] + 2)  # <|im_end|>, which generation_config names
    return sorted(ids)


# ----------------------------------------------------------------------------------------------------------
# Weights (float32 numpy; encoded to the target dtype at write time)


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _normal(seed, name, shape, std):
    return (_rng(seed, name).standard_normal(shape) * std).astype(np.float32)


def _norm_weight(seed, name, n):
    # Around 1 so the RMSNorm gain matters (a wrong eps/weight is visible) without distorting magnitudes.
    return (1.0 + 0.1 * _rng(seed, name).standard_normal(n)).astype(np.float32)


def _attention(w, seed, p, cfg):
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    qr, kvr = cfg["q_lora_rank"], cfg["kv_lora_rank"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    a = p + "self_attn."
    w[a + "q_a_proj.weight"] = _normal(seed, a + "q_a_proj.weight", (qr, H), H**-0.5)
    w[a + "q_a_layernorm.weight"] = _norm_weight(seed, a + "q_a_layernorm.weight", qr)
    w[a + "q_b_proj.weight"] = _normal(seed, a + "q_b_proj.weight", (nh * (dn + dr), qr), qr**-0.5)
    w[a + "kv_a_proj_with_mqa.weight"] = _normal(seed, a + "kv_a_proj_with_mqa.weight", (kvr + dr, H), H**-0.5)
    w[a + "kv_a_layernorm.weight"] = _norm_weight(seed, a + "kv_a_layernorm.weight", kvr)
    w[a + "kv_b_proj.weight"] = _normal(seed, a + "kv_b_proj.weight", (nh * (dn + dv), kvr), kvr**-0.5)
    w[a + "o_proj.weight"] = _normal(seed, a + "o_proj.weight", (H, nh * dv), 0.7 * (nh * dv) ** -0.5)
    w[p + "input_layernorm.weight"] = _norm_weight(seed, p + "input_layernorm.weight", H)
    w[p + "post_attention_layernorm.weight"] = _norm_weight(seed, p + "post_attention_layernorm.weight", H)


def _mlp(w, seed, p, hidden, inter, out_gain):
    w[p + "gate_proj.weight"] = _normal(seed, p + "gate_proj.weight", (inter, hidden), hidden**-0.5)
    w[p + "up_proj.weight"] = _normal(seed, p + "up_proj.weight", (inter, hidden), hidden**-0.5)
    w[p + "down_proj.weight"] = _normal(seed, p + "down_proj.weight", (hidden, inter), out_gain * inter**-0.5)


def _moe(w, seed, p, cfg):
    H, E, I = cfg["hidden_size"], cfg["n_routed_experts"], cfg["moe_intermediate_size"]
    m = p + "mlp."
    # Router logits with std ~2.5 spread the sigmoid scores so the top-k choice is usually clear-cut;
    # a small fp32 correction bias still changes some selections (it is used for selection only).
    w[m + "gate.weight"] = _normal(seed, m + "gate.weight", (E, H), 2.5 * H**-0.5)
    w[m + "gate.e_score_correction_bias"] = _normal(seed, m + "gate.e_score_correction_bias", (E,), 0.05)
    for e in range(E):
        _mlp(w, seed, f"{m}experts.{e}.", H, I, 0.5)
    _mlp(w, seed, m + "shared_experts.", H, I * cfg["n_shared_experts"], 0.5)


def generate_weights(cfg: dict, structure: str, seed: int) -> dict[str, np.ndarray]:
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    w: dict[str, np.ndarray] = {}
    w["model.embed_tokens.weight"] = _normal(seed, "model.embed_tokens.weight", (V, H), 1.0)
    n_layers = cfg["num_hidden_layers"]
    for layer in range(n_layers + cfg.get("num_nextn_predict_layers", 0)):
        p = f"model.layers.{layer}."
        _attention(w, seed, p, cfg)
        if layer < cfg["first_k_dense_replace"]:
            _mlp(w, seed, p + "mlp.", H, cfg["intermediate_size"], 1.0)
        else:
            _moe(w, seed, p, cfg)
        if layer >= n_layers:
            # DeepSeek-V3's multi-token-prediction extras (model.layers.61.* in the release).
            w[p + "embed_tokens.weight"] = _normal(seed, p + "embed_tokens.weight", (V, H), 1.0)
            w[p + "enorm.weight"] = _norm_weight(seed, p + "enorm.weight", H)
            w[p + "hnorm.weight"] = _norm_weight(seed, p + "hnorm.weight", H)
            w[p + "eh_proj.weight"] = _normal(seed, p + "eh_proj.weight", (H, 2 * H), (2 * H) ** -0.5)
            w[p + "shared_head.norm.weight"] = _norm_weight(seed, p + "shared_head.norm.weight", H)
            w[p + "shared_head.head.weight"] = _normal(seed, p + "shared_head.head.weight", (V, H), 3 * H**-0.5)
    w["model.norm.weight"] = _norm_weight(seed, "model.norm.weight", H)
    head = _normal(seed, "lm_head.weight", (V, H), 3.0 * H**-0.5)
    # Zero rows give the stop ids a logit of exactly 0 while the top logit of ~V random ones is far above 0,
    # so greedy generation never stops early and both sides always produce the requested token count.
    head[stop_ids(cfg, structure)] = 0.0
    w["lm_head.weight"] = head
    return w


def is_fp8_linear(name: str) -> bool:
    """Which tensors the original release stores as FP8 (spec §2.1): every Linear weight except the router,
    embeddings and heads; norms and the correction bias stay BF16/FP32."""
    if not name.endswith(".weight") or "norm" in name:
        return False
    if name.endswith("mlp.gate.weight") or "embed_tokens" in name or "lm_head" in name or "shared_head.head" in name:
        return False
    module = name.split(".")[-2]
    return module.endswith("_proj") or module == "kv_a_proj_with_mqa"


# ----------------------------------------------------------------------------------------------------------
# Encoding


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even, as every framework's cast does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    u = u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
    return (u >> np.uint32(16)).astype(np.uint16)


def fp8_quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [out, in] -> (float8_e4m3fn bytes [out, in], scale_inv float32 [ceil(out/128), ceil(in/128)]).

    Each block's scale is amax/448 rounded UP to 4 significant bits: the scale is then not a power of two
    (like the real release) yet fp8 (4 significant bits) x scale has at most 8 significant bits, so the
    dequantized weight is exactly representable in bfloat16. That makes mlx-lm's dequantize-to-bf16 lossless,
    so an engine that dequantizes in float32 and one that dequantizes in bf16 see identical weights.
    """
    import mlx.core as mx  # fp8 encoding: mlx's own e4m3 conversion (numpy has no float8 dtype)

    out, inn = w.shape
    ro, ri = -(-out // FP8_BLOCK), -(-inn // FP8_BLOCK)
    padded = np.zeros((ro * FP8_BLOCK, ri * FP8_BLOCK), np.float32)
    padded[:out, :inn] = w
    blocks = padded.reshape(ro, FP8_BLOCK, ri, FP8_BLOCK)
    amax = np.abs(blocks).max(axis=(1, 3))
    mant, expo = np.frexp(np.maximum(amax, 1e-12) / FP8_MAX)
    scale = np.ldexp(np.ceil(mant * 16.0) / 16.0, expo).astype(np.float32)
    scaled = (blocks / scale[:, None, :, None]).reshape(padded.shape)[:out, :inn]
    q = np.array(mx.to_fp8(mx.array(np.ascontiguousarray(scaled))))
    return q.astype(np.uint8), scale


def fp8_dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    import mlx.core as mx

    vals = np.array(mx.from_fp8(mx.array(q), dtype=mx.float32))
    rows = np.repeat(np.repeat(scale, FP8_BLOCK, axis=0), FP8_BLOCK, axis=1)[: q.shape[0], : q.shape[1]]
    return vals * rows


def encode(weights: dict[str, np.ndarray], dtype: str, fp8: bool) -> dict[str, tuple[str, np.ndarray]]:
    """name -> (safetensors dtype name, contiguous numpy buffer holding the raw little-endian values)."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name, x in weights.items():
        if name.endswith("e_score_correction_bias"):
            out[name] = ("float32", x)  # fp32 in the release; mlx-lm's cast_predicate keeps it fp32
        elif fp8 and is_fp8_linear(name):
            q, s = fp8_quantize(x)
            out[name] = ("float8_e4m3fn", q)
            out[name + "_scale_inv"] = ("float32", s)
        elif fp8 or dtype == "bfloat16":
            out[name] = ("bfloat16", to_bf16_bits(x))
        else:
            out[name] = ("float32", np.ascontiguousarray(x, np.float32))
    return out


def _layer_key(name: str):
    # Stable on-disk order: globals, then layer by layer (a layer's tensors land in one or two shards only,
    # like the release), experts in numeric order.
    parts = name.split(".")
    if name.startswith("model.layers."):
        return (1, int(parts[2]), [s.zfill(6) if s.isdigit() else s for s in parts[3:]])
    return (0 if "embed" in name else 2, 0, [name])


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]], fmt: str = "pt") -> None:
    specs = {}
    for name, (dt, buf) in tensors.items():
        buf = np.ascontiguousarray(buf)
        specs[name] = TensorSpec(dtype=dt, shape=list(buf.shape), data_ptr=buf.ctypes.data, data_len=buf.nbytes)
    serialize_file(specs, str(path), metadata={"format": fmt})


def write_weights(out: Path, tensors: dict[str, tuple[str, np.ndarray]], shards: int) -> list[str]:
    names = sorted(tensors, key=_layer_key)
    if shards <= 1:
        write_safetensors(out / "model.safetensors", {n: tensors[n] for n in names})
        return ["model.safetensors"]
    total = sum(tensors[n][1].nbytes for n in names)
    target = total / shards
    groups: list[list[str]] = [[]]
    acc = 0
    for n in names:
        if acc >= target * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(n)
        acc += tensors[n][1].nbytes
    files = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for fname, group in zip(files, groups):
        write_safetensors(out / fname, {n: tensors[n] for n in group})
        weight_map.update({n: fname for n in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return files


# ----------------------------------------------------------------------------------------------------------
# Tokenizer: byte-level BPE trained on a deterministic pseudo-text; specials at the real relative ids.


def _corpus(seed: int, n_lines: int = 3000) -> list[str]:
    rng = np.random.default_rng([seed, 7])
    syll = [c + v for c in "bcdfghklmnprstvwz" for v in "aeiou"] + ["th", "sh", "qu", "ng", "st"]
    lines = []
    for _ in range(n_lines):
        words = []
        for _ in range(rng.integers(4, 12)):
            w = "".join(syll[i] for i in rng.integers(0, len(syll), rng.integers(1, 4)))
            words.append(w.capitalize() if rng.random() < 0.15 else w)
        if rng.random() < 0.3:
            words.append(str(rng.integers(0, 1000)))
        lines.append(" ".join(words) + rng.choice([".", ",", "!", "?", ";"]))
    return lines


def write_tokenizer(out: Path, cfg: dict, structure: str, seed: int, chat_template: str | None) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    V = cfg["vocab_size"]
    if structure == "kimi":
        base = cfg["bos_token_id"]
        specials = {base + off: name for off, name in _KIMI_SPECIALS.items()}
        lead: list[str] = []
        n_regular = base
        bos, eos = "[BOS]", "[EOS]"
    else:
        bos, eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
        lead = [bos, eos]  # ids 0 and 1, as in DeepSeek-V3
        specials = {}
        n_regular = V - 16
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_regular,
        special_tokens=lead,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer)
    # Pad with reserved specials so named specials land on their fixed ids (the embedding may have more rows
    # than the tokenizer has tokens, as in the real models).
    have = tok.get_vocab_size()
    top = max(specials) + 1 if specials else have
    extra = [specials.get(i, f"<|reserved_token_{i}|>") for i in range(have, top)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra])
    tok.save(str(out / "tokenizer.json"))
    tcfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": cfg["max_position_embeddings"],
    }
    if chat_template:
        tcfg["chat_template"] = chat_template
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2, ensure_ascii=False) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": bos, "eos_token": eos}, indent=2, ensure_ascii=False) + "\n"
    )


# Written next to the kimi checkpoint for `auto_map` (our own stand-in for the release's file).
_KIMI_CONFIG_PY = '''# Config class for a tiny kimi_k2 checkpoint: the DeepSeek-V3 config under the model type `kimi_k2`.
from transformers import DeepseekV3Config as _DeepseekV3Config


class DeepseekV3Config(_DeepseekV3Config):
    model_type = "kimi_k2"
'''


# ----------------------------------------------------------------------------------------------------------


def build(
    structure: str,
    out: str | Path,
    dtype: str = "bfloat16",
    fp8: bool = False,
    shards: int = 1,
    seed: int = 1234,
    chat_template: str | None = None,
) -> Path:
    """Write one tiny checkpoint folder; returns its path. Overwrites `out`."""
    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r}; expected one of {sorted(STRUCTURES)}")
    if dtype not in ("bfloat16", "float32"):
        raise ValueError(f"unsupported dtype {dtype!r}")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg = make_config(structure, dtype, fp8)
    weights = generate_weights(cfg, structure, seed)
    write_weights(out, encode(weights, dtype, fp8), shards)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    gen = {"_from_model_config": True, "bos_token_id": cfg["bos_token_id"], "do_sample": False}
    gen["eos_token_id"] = cfg["bos_token_id"] + 2 if structure == "kimi" else cfg["eos_token_id"]
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    write_tokenizer(out, cfg, structure, seed, chat_template)
    if structure == "kimi":
        (out / "configuration_deepseek.py").write_text(_KIMI_CONFIG_PY)
    for f in out.iterdir():
        f.chmod(0o644)  # serialize_file creates 0600 files
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--structure", choices=sorted(STRUCTURES), required=True)
    ap.add_argument("--out", required=True, help="output folder (replaced if it exists)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                    help="dtype of every tensor (without --fp8; with it, non-FP8 tensors are BF16 as in the release)")
    ap.add_argument("--fp8", action="store_true", help="original FP8 release layout with weight_scale_inv")
    ap.add_argument("--shards", type=int, default=1, help="number of safetensors shards (>1 writes an index)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--chat-template", help="optional jinja file stored as tokenizer_config chat_template")
    a = ap.parse_args(argv)
    tmpl = Path(a.chat_template).read_text() if a.chat_template else None
    path = build(a.structure, a.out, a.dtype, a.fp8, a.shards, a.seed, tmpl)
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"wrote {path} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
