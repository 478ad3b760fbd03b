# Parity and equivalence tests of k2mlx against mlx-lm on tiny Kimi-K2 / DeepSeek-V3 checkpoints (HF bf16 /
# fp32 / FP8 / sharded, and mlx-lm conversions at every bit width and recipe), engine self-equivalences and
# bad-input errors. The first section checks the fixtures and tolerances themselves and needs no engine.
from __future__ import annotations

import json
import math
import shutil
import struct

import numpy as np
import pytest

import k2parity as kp
from k2parity import CHECKPOINTS, PARITY_SEQS, SEQS

ALL = list(CHECKPOINTS)
MLX = [n for n, c in CHECKPOINTS.items() if c.quantized]
HF = [n for n, c in CHECKPOINTS.items() if c.is_hf]
# A float32 checkpoint has no bf16 reference to speak of; every other one is also run in bf16.
BF16 = [n for n in ALL if n != "kimi-hf-fp32"]
GREEDY_BF16 = ["kimi-hf-bf16", "kimi-q4", "kimi-mixed_3_6", "deepseek-hf-fp8", "deepseek-q4"]
EQUIV = ["kimi-hf-bf16", "kimi-q4", "deepseek-hf-fp8", "deepseek-mixed_3_6"]


def read_header(path) -> tuple[dict, int]:
    """safetensors header (name -> {dtype, shape, data_offsets}) and the byte offset where data starts."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def all_tensors(folder) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        header, _ = read_header(f)
        out.update({k: dict(v, file=f.name) for k, v in header.items()})
    return out


def config_of(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


# =============================================================================================================
# Fixture self-checks (mlx-lm side only)


@pytest.mark.parametrize("name", ALL)
def test_mlx_lm_loads_checkpoint_with_tokenizer(ws, name):
    import mlx_lm

    kp.reference.install_mlx_lm_compat()
    path = ws.path(name)
    model, tok = mlx_lm.load(str(path), tokenizer_config={"trust_remote_code": True})
    ids = tok.encode("Shaba kolu, 42 tinesta!")
    assert ids and max(ids) < config_of(path)["vocab_size"], f"{name}: tokenizer gave {ids}"


@pytest.mark.parametrize("name", ALL)
def test_reference_logits_are_informative(ws, name):
    """Random weights must still give O(1) activations and clear top-2 margins, or parity proves little."""
    r = ws.reference(name)["float32"]
    for seq in PARITY_SEQS:
        x = r["logits"][seq]
        assert np.isfinite(x).all(), f"{name} {seq}: non-finite reference logits"
        assert 1.0 < x.std() < 10.0, f"{name} {seq}: logit std {x.std():.3f} outside (1, 10)"
    margins = kp.top2_margin(np.concatenate([r["logits"][s] for s in PARITY_SEQS]))
    frac = (margins > kp.ARGMAX_MARGIN).mean()
    assert frac >= 0.8, f"{name}: only {frac:.0%} of positions have a top-2 margin > {kp.ARGMAX_MARGIN}"
    toks, _ = ws.greedy_reference(name, "float32")
    assert len(toks) == kp.GREEDY_TOKENS, f"{name}: reference greedy stopped early: {toks}"
    assert len(set(toks)) > 4, f"{name}: degenerate greedy continuation {toks}"


@pytest.mark.parametrize(
    "name, twin",
    [
        ("kimi-hf-bf16-sharded", "kimi-hf-bf16"),  # sharding must not change a single bit
        ("kimi-q3_under_q4", "kimi-q3"),  # mlx-lm infers 3-bit from shapes despite the 4-bit global
        ("kimi-mixed_3_6_no_overrides", "kimi-mixed_3_6"),  # ... and 3/6-bit without any override entry
    ],
)
def test_equivalent_checkpoints_have_identical_reference(ws, name, twin):
    a, b = ws.reference(name)["float32"], ws.reference(twin)["float32"]
    for seq in PARITY_SEQS:
        d = np.abs(a["logits"][seq] - b["logits"][seq]).max()
        assert d == 0.0, f"{name} vs {twin} ({seq}): reference logits differ by {d:.3e}"


# Lower bounds on mean cosine (float32 reference of the conversion vs of its source, 40-token prompt). Random
# MoE models amplify weight noise (routing flips), so even 8-bit is not ~1.0; measured values are in comments.
_TRACKING = {"q2": 0.35, "q3": 0.65, "q3_g32": 0.65, "q3_under_q4": 0.65, "mixed_3_6": 0.65,
             "mixed_3_6_no_overrides": 0.65, "q4": 0.85, "q4_g32": 0.85, "q4_g128": 0.85, "q5": 0.93,
             "q6": 0.97, "q8": 0.985}  # measured: .48 .78 .82 .78 .80 .80 .92 .93 .90 .97 .988 .995


@pytest.mark.parametrize("name", MLX)
def test_quantized_reference_tracks_its_source(ws, name):
    c = CHECKPOINTS[name]
    a = ws.reference(name)["float32"]["logits"]["long"]
    b = ws.reference(c.source)["float32"]["logits"]["long"]
    cos = kp.cosines(a, b).mean()
    assert cos >= _TRACKING[c.variant], f"{name}: mean cosine vs {c.source} {cos:.4f} < {_TRACKING[c.variant]}"


def _bits_group(t: dict, in_features: int, prefix: str, tensors: dict) -> tuple[float, float]:
    packed = t["shape"][-1]
    scales = tensors[prefix + ".scales"]["shape"][-1]
    return packed * 32 / in_features, in_features / scales


@pytest.mark.parametrize("name", MLX)
def test_converter_output_layout(ws, name):
    """What mlx-lm's converter writes (the layout the engine must read): stacked switch_mlp experts, the kv_b
    split into embed_q/unembed_out, no MTP layer, fp32 correction bias, an unquantized router, and per-tensor
    bits/group sizes that are valid (and equal the recipe for the plain variants)."""
    path = ws.path(name)
    cfg, tensors = config_of(path), all_tensors(path)
    recipe = kp.convert_variants.VARIANTS[CHECKPOINTS[name].variant]
    q = cfg["quantization"]
    assert q == cfg["quantization_config"], f"{name}: quantization and quantization_config differ"
    names = list(tensors)
    assert not [n for n in names if ".experts." in n or "kv_b_proj" in n], f"{name}: unconverted tensors left"
    assert any(".switch_mlp." in n for n in names) and any(".embed_q." in n for n in names)
    n_layers = cfg["num_hidden_layers"]
    extra = [n for n in names if n.startswith("model.layers.") and int(n.split(".")[2]) >= n_layers]
    assert not extra, f"{name}: MTP-layer tensors survived conversion: {extra[:3]}"
    for n, t in tensors.items():
        if n.endswith("e_score_correction_bias"):
            assert t["dtype"] == "F32", f"{name}: {n} is {t['dtype']}, expected F32"
        if n.endswith("mlp.gate.weight"):
            assert t["dtype"] == "BF16" and n.replace(".weight", ".scales") not in tensors, f"{name}: router {n}"
    # Logical input width of every quantized module, from the config (never from the quantized tensor).
    H, I, Im = cfg["hidden_size"], cfg["intermediate_size"], cfg["moe_intermediate_size"]
    width = {"q_a_proj": H, "kv_a_proj_with_mqa": H, "q_b_proj": cfg["q_lora_rank"],
             "embed_q": cfg["qk_nope_head_dim"], "unembed_out": cfg["kv_lora_rank"],
             "o_proj": cfg["num_attention_heads"] * cfg["v_head_dim"], "gate_proj": H, "up_proj": H,
             "embed_tokens": H, "lm_head": H}
    seen = set()
    for n, t in tensors.items():
        if not n.endswith(".weight") or n.replace(".weight", ".scales") not in tensors:
            continue
        prefix = n[: -len(".weight")]
        leaf = prefix.split(".")[-1]
        in_f = width.get(leaf) or (I if ".mlp.down_proj" in n else Im)
        bits, group = _bits_group(t, in_f, prefix, tensors)
        assert bits in (2, 3, 4, 5, 6, 8) and group in (32, 64, 128), f"{name}: {prefix} bits {bits} group {group}"
        if "bits" in recipe and "derive" not in recipe:
            assert (bits, group) == (recipe["bits"], recipe["group"]), f"{name}: {prefix} is {bits}-bit g{group}"
        seen.add(bits)
    if "mixed_3_6" in CHECKPOINTS[name].variant:
        assert seen == {3, 6}, f"{name}: mixed_3_6 should hold 3- and 6-bit tensors, found {sorted(seen)}"
    if CHECKPOINTS[name].variant == "q3_under_q4":
        assert q["bits"] == 4 and seen == {3} and len(q) == 3, f"{name}: global {q}, tensor bits {seen}"


@pytest.mark.parametrize("name", HF)
def test_hf_checkpoint_layout(ws, name):
    c, path = CHECKPOINTS[name], ws.path(name)
    cfg, tensors = config_of(path), all_tensors(path)
    n_layers = cfg["num_hidden_layers"]
    assert "model.layers.0.self_attn.kv_b_proj.weight" in tensors
    assert "model.layers.1.mlp.experts.0.down_proj.weight" in tensors or c.structure == "deepseek"
    mtp = [n for n in tensors if n.startswith(f"model.layers.{n_layers}.")]
    if c.structure == "deepseek":
        assert cfg["num_nextn_predict_layers"] == 1 and f"model.layers.{n_layers}.eh_proj.weight" in tensors
    else:
        assert not mtp
    for n, t in tensors.items():
        if n.endswith("e_score_correction_bias"):
            assert t["dtype"] == "F32"
        if c.fp8 and n.endswith("_scale_inv"):
            w = tensors[n[: -len("_scale_inv")]]
            assert w["dtype"] == "F8_E4M3", f"{name}: {n} scales a {w['dtype']} tensor"
            want = [math.ceil(w["shape"][0] / 128), math.ceil(w["shape"][1] / 128)]
            assert t["shape"] == want and t["dtype"] == "F32", f"{name}: {n} {t} vs weight {w['shape']}"
    if c.fp8:
        kv_a = tensors["model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv"]
        assert kv_a["shape"][0] == 2, "kv_a (192 rows) must end in a padded FP8 block"
        assert tensors["model.layers.0.mlp.gate_proj.weight"]["dtype"] == "F8_E4M3"
    if c.shards > 1:
        index = json.loads((path / "model.safetensors.index.json").read_text())
        assert index["weight_map"] == {n: t["file"] for n, t in tensors.items()}
        assert len({t["file"] for t in tensors.values()}) == c.shards


def test_fp8_dequant_is_exact_in_bf16(ws):
    """The generator's FP8 scales keep fp8 x scale_inv exactly representable in bf16, so mlx-lm's
    dequantize-to-bf16 equals the exact float32 product (engines may dequantize in either precision)."""
    import mlx.core as mx
    from mlx_lm.utils import load_model

    path = ws.path("kimi-hf-fp8")
    model, _ = load_model(path)
    raw = {}
    for f in path.glob("*.safetensors"):
        raw.update(mx.load(str(f)))
    layer0, layer1 = model.model.layers[0], model.model.layers[1]
    for hf, module_w in [
        ("model.layers.0.self_attn.kv_a_proj_with_mqa.weight", layer0.self_attn.kv_a_proj_with_mqa.weight),
        ("model.layers.0.mlp.down_proj.weight", layer0.mlp.down_proj.weight),
        ("model.layers.1.mlp.experts.5.up_proj.weight", layer1.mlp.switch_mlp.up_proj.weight[5]),
    ]:
        exact = kp.make_tiny_model.fp8_dequantize(np.array(raw[hf]), np.array(raw[hf + "_scale_inv"]))
        got = np.array(module_w.astype(mx.float32))
        assert np.array_equal(got, exact), f"{hf}: mlx-lm's bf16 dequant differs by {np.abs(got - exact).max()}"


@pytest.mark.parametrize("name", ["kimi-q4", "deepseek-hf-fp8"])
def test_reference_cached_decode_matches_one_shot(ws, name):
    """The equivalence tolerance is attainable: mlx-lm's own cached decode vs one-shot in float32."""
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache

    model, _ = kp.reference.load(ws.path(name), "float32")
    ids = SEQS["long"]
    cache = make_prompt_cache(model)
    steps = np.stack([np.array(model(mx.array([[t]]), cache=cache)[0, -1]) for t in ids])
    kp.assert_exact(steps, ws.reference(name)["float32"]["logits"]["long"], f"{name} mlx-lm decode", kp.EQUIV_REL)


# =============================================================================================================
# Engine vs mlx-lm


@pytest.mark.parametrize("seq", PARITY_SEQS)
@pytest.mark.parametrize("name", ALL)
def test_logits_fp32(ws, engine, tmp_path, name, seq):
    ref = ws.reference(name)["float32"]["logits"][seq]
    eng = kp.engine_logits(ws.path(name), SEQS[seq], tmp_path, dtype="float32")
    kp.assert_exact(eng, ref, f"{name} [{seq}, {len(SEQS[seq])} ids] float32 all positions")


@pytest.mark.parametrize("name", EQUIV)
def test_logits_last_position(ws, engine, tmp_path, name):
    ref = ws.reference(name)["float32"]["logits"]["long"][-1]
    eng = kp.engine_logits(ws.path(name), SEQS["long"], tmp_path, all_positions=False, dtype="float32")
    kp.assert_exact(eng, ref, f"{name} [long] float32 last position")


@pytest.mark.parametrize("name", ALL)
def test_greedy_fp32(ws, engine, tmp_path, name):
    ref, margins = ws.greedy_reference(name, "float32")
    toks = kp.engine_generate(ws.path(name), SEQS["long"], kp.GREEDY_TOKENS, tmp_path, dtype="float32")
    kp.assert_same_tokens(toks, ref, margins, kp.FP32_TIE, f"{name} greedy float32")


@pytest.mark.parametrize("seq", kp.BF16_SEQS)
@pytest.mark.parametrize("name", BF16)
def test_logits_bf16(ws, engine, tmp_path, name, seq):
    """MLX's kernels (--kernels mlx) against mlx-lm's own bf16 run (cosine >= 0.999 per position, argmax wherever
    the margin > 0.1); where mlx-lm cannot run the checkpoint in bf16 (CPU backend, unquantized MoE), a sanity
    bound vs float32."""
    r = ws.reference(name)
    eng = kp.engine_logits(ws.path(name), SEQS[seq], tmp_path, dtype="bfloat16", extra=("--kernels", "mlx"))
    what = f"{name} [{seq}] bfloat16"
    if "unavailable" in r["native"]:
        kp.assert_bf16_sanity(eng, r["float32"]["logits"][seq], what + " (no mlx-lm bf16 run: sanity bound)")
    else:
        kp.assert_close_cos(eng, r["native"]["logits"][seq], what)


@pytest.mark.parametrize("name", GREEDY_BF16)
def test_greedy_bf16(ws, engine, tmp_path, name):
    native = ws.reference(name)["native"]
    if "unavailable" in native:
        pytest.skip(f"no mlx-lm bf16 reference to compare with ({native['unavailable']}); "
                    "float32 greedy identity covers this checkpoint")
    ref, margins = ws.greedy_reference(name, "native")
    toks = kp.engine_generate(ws.path(name), SEQS["long"], kp.GREEDY_TOKENS, tmp_path, dtype="bfloat16",
                              extra=("--kernels", "mlx"))
    kp.assert_same_tokens(toks, ref, margins, kp.ARGMAX_MARGIN, f"{name} greedy bfloat16")


QUANTIZED_BF16 = [n for n in BF16 if "hf-" not in n]


@pytest.mark.parametrize("seq", kp.BF16_SEQS)
@pytest.mark.parametrize("name", QUANTIZED_BF16)
def test_logits_bf16_k2_kernels_beat_mlx_lm(ws, engine, tmp_path, name, seq):
    """bf16 activations through k2mlx's CPU kernels (the default on CPU). MLX's CPU kernels accumulate bf16 dot
    products in bf16, so mlx-lm's bf16 run is a lossy reference (`--kernels mlx` reproduces it, test_logits_bf16);
    ours accumulate in int32/float32 and round once. Held to the stricter reference instead, mlx-lm's float32 run:
    strictly closer to it than mlx-lm's own bf16 run on mean cosine, and on argmax agreement at all but one position at most.
    (The rest of a bf16 forward on MLX's CPU backend still rounds every dense matmul in bf16, so neither run reaches
    the 0.999-cosine tier against float32.)"""
    r = ws.reference(name)
    if "unavailable" in r["native"]:
        pytest.skip(f"no mlx-lm bf16 run to compare with ({r['native']['unavailable']})")
    ref, theirs = r["float32"]["logits"][seq], r["native"]["logits"][seq]
    ours = kp.engine_logits(ws.path(name), SEQS[seq], tmp_path, dtype="bfloat16")
    what = f"{name} [{seq}] bfloat16 with k2 kernels vs mlx-lm bf16, both against mlx-lm float32"
    kp._shape_and_finite(ours, ref, what)
    cos_ours = kp.cosines(np.atleast_2d(ours), np.atleast_2d(ref)).mean()
    cos_theirs = kp.cosines(np.atleast_2d(theirs), np.atleast_2d(ref)).mean()
    agree = lambda x: int((np.atleast_2d(x).argmax(-1) == np.atleast_2d(ref).argmax(-1)).sum())
    assert cos_ours > cos_theirs, f"{what}: mean cosine {cos_ours:.5f} <= mlx-lm bf16's {cos_theirs:.5f}"
    assert agree(ours) >= agree(theirs) - 1, (
        f"{what}: argmax agrees at {agree(ours)} positions, mlx-lm bf16 at {agree(theirs)}")


# =============================================================================================================
# Engine self-equivalences (float32): chunked prefill, two-stage split, cached decode == one-shot

_one_shot: dict[tuple[str, str], np.ndarray] = {}


def one_shot(ws, name, seq, tmp_path) -> np.ndarray:
    key = (name, seq)
    if key not in _one_shot:
        _one_shot[key] = kp.engine_logits(ws.path(name), SEQS[seq], tmp_path, dtype="float32")
    return _one_shot[key]


@pytest.mark.parametrize("chunk", [7, 32])
@pytest.mark.parametrize("name", EQUIV)
def test_chunked_prefill_equals_one_shot(ws, engine, tmp_path, name, chunk):
    base = one_shot(ws, name, "long70", tmp_path)
    got = kp.engine_logits(ws.path(name), SEQS["long70"], tmp_path, dtype="float32",
                           extra=("--prefill-chunk", chunk))
    kp.assert_exact(got, base, f"{name} --prefill-chunk {chunk} vs one-shot", kp.BLAS_SHAPES_EQUIV_REL)


# Split points: right after the first layer, at DeepSeek's dense->MoE boundary, and before the last layer.
_SPLITS = [(n, k) for n in EQUIV for k in ((1, 3) if CHECKPOINTS[n].structure == "kimi" else (1, 3, 4))]


@pytest.mark.parametrize("name, split", _SPLITS)
def test_two_stage_split_equals_one_shot(ws, engine, tmp_path, name, split):
    base = one_shot(ws, name, "long", tmp_path)
    got = kp.engine_logits(ws.path(name), SEQS["long"], tmp_path, dtype="float32", extra=("--split-at", split))
    kp.assert_exact(got, base, f"{name} --split-at {split} vs one-shot", kp.EQUIV_REL)


@pytest.mark.parametrize("name", EQUIV)
@pytest.mark.parametrize("kernels", ["k2", "mlx"])
def test_decode_steps_equal_one_shot(ws, engine, tmp_path, name, kernels):
    flags = ("--kernels", kernels)
    base = kp.engine_logits(ws.path(name), SEQS["long"], tmp_path, dtype="float32", extra=flags)
    got = kp.engine_logits(ws.path(name), SEQS["long"], tmp_path, dtype="float32", extra=("--decode-steps", *flags))
    rel = kp.K2_KERNELS_EQUIV_REL if kernels == "k2" else kp.EQUIV_REL
    kp.assert_exact(got, base, f"{name} --decode-steps vs one-shot (--kernels {kernels})", rel)


# =============================================================================================================
# Bad input: a clear error (non-zero exit, message naming the culprit), never a crash or silent garbage


def _run_expecting_error(model, tmp_path, culprits: list[str], what: str) -> None:
    out = tmp_path / "never.npy"
    proc = kp.run_engine(["logits", "--model", model, "--ids", kp.ids_arg(SEQS["short"]), "--out", out,
                          "--dtype", "float32"])
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{what}: k2mlx exited 0 (output file {'written' if out.exists() else 'absent'})"
    assert proc.returncode > 0, f"{what}: k2mlx died from signal {-proc.returncode} instead of reporting an error"
    named = [c for c in culprits if c in text]
    assert named, (f"{what}: the error names none of {culprits[:4]}{' ...' if len(culprits) > 4 else ''}\n"
                   f"  output: {text[-2000:]}")


def test_error_truncated_shard(ws, engine, tmp_path):
    model = tmp_path / "ckpt"
    shutil.copytree(ws.path("kimi-hf-bf16-sharded"), model)
    shard = sorted(model.glob("model-*.safetensors"))[1]
    header, start = read_header(shard)
    cut = start + (shard.stat().st_size - start) * 6 // 10
    lost = sorted((n for n, t in header.items() if start + t["data_offsets"][1] > cut),
                  key=lambda n: header[n]["data_offsets"][0])
    with open(shard, "r+b") as f:
        f.truncate(cut)
    _run_expecting_error(model, tmp_path, lost, f"{shard.name} truncated to {cut} bytes")


def test_error_corrupt_shard_header(ws, engine, tmp_path):
    model = tmp_path / "ckpt"
    shutil.copytree(ws.path("kimi-hf-bf16-sharded"), model)
    shard = sorted(model.glob("model-*.safetensors"))[0]
    with open(shard, "r+b") as f:
        f.seek(8)
        f.write(b'{"model.embed_tokens.weight": {"dtype": [')  # breaks the JSON, keeps the length field
    _run_expecting_error(model, tmp_path, [shard.name], f"{shard.name} with a corrupt header")


# (module, tensor kind, bad shape): packed width giving 4.5 bits, packed width giving 7 bits (no such affine
# format), and scales giving a group size of 128/3.
_BAD_QUANT = {
    "bits-4.5": ("model.layers.1.self_attn.o_proj", ("weight",), (256, 36)),
    "bits-7": ("model.layers.2.self_attn.q_a_proj", ("weight",), (128, 56)),
    "group-42.7": ("model.layers.1.mlp.switch_mlp.down_proj", ("scales", "biases"), (16, 256, 3)),
}


@pytest.mark.parametrize("case", list(_BAD_QUANT))
def test_error_unquantizable_shape(ws, engine, tmp_path, case):
    import mlx.core as mx

    module, kinds, shape = _BAD_QUANT[case]
    model = tmp_path / "ckpt"
    shutil.copytree(ws.path("kimi-q4"), model)
    f = model / "model.safetensors"
    w = mx.load(str(f))
    for k in kinds:
        w[f"{module}.{k}"] = mx.zeros(shape, dtype=w[f"{module}.{k}"].dtype)
    mx.eval(list(w.values()))  # read everything before the file is replaced
    tmp = model / "rewritten.safetensors"
    mx.save_safetensors(str(tmp), w, metadata={"format": "mlx"})
    tmp.replace(f)
    _run_expecting_error(model, tmp_path, [module], f"{case}: {module} {kinds} reshaped to {shape}")
