# Checkpoint formats beyond the parity suite's: compressed-tensors INT4 experts (K2-Thinking), an older MLX
# conversion with a quantized kv_b_proj, FP8 re-quantized at load (--fp8-requantize), and what
# `inspect --load` of a layer range really reads and holds. Derived checkpoints come from
# tools/format_variants.py and mlx_lm.convert and are cached next to the parity suite's (tests/.work/).
from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import k2parity as kp
from k2parity import SEQS

import format_variants as fv  # tools/ is on sys.path via k2parity

PARITY_SEQS = ("one", "short", "long")
INT4_GREEDY_TOKENS = 16


def _skip_embed_and_head(path, module):
    """Quantize what --fp8-requantize re-quantizes (every FP8 matrix), keep the bf16 embedding and lm_head."""
    return not (path.endswith("embed_tokens") or path == "lm_head")


# Bump when a builder below or the reference computation changes (format_variants.py is hashed already).
EXTRA_VERSION = "3"

# Quantized kv_b_proj checkpoints (older MLX conversions) at 3, 4 and 8 bits, group 64, plus one with
# qk_nope_head_dim 32 < group 64 (which no re-quantization of W_UKᵀ along nope can handle). Each has a
# "-dense" twin holding the float32 dequantization of the stored kv_b_proj: the reference for it.
KV_B_BITS = (3, 4, 8)
KV_B_CASES = tuple(f"kimi-q{b}-kv_b" for b in KV_B_BITS) + ("kimi-nope32-q4-kv_b",)


def _skip_nope_embed_q(path, module):
    """mlx_lm.convert of the head-dim-32 folder: embed_q's input dim (32) is below the group (64), so leave it
    dense (make_kv_b replaces embed_q / unembed_out by a quantized kv_b_proj anyway)."""
    return not path.endswith("embed_q")


# name -> builder(Extra, destination folder)
_EXTRA = {
    "kimi-int4": lambda x, dst: fv.make_int4(x.ws.path("kimi-hf-bf16"), dst),
    **{f"kimi-q{b}-kv_b": (lambda b: lambda x, dst: fv.make_kv_b(x.ws.path(f"kimi-q{b}"), x.ws.path("kimi-hf-bf16"),
                                                                  dst))(b) for b in KV_B_BITS},
    "kimi-nope32-hf": lambda x, dst: fv.make_head_dim(x.ws.path("kimi-hf-bf16"), dst, 32),
    "kimi-nope32-q4": lambda x, dst: kp.convert_variants.convert_one(
        x.path("kimi-nope32-hf"), dst, {"bits": 4, "group": 64, "predicate": _skip_nope_embed_q}),
    "kimi-nope32-q4-kv_b": lambda x, dst: fv.make_kv_b(x.path("kimi-nope32-q4"), x.path("kimi-nope32-hf"), dst),
    **{f"{n}-dense": (lambda n: lambda x, dst: fv.make_kv_b_dense(x.path(n), dst))(n) for n in KV_B_CASES},
    "kimi-fp8-q4": lambda x, dst: kp.convert_variants.convert_one(x.ws.path("kimi-hf-fp8"), dst, {"bits": 4, "group": 64}),
    "kimi-fp8-q4-bf16-ends": lambda x, dst: kp.convert_variants.convert_one(
        x.ws.path("kimi-hf-fp8"), dst, {"bits": 4, "group": 64, "predicate": _skip_embed_and_head}),
    "kimi-q4-by-layer": lambda x, dst: fv.reshard_by_layer(x.ws.path("kimi-q4"), dst),
}


class Extra:
    """Derived checkpoints and their mlx-lm float32 references, cached under the parity Workspace's folder
    (so a new generator/converter/reference version, which renames that folder, rebuilds them too)."""

    def __init__(self, ws: kp.Workspace):
        self.ws = ws
        h = hashlib.sha256(Path(fv.__file__).read_bytes() + EXTRA_VERSION.encode()).hexdigest()[:12]
        self.dir = ws.dir / f"formats-{h}"
        self.dir.mkdir(exist_ok=True)
        for old in ws.dir.glob("formats-*"):
            if old != self.dir:
                shutil.rmtree(old, ignore_errors=True)
        self._refs: dict[str, dict] = {}

    def path(self, name: str) -> Path:
        out = self.dir / name
        if (out / ".complete").exists():
            return out
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=self.dir))
        try:
            _EXTRA[name](self, tmp / "ckpt")
            (tmp / "ckpt" / ".complete").write_text("")
            if out.exists():
                shutil.rmtree(out)
            (tmp / "ckpt").rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    def reference(self, name: str) -> dict:
        """{'logits': {seq: float32 [L, V]}, 'greedy': ids, 'margins': [...]}, mlx-lm at float32."""
        if name in self._refs:
            return self._refs[name]
        cache = self.dir / f"{name}.reference"
        if not (cache / ".complete").exists():
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir()
            path = self.path(name)
            model, _ = kp.reference.load(path, "float32")
            for s in PARITY_SEQS:
                np.save(cache / f"{s}.npy", kp.reference.logits(model, SEQS[s], all_positions=True))
            toks, margins = kp.reference.greedy(model, SEQS["long"], INT4_GREEDY_TOKENS, kp.reference.stop_ids(path))
            (cache / "greedy.json").write_text(json.dumps({"greedy": toks, "margins": margins}))
            (cache / ".complete").write_text("")
        g = json.loads((cache / "greedy.json").read_text())
        self._refs[name] = {"logits": {s: np.load(cache / f"{s}.npy") for s in PARITY_SEQS}, **g}
        return self._refs[name]


@pytest.fixture(scope="module")
def extra(ws) -> Extra:
    return Extra(ws)


def tensors_of(folder: Path) -> dict[str, tuple[str, list[int], bytes]]:
    return fv.read_folder(folder)


# =============================================================================================================
# a. compressed-tensors INT4 routed experts (K2-Thinking layout)


def test_int4_packing_convention():
    """The numpy unpacker and packer against hand-made words: nibble j of a word = bits [4j, 4j+4), value = nibble - 8."""
    words = np.array([[0x76543210, 0xFEDCBA98, 0x01234567, 0x89ABCDEF]], dtype=np.uint32).view(np.int32)
    got = fv.int4_dequantize(words, np.array([[0.5]], np.float32))
    nibbles = list(range(16)) + list(range(7, -1, -1)) + list(range(15, 7, -1))
    want = (np.array(nibbles, np.float32) - 8.0) * 0.5
    assert np.array_equal(got[0], want), f"unpacked {got[0].tolist()}, expected {want.tolist()}"
    # The packer on a row with scale exactly 0.25 (amax 7.5 * 0.25; 7.5 rounds to 8 and is clamped to 7).
    q = [7.5] + list(range(-7, 8)) + list(range(-7, 8)) + [0]
    packed, scale, _ = fv.int4_quantize(np.array([q], np.float32) * 0.25)
    assert scale.tolist() == [[0.25]], scale
    want_words = [0x7654321F, 0xFEDCBA98, 0x87654321, 0x8FEDCBA9]
    assert packed.dtype == np.int32 and packed.view(np.uint32)[0].tolist() == want_words, (
        f"packed {[hex(w) for w in packed.view(np.uint32)[0]]}, expected {[hex(w) for w in want_words]}")


def test_int4_layout(extra, ws):
    path = extra.path("kimi-int4")
    cfg = json.loads((path / "config.json").read_text())
    qc = cfg["quantization_config"]
    w = qc["config_groups"]["group_0"]["weights"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized", qc
    assert (w["num_bits"], w["group_size"], w["symmetric"], w["strategy"], w["type"]) == (4, 32, True, "group", "int")
    assert "quantization" not in cfg, "a K2-Thinking config has no MLX `quantization` entry"
    t, src = tensors_of(path), tensors_of(ws.path("kimi-hf-bf16"))
    E, layers = cfg["n_routed_experts"], range(cfg["first_k_dense_replace"], cfg["num_hidden_layers"])
    H, I = cfg["hidden_size"], cfg["moe_intermediate_size"]
    n_packed = 0
    for layer in layers:
        for e in range(E):
            for proj, (o, i) in {"gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}.items():
                base = f"model.layers.{layer}.mlp.experts.{e}.{proj}."
                assert base + "weight" not in t, f"{base}weight left unquantized"
                assert t[base + "weight_packed"][:2] == ("I32", [o, i // 8]), t[base + "weight_packed"][:2]
                assert t[base + "weight_scale"][:2] == ("BF16", [o, i // 32]), t[base + "weight_scale"][:2]
                assert t[base + "weight_shape"][:2] == ("I64", [2])
                assert fv.to_numpy(t[base + "weight_shape"]).tolist() == [o, i]
                n_packed += 1
    assert n_packed == len(layers) * E * 3
    unchanged = [n for n in src if ".experts." not in n]
    assert unchanged and all(t[n] == src[n] for n in unchanged), "non-expert tensors must be copied bit for bit"


def test_int4_packing_dequantizes_to_source(extra, ws):
    """Plain-numpy dequantization of what was written vs the float weights it was made from."""
    t, src = tensors_of(extra.path("kimi-int4")), tensors_of(ws.path("kimi-hf-bf16"))
    checked = 0
    for name in src:
        if ".experts." not in name or not name.endswith(".weight"):
            continue
        base = name[: -len("weight")]
        w = fv.to_numpy(src[name])
        scale = fv.to_numpy(t[base + "weight_scale"])
        deq = fv.int4_dequantize(fv.to_numpy(t[base + "weight_packed"]), scale)
        err = np.abs(deq - w)
        # Half a step, plus what the scale's bf16 rounding (relative 2^-8) does to the clamped largest element:
        # amax / scale <= 7.5 / (1 - 2^-8) is clamped to 7, an error of up to 0.53 steps.
        bound = np.repeat(scale, 32, axis=1) * (0.5 + 7.5 * 2**-8 / (1 - 2**-8))
        assert (err <= bound).all(), (f"{name}: dequantized INT4 differs from the source by up to "
                                      f"{(err / bound).max():.3f} x the bound (half a step + scale rounding)")
        words = fv.to_numpy(t[base + "weight_packed"]).view(np.uint32)
        nib = (words[..., None] >> np.arange(0, 32, 4, dtype=np.uint32)) & 15
        assert nib.min() == 0 and nib.max() == 15, f"{name}: nibbles span {nib.min()}..{nib.max()}, expected 0..15"
        rel = np.linalg.norm(deq - w) / np.linalg.norm(w)
        assert rel < 0.12, f"{name}: relative quantization error {rel:.3f} is too large for 4-bit group 32"
        checked += 1
    assert checked == 3 * 16 * 3


def test_int4_mlx_lm_reads_the_same_weights(extra):
    """mlx-lm (sanitize: packed -> uint32, scales, biases = -8·scale) loads the folder as 4-bit group-32
    affine, and its dequantized experts equal the numpy dequantization exactly."""
    import mlx.core as mx

    path = extra.path("kimi-int4")
    model, _ = kp.reference.load(path, "native")
    t = tensors_of(path)
    layer = 2
    sw = model.model.layers[layer].mlp.switch_mlp
    for proj in ("gate_proj", "up_proj", "down_proj"):
        m = getattr(sw, proj)
        assert (m.bits, m.group_size, m.mode) == (4, 32, "affine"), f"{proj}: mlx-lm built {m.bits}-bit g{m.group_size}"
        scales, biases = m.scales.astype(mx.float32), m.biases.astype(mx.float32)
        assert np.array_equal(np.array(biases), -8 * np.array(scales)), f"{proj}: mlx-lm's biases are not -8·scale"
        # float32 scales and biases: (q - 8)·scale is then exact, as in numpy
        got = np.array(mx.dequantize(m.weight, scales, biases, group_size=32, bits=4))
        for e in (0, 7, 15):
            base = f"model.layers.{layer}.mlp.experts.{e}.{proj}."
            want = fv.int4_dequantize(fv.to_numpy(t[base + "weight_packed"]), fv.to_numpy(t[base + "weight_scale"]))
            assert np.array_equal(got[e], want), f"{base}: mlx-lm's weights differ by {np.abs(got[e] - want).max()}"


@pytest.mark.parametrize("seq", PARITY_SEQS)
def test_int4_logits_fp32(extra, engine, tmp_path, seq):
    ref = extra.reference("kimi-int4")["logits"][seq]
    eng = kp.engine_logits(extra.path("kimi-int4"), SEQS[seq], tmp_path, dtype="float32")
    kp.assert_exact(eng, ref, f"kimi-int4 [{seq}] float32 all positions")


def test_int4_greedy_fp32(extra, engine, tmp_path):
    r = extra.reference("kimi-int4")
    assert len(r["greedy"]) == INT4_GREEDY_TOKENS and len(set(r["greedy"])) > 4, f"degenerate reference {r['greedy']}"
    toks = kp.engine_generate(extra.path("kimi-int4"), SEQS["long"], INT4_GREEDY_TOKENS, tmp_path)
    kp.assert_same_tokens(toks, r["greedy"], r["margins"], kp.FP32_TIE, "kimi-int4 greedy float32")


# =============================================================================================================
# b. older MLX conversion: quantized kv_b_proj. The engine uses the stored rows as they are (W_UK per head with
# a quantized matmul on either side, W_UV as unembed_out), so it must equal mlx-lm at float32 on the same
# weights written dense (the "-dense" twins). mlx-lm itself dequantizes kv_b_proj and quantizes W_UKᵀ again
# along the other axis when it loads the quantized folder, so it is not the reference for these files.


@pytest.mark.parametrize("name", KV_B_CASES)
def test_kv_b_layout(extra, ws, name):
    path = extra.path(name)
    t = tensors_of(path)
    cfg = json.loads((path / "config.json").read_text())
    bits = 4 if "nope32" in name else int(name.split("-")[1][1:])
    assert not [n for n in t if ".embed_q." in n or ".unembed_out." in n]
    rows = cfg["num_attention_heads"] * (cfg["qk_nope_head_dim"] + cfg["v_head_dim"])
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}.self_attn.kv_b_proj."
        assert t[p + "weight"][:2] == ("U32", [rows, cfg["kv_lora_rank"] * bits // 32]), t[p + "weight"][:2]
        assert t[p + "scales"][:2] == ("BF16", [rows, cfg["kv_lora_rank"] // 64]), t[p + "scales"][:2]
    dense = tensors_of(extra.path(name + "-dense"))
    assert dense["model.layers.0.self_attn.kv_b_proj.weight"][:2] == ("F32", [rows, cfg["kv_lora_rank"]])
    assert {n for n in dense if "kv_b_proj" not in n} == {n for n in t if "kv_b_proj" not in n}
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(t)
    if "nope32" in name:
        assert cfg["qk_nope_head_dim"] == 32 and cfg["quantization"]["group_size"] == 64


@pytest.mark.parametrize("seq", PARITY_SEQS)
@pytest.mark.parametrize("name", KV_B_CASES)
def test_kv_b_logits_fp32(extra, engine, tmp_path, name, seq):
    """Against mlx-lm at float32 on the dequantized stored kv_b_proj, at the float32 tolerance (1e-3·max)."""
    ref = extra.reference(name + "-dense")["logits"][seq]
    eng = kp.engine_logits(extra.path(name), SEQS[seq], tmp_path, dtype="float32")
    print(f"{name} [{seq}]: {kp.summary(eng, ref)}")
    kp.assert_exact(eng, ref, f"{name} [{seq}] float32 all positions vs the dequantized stored weights")


@pytest.mark.parametrize("name", KV_B_CASES)
def test_kv_b_equals_dense_twin(extra, engine, tmp_path, name):
    """The loader on the quantized kv_b_proj and on its dequantization: the same weights, so the same logits
    (to float32 rounding) on the single-token and the multi-token attention paths. Run on MLX's kernels, where
    both twins compute exactly: with k2mlx's CPU kernels the quantized twin's kv_b goes through their int16
    activations and the dense twin's does not, and on these random models that difference can tip a near-tied
    routing decision (the kv_b checkpoints' parity with the reference on our kernels is tested above)."""
    flags = ("--kernels", "mlx")
    for seq in ("one", "long"):
        q = kp.engine_logits(extra.path(name), SEQS[seq], tmp_path, dtype="float32", extra=flags)
        d = kp.engine_logits(extra.path(name + "-dense"), SEQS[seq], tmp_path, dtype="float32", extra=flags)
        kp.assert_exact(q, d, f"{name} vs its dense twin [{seq}]", rel=kp.EQUIV_REL)


@pytest.mark.parametrize("name", KV_B_CASES)
def test_kv_b_greedy_fp32(extra, engine, tmp_path, name):
    r = extra.reference(name + "-dense")
    toks = kp.engine_generate(extra.path(name), SEQS["long"], INT4_GREEDY_TOKENS, tmp_path)
    kp.assert_same_tokens(toks, r["greedy"], r["margins"], kp.FP32_TIE, f"{name} greedy float32")


@pytest.mark.parametrize("bits", KV_B_BITS)
def test_kv_b_requantization_is_visible(extra, bits):
    """The test above can fail: re-quantizing W_UKᵀ at load (mlx-lm's way, and the engine's before) misses the
    dequantized reference by more than the float32 tolerance at every bit width measured here."""
    name = f"kimi-q{bits}-kv_b"
    ref = extra.reference(name + "-dense")["logits"]["long"]
    requant = extra.reference(name)["logits"]["long"]
    d = np.abs(requant - ref).max()
    print(f"{name}: mlx-lm (re-quantized W_UKᵀ) vs dequantized stored weights: {kp.summary(requant, ref)}")
    assert d > kp.EXACT_REL * np.abs(ref).max(), f"{name}: re-quantization changed the logits by only {d:.3e}"


def test_kv_b_small_head_dim_defeats_requantization(extra):
    """With qk_nope_head_dim 32 < group 64, W_UKᵀ cannot be re-quantized along nope: mlx-lm fails to load the
    file that the engine matches above."""
    with pytest.raises(ValueError, match="quantiz"):
        kp.reference.load(extra.path("kimi-nope32-q4-kv_b"), "float32")


# =============================================================================================================
# c. --fp8-requantize 4:64 on the FP8 release layout

FP8_REQ = ("--fp8-requantize", "4:64")
# The standard mlx-lm q4 conversion also quantizes the bf16 embedding and lm_head to 4 bits, which
# --fp8-requantize leaves in bf16 (they are not FP8 in the release): on this random MoE that alone moves the
# logits a lot. Measured on the `long` prompt: cosine min 0.908, mean 0.959 (argmax agrees at 23/40); the
# mlx-lm conversion that keeps them bf16 is matched exactly (test above).
STD_Q4_MIN_COS, STD_Q4_MEAN_COS = 0.88, 0.94
# Dequantized FP8 vs 4-bit re-quantized: a random MoE amplifies 4-bit noise (routing flips), like the parity
# suite's q4-vs-source tracking bound (0.85).
VS_DEQUANT_MEAN_COS = 0.85


def _fp8_requant(ws, tmp_path, seq):
    return kp.engine_logits(ws.path("kimi-hf-fp8"), SEQS[seq], tmp_path, dtype="float32", extra=FP8_REQ)


@pytest.mark.parametrize("seq", PARITY_SEQS)
def test_fp8_requantize_equals_conversion_with_bf16_ends(extra, ws, engine, tmp_path, seq):
    """Against an mlx-lm q4 g64 conversion of the same FP8 folder that, like --fp8-requantize, keeps the bf16
    embedding and lm_head: the same mx.quantize of the same bf16-dequantized matrices, so float32-exact."""
    ref = extra.reference("kimi-fp8-q4-bf16-ends")["logits"][seq]
    kp.assert_exact(_fp8_requant(ws, tmp_path, seq), ref, f"kimi-hf-fp8 --fp8-requantize 4:64 [{seq}]")


def test_fp8_requantize_vs_standard_q4_conversion(extra, ws, engine, tmp_path):
    ref = extra.reference("kimi-fp8-q4")["logits"]["long"]
    eng = _fp8_requant(ws, tmp_path, "long")
    cos = kp.cosines(eng, ref)
    # All of the difference is the 4-bit embedding / lm_head: mlx-lm's own bf16-ends conversion sits exactly as far.
    own = kp.cosines(extra.reference("kimi-fp8-q4-bf16-ends")["logits"]["long"], ref)
    assert np.abs(cos - own).max() < 1e-3, f"engine vs q4 {cos.round(4)} but mlx-lm bf16-ends vs q4 {own.round(4)}"
    assert cos.min() >= STD_Q4_MIN_COS and cos.mean() >= STD_Q4_MEAN_COS, (
        f"--fp8-requantize 4:64 vs mlx-lm's q4 g64 conversion: cosine min {cos.min():.5f} mean {cos.mean():.5f} "
        f"(bounds {STD_Q4_MIN_COS} / {STD_Q4_MEAN_COS})\n  {kp.summary(eng, ref)}")


def test_fp8_requantize_differs_from_dequantized(ws, engine, tmp_path):
    req = _fp8_requant(ws, tmp_path, "long")
    deq = kp.engine_logits(ws.path("kimi-hf-fp8"), SEQS["long"], tmp_path, dtype="float32")
    ref = ws.reference("kimi-hf-fp8")["float32"]["logits"]["long"]
    kp.assert_exact(deq, ref, "kimi-hf-fp8 dequantized (sanity)")
    cos = kp.cosines(req, deq)
    d = np.abs(req - deq).max()
    assert d > 1e-2 * np.abs(deq).max(), f"--fp8-requantize 4:64 changed the logits by only {d:.3e}: not applied?"
    print(f"requantized vs dequantized FP8: cosine min {cos.min():.4f} mean {cos.mean():.4f}; {kp.summary(req, deq)}")
    assert cos.mean() >= VS_DEQUANT_MEAN_COS, (f"--fp8-requantize 4:64 vs dequantized FP8: mean cosine "
                                               f"{cos.mean():.4f} < {VS_DEQUANT_MEAN_COS}\n  {kp.summary(req, deq)}")


# =============================================================================================================
# d. inspect --load of a layer range: what it binds, holds and reads

_LOAD_RE = re.compile(r"loaded layers \[(\d+), (\d+)\): checkpoint bytes (\d+) , bound weight bytes (\d+) , "
                      r"MLX active memory (\d+) , peak (\d+)")


def inspect_load(model: Path, layers: str | None) -> dict | subprocess.CompletedProcess:
    args = ["inspect", "--model", model, "--load", "--dtype", "bfloat16"] + (["--layers", layers] if layers else [])
    proc = kp.run_engine(args, timeout=120)
    m = _LOAD_RE.search(proc.stdout)
    if proc.returncode != 0 or not m:
        return proc
    keys = ("first", "last", "checkpoint", "bound", "active", "peak")
    return dict(zip(keys, map(int, m.groups())))


def _need(r, what):
    if isinstance(r, subprocess.CompletedProcess):
        raise AssertionError(f"{what}: k2mlx inspect --load failed (exit {r.returncode})\n  {' '.join(map(str, r.args))}\n"
                             f"  {(r.stdout[-1500:] + r.stderr[-1500:]).strip()}")
    return r


def _layer_bytes(folder: Path, layers: range) -> int:
    return sum(len(t[2]) for n, t in tensors_of(folder).items()
               if (m := fv._LAYER_RE.match(n)) and int(m.group(1)) in layers)


def test_inspect_load_range_memory(extra, engine):
    path = extra.path("kimi-q4-by-layer")
    assert len(list(path.glob("*.safetensors"))) == 4
    part = _need(inspect_load(path, "1:3"), "layers 1:3")
    whole = _need(inspect_load(path, None), "all layers")
    want = _layer_bytes(path, range(1, 3))  # from the headers, not from the engine's own accounting
    assert part["checkpoint"] == want, f"checkpoint bytes of [1, 3): engine {part['checkpoint']}, headers {want}"
    assert part["bound"] == part["checkpoint"], f"bound {part['bound']} != checkpoint {part['checkpoint']} (bf16, q4)"
    assert abs(part["active"] - part["bound"]) <= 0.03 * part["bound"], (
        f"active memory {part['active']} vs bound {part['bound']}")
    assert part["peak"] <= 1.5 * part["bound"], f"peak {part['peak']} while binding {part['bound']} bytes"
    total = sum(f.stat().st_size for f in path.glob("*.safetensors"))
    assert whole["bound"] == whole["checkpoint"] and whole["checkpoint"] > 0.9 * total
    assert part["active"] < 0.6 * whole["active"], (
        f"layers 1:3 hold {part['active']} bytes, the whole model {whole['active']}")


def _truncated_copy(extra, tmp_path, shard_ids) -> Path:
    model = tmp_path / "ckpt"
    shutil.copytree(extra.path("kimi-q4-by-layer"), model)
    for i in shard_ids:
        f = model / f"model-{i + 1:05d}-of-00004.safetensors"
        with open(f, "r+b") as fh:
            fh.truncate(f.stat().st_size * 6 // 10)
    return model


def test_inspect_load_range_fails_on_its_truncated_shard(extra, engine, tmp_path):
    model = _truncated_copy(extra, tmp_path, [3])  # layer 3 + norm + lm_head
    r = inspect_load(model, "2:4")
    assert isinstance(r, subprocess.CompletedProcess) and 0 < r.returncode, f"layers 2:4 loaded from a truncated shard: {r}"
    text = r.stdout + r.stderr
    assert "model-00004-of-00004.safetensors" in text and "truncated" in text, f"unclear error:\n{text[-1500:]}"


def test_inspect_load_range_ignores_other_truncated_shards(extra, engine, tmp_path):
    """Layers 1..2 need nothing from the shards of layer 0 (+ embedding) and layer 3 (+ head): truncating those
    must not stop a stage that holds layers [1, 3) from loading (a pipeline stage reads only its own bytes)."""
    model = _truncated_copy(extra, tmp_path, [0, 3])
    part = _need(inspect_load(model, "1:3"), "layers 1:3 with the shards of layers 0 and 3 truncated")
    assert part["bound"] == _layer_bytes(model, range(1, 3))


def test_inspect_load_reads_only_its_shards(extra, engine, tmp_path):
    """System-call trace of `inspect --load --layers 1:3`: bytes read from each shard file. The shards of layers
    0 and 3 may be opened for their headers, but none of their tensor data may be read."""
    strace = shutil.which("strace")
    if not strace:
        pytest.skip("strace is not installed: cannot count the bytes read per shard")
    path = extra.path("kimi-q4-by-layer")
    log = tmp_path / "trace"
    # -y prints each fd with its path, so reads are attributed without tracking open/close.
    cmd = [strace, "-f", "-qq", "-y", "-e", "trace=read,pread64,readv,preadv,mmap", "-o", str(log),
           str(kp.engine_bin()), "inspect", "--model", str(path), "--load", "--layers", "1:3", "--dtype", "bfloat16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    read: dict[str, int] = {}
    pending: dict[str, str] = {}  # thread id -> file of a read that another thread's call interrupted
    mapped = []
    for line in log.read_text().splitlines():
        tid, _, call = line.partition(" ")
        call = call.strip()
        if (m := re.match(r"p?readv?(?:64)?\(\d+<([^>]+)>, .*\) = (\d+)$", call)):
            read[m.group(1)] = read.get(m.group(1), 0) + int(m.group(2))
        elif (m := re.match(r"p?readv?(?:64)?\(\d+<([^>]+)>,.*<unfinished \.\.\.>$", call)):
            pending[tid] = m.group(1)
        elif (m := re.match(r"<\.\.\. p?readv?(?:64)? resumed>.*\) = (\d+)$", call)) and tid in pending:
            f = pending.pop(tid)
            read[f] = read.get(f, 0) + int(m.group(1))
        elif call.startswith("mmap(") and ".safetensors>" in call:
            mapped.append(call[:160])
    assert not mapped, f"shards were memory-mapped, so counting read() bytes proves nothing: {mapped}"
    by_shard = {Path(n).name: b for n, b in read.items() if n.endswith(".safetensors")}
    assert set(by_shard) >= {f"model-0000{i}-of-00004.safetensors" for i in (2, 3)}, f"reads seen: {by_shard}"
    for i in (0, 3):
        f = path / f"model-{i + 1:05d}-of-00004.safetensors"
        got, head = by_shard.get(f.name, 0), header_bytes(f)
        # A buffered stream reads up to a buffer (8 KiB) past the header; the shard itself is > 500 KiB.
        assert got <= head + 8192 and got < f.stat().st_size // 4, (
            f"{f.name} (not needed for layers 1:3): {got} bytes read; header {head} bytes, file {f.stat().st_size}")
    for i in (1, 2):
        f = path / f"model-{i + 1:05d}-of-00004.safetensors"
        assert by_shard.get(f.name, 0) >= f.stat().st_size - 8192, f"{f.name}: only {by_shard.get(f.name, 0)} bytes read"


def header_bytes(f: Path) -> int:
    with open(f, "rb") as fh:
        return 8 + struct.unpack("<Q", fh.read(8))[0]
