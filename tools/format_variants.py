#!/usr/bin/env python3
# Checkpoint layouts no converter in the test environment writes, derived from the tiny checkpoints of
# make_tiny_model.py / convert_variants.py: compressed-tensors INT4 experts (K2-Thinking), an older MLX
# conversion holding a quantized kv_b_proj, and an MLX checkpoint re-sharded one layer per file. Owns no model math.
"""Derive extra checkpoint layouts from tiny HF / MLX checkpoints.

  format_variants.py int4     --src HF_BF16_DIR --out DIR
  format_variants.py kv-b     --src MLX_DIR --hf HF_BF16_DIR --out DIR
  format_variants.py reshard  --src DIR --out DIR

int4: routed experts as compressed-tensors pack-quantized (`weight_packed` int32 [out, in/8] holding signed int4
q in [-8, 7] as unsigned nibbles q+8, LSB first; `weight_scale` bf16 [out, in/32], symmetric, scale =
amax/7.5 as compressed-tensors computes it; `weight_shape` int64 [2]); every other tensor copied bit for bit.
kv-b: every layer's embed_q / unembed_out replaced by `kv_b_proj` = mx.quantize of the HF kv_b weight at the
MLX folder's own bits / group (what mlx_lm.convert wrote before Feb 2026). make_kv_b_dense: the float32
dequantization of such a kv_b_proj (the reference for it); make_head_dim: a smaller qk_nope_head_dim.
reshard: the same tensors, byte for byte, in one shard per layer (embedding with layer 0, norm and lm_head
with the last layer) plus model.safetensors.index.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np

INT4_GROUP = 32

# Modelled on moonshotai/Kimi-K2-Thinking's config.json: only routed experts are quantized (attention,
# shared experts, the dense layer's MLP and lm_head are in `ignore`). mlx-lm reads `quant_method` and `format`.
K2_THINKING_QUANTIZATION_CONFIG = {
    "config_groups": {
        "group_0": {
            "input_activations": None,
            "output_activations": None,
            "targets": ["Linear"],
            "weights": {
                "actorder": None,
                "block_structure": None,
                "dynamic": False,
                "group_size": INT4_GROUP,
                "num_bits": 4,
                "observer": "minmax",
                "observer_kwargs": {},
                "strategy": "group",
                "symmetric": True,
                "type": "int",
            },
        }
    },
    "format": "pack-quantized",
    "ignore": [
        "lm_head",
        "re:.*self_attn.*",
        "re:.*shared_experts.*",
        "re:.*mlp\\.(gate|up|gate_up|down)_proj.*",
    ],
    "kv_cache_scheme": None,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
}

_EXPERT_RE = re.compile(r"^model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj\.weight$")
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")

# ----------------------------------------------------------------------------------------------------------
# Raw safetensors I/O: tensors stay as (dtype string, shape, bytes), so every copied tensor is bit-identical.

_NP = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "U32": np.uint32, "BF16": np.uint16, "U8": np.uint8}


def read_raw(path: Path) -> tuple[dict[str, tuple[str, list[int], bytes]], dict]:
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    start = 8 + n
    out = {}
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], list(t["shape"]), data[start + a : start + b])
    return out, meta


def write_raw(path: Path, tensors: dict[str, tuple[str, list[int], bytes]], metadata: dict | None = None) -> None:
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, (dt, shape, buf) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [offset, offset + len(buf)]}
        offset += len(buf)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, buf in tensors.values():
            f.write(buf)
    Path(path).chmod(0o644)


def read_folder(folder: Path) -> dict[str, tuple[str, list[int], bytes]]:
    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(read_raw(f)[0])
    return out


def to_numpy(t: tuple[str, list[int], bytes]) -> np.ndarray:
    """float32 for BF16 / F32 tensors (exact), the stored integer type otherwise."""
    dt, shape, buf = t
    a = np.frombuffer(buf, dtype=_NP[dt]).reshape(shape)
    if dt == "BF16":
        return (a.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return a


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest bf16 value (ties to even), returned as float32 and as bf16 bit patterns."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    bits = ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype(np.uint16)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32), bits


def copy_side_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json" \
                and not f.name.startswith("."):
            shutil.copy(f, dst / f.name)


def write_index(dst: Path, weight_map: dict[str, str], total: int) -> None:
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (dst / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


# ----------------------------------------------------------------------------------------------------------
# compressed-tensors INT4


def int4_quantize(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 [out, in] -> (packed int32 [out, in/8], scale float32 [out, in/32] (bf16 values), scale bf16 bits).

    Symmetric group-32 quantization as compressed-tensors does it: scale = amax / ((7 - (-8)) / 2),
    q = clamp(round(w / scale), -8, 7), computed with the bf16-rounded scale that is stored."""
    out, inn = w.shape
    assert inn % INT4_GROUP == 0, f"in_features {inn} is not a multiple of {INT4_GROUP}"
    g = w.reshape(out, inn // INT4_GROUP, INT4_GROUP).astype(np.float32)
    amax = np.abs(g).max(axis=-1)
    scale, scale_bits = bf16_round(np.maximum(amax / 7.5, 1e-8))
    q = np.clip(np.rint(g / scale[..., None]), -8, 7).astype(np.int64)
    u = (q + 8).astype(np.uint32).reshape(out, inn // 8, 8)  # unsigned nibble u = q + 8
    word = np.zeros((out, inn // 8), np.uint32)
    for j in range(8):  # element j of a word in bits [4j, 4j + 4): LSB first
        word |= u[..., j] << np.uint32(4 * j)
    return word.view(np.int32), scale, scale_bits


def int4_dequantize(packed: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Plain-numpy inverse of int4_quantize: (nibble - 8) * scale. packed int32 [out, in/8], scale [out, in/32]."""
    words = packed.view(np.uint32)
    out, n8 = words.shape
    nib = np.stack([(words >> np.uint32(4 * j)) & np.uint32(0xF) for j in range(8)], axis=-1)  # [out, in/8, 8]
    q = nib.reshape(out, n8 * 8).astype(np.float32) - 8.0
    return q * np.repeat(scale.astype(np.float32), INT4_GROUP, axis=1)


def make_int4(src: Path, dst: Path) -> Path:
    """Routed experts of an HF bf16/fp32 checkpoint as compressed-tensors INT4; the rest copied unchanged."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    copy_side_files(src, dst)
    tensors = read_folder(src)
    out: dict[str, tuple[str, list[int], bytes]] = {}
    for name, t in tensors.items():
        if not _EXPERT_RE.match(name):
            out[name] = t
            continue
        w = to_numpy(t)
        packed, _, scale_bits = int4_quantize(w)
        base = name[: -len("weight")]
        out[base + "weight_packed"] = ("I32", list(packed.shape), packed.tobytes())
        out[base + "weight_scale"] = ("BF16", list(scale_bits.shape), scale_bits.tobytes())
        out[base + "weight_shape"] = ("I64", [2], np.array(w.shape, np.int64).tobytes())
    write_raw(dst / "model.safetensors", out)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["quantization_config"] = json.loads(json.dumps(K2_THINKING_QUANTIZATION_CONFIG))
    cfg["torch_dtype"] = "bfloat16"
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst


# ----------------------------------------------------------------------------------------------------------
# Older MLX conversion: quantized kv_b_proj instead of embed_q / unembed_out


def make_kv_b(src_mlx: Path, hf: Path, dst: Path) -> Path:
    import mlx.core as mx

    src_mlx, hf, dst = Path(src_mlx), Path(hf), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    copy_side_files(src_mlx, dst)
    cfg = json.loads((src_mlx / "config.json").read_text())
    w: dict = {}
    for f in sorted(src_mlx.glob("*.safetensors")):
        w.update(mx.load(str(f)))
    hf_w: dict = {}
    for f in sorted(hf.glob("*.safetensors")):
        hf_w.update(mx.load(str(f)))
    r = cfg["kv_lora_rank"]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}.self_attn."
        # The MLX folder's own bits / group for these modules (from the tensors, as every loader infers them).
        bits = w[p + "unembed_out.weight"].shape[-1] * 32 // r
        group = r // w[p + "unembed_out.scales"].shape[-1]
        for k in [k for k in w if k.startswith(p + "embed_q.") or k.startswith(p + "unembed_out.")]:
            del w[k]
        kv_b = hf_w[p + "kv_b_proj.weight"]  # [heads * (nope + v), kv_lora], as the HF release stores it
        assert kv_b.shape == (cfg["num_attention_heads"] * (cfg["qk_nope_head_dim"] + cfg["v_head_dim"]), r)
        q, s, b = mx.quantize(kv_b, group_size=group, bits=bits)
        w[p + "kv_b_proj.weight"], w[p + "kv_b_proj.scales"], w[p + "kv_b_proj.biases"] = q, s, b
    mx.eval(list(w.values()))
    mx.save_safetensors(str(dst / "model.safetensors"), w, metadata={"format": "mlx"})
    (dst / "model.safetensors").chmod(0o644)
    total = sum(v.nbytes for v in w.values())
    write_index(dst, {k: "model.safetensors" for k in w}, total)
    return dst


def make_kv_b_dense(src: Path, dst: Path) -> Path:
    """The same folder with every quantized kv_b_proj replaced by its float32 dequantization (scales and biases
    promoted to float32 first, so the values are exactly the stored ones): a reference any loader reads without
    re-quantizing (mlx-lm splits a dense kv_b_proj into dense embed_q / unembed_out)."""
    import mlx.core as mx

    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    copy_side_files(src, dst)
    cfg = json.loads((src / "config.json").read_text())
    w: dict = {}
    for f in sorted(src.glob("*.safetensors")):
        w.update(mx.load(str(f)))
    r = cfg["kv_lora_rank"]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}.self_attn.kv_b_proj."
        if p + "scales" not in w:
            continue
        q, s, b = w.pop(p + "weight"), w.pop(p + "scales"), w.pop(p + "biases")
        bits, group = q.shape[-1] * 32 // r, r // s.shape[-1]
        w[p + "weight"] = mx.dequantize(q, s.astype(mx.float32), b.astype(mx.float32), group_size=group, bits=bits)
    mx.eval(list(w.values()))
    mx.save_safetensors(str(dst / "model.safetensors"), w, metadata={"format": "mlx"})
    (dst / "model.safetensors").chmod(0o644)
    write_index(dst, {k: "model.safetensors" for k in w}, sum(v.nbytes for v in w.values()))
    return dst


def make_head_dim(src_hf: Path, dst: Path, nope: int) -> Path:
    """An HF-layout folder with qk_nope_head_dim cut to `nope`: per head, q_b_proj keeps its first `nope` rows and
    its rope rows, kv_b_proj its first `nope` key rows and all value rows; every other tensor is copied unchanged."""
    src_hf, dst = Path(src_hf), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    copy_side_files(src_hf, dst)
    cfg = json.loads((src_hf / "config.json").read_text())
    H, old, rope, v = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    assert nope < old
    keep_q = np.concatenate([np.arange(h * (old + rope), h * (old + rope) + nope) for h in range(H)] +
                            [np.arange(h * (old + rope) + old, (h + 1) * (old + rope)) for h in range(H)])
    keep_q.sort()
    keep_kv = np.concatenate([np.arange(h * (old + v), h * (old + v) + nope) for h in range(H)] +
                             [np.arange(h * (old + v) + old, (h + 1) * (old + v)) for h in range(H)])
    keep_kv.sort()
    out = {}
    for name, t in read_folder(src_hf).items():
        rows = keep_q if name.endswith("q_b_proj.weight") else keep_kv if name.endswith("kv_b_proj.weight") else None
        if rows is None:
            out[name] = t
            continue
        dt, shape, buf = t
        a = np.frombuffer(buf, dtype=_NP[dt]).reshape(shape)[rows]
        out[name] = (dt, list(a.shape), np.ascontiguousarray(a).tobytes())
    write_raw(dst / "model.safetensors", out)
    cfg["qk_nope_head_dim"] = nope
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst


# ----------------------------------------------------------------------------------------------------------
# One shard per layer


def shard_of(name: str, n_layers: int) -> int:
    m = _LAYER_RE.match(name)
    if m:
        return int(m.group(1))
    return 0 if "embed_tokens" in name else n_layers - 1


def reshard_by_layer(src: Path, dst: Path) -> Path:
    src, dst = Path(src), Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    copy_side_files(src, dst)
    n = json.loads((src / "config.json").read_text())["num_hidden_layers"]
    tensors = read_folder(src)
    groups: list[dict] = [{} for _ in range(n)]
    for name, t in tensors.items():
        groups[shard_of(name, n)][name] = t
    weight_map, total = {}, 0
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        write_raw(dst / fname, dict(sorted(g.items())), {"format": "mlx"})
        weight_map.update({k: fname for k in g})
        total += sum(len(t[2]) for t in g.values())
    write_index(dst, weight_map, total)
    return dst


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("int4", "kv-b", "reshard"):
        p = sub.add_parser(name)
        p.add_argument("--src", required=True)
        p.add_argument("--out", required=True)
        if name == "kv-b":
            p.add_argument("--hf", required=True, help="the HF bf16 folder the MLX one was converted from")
    a = ap.parse_args(argv)
    if a.cmd == "int4":
        make_int4(Path(a.src), Path(a.out))
    elif a.cmd == "kv-b":
        make_kv_b(Path(a.src), Path(a.hf), Path(a.out))
    else:
        reshard_by_layer(Path(a.src), Path(a.out))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
