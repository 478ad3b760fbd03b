"""k2mlx's tokenizer.json (byte-level BPE) support against the `tokenizers` package: a DeepSeek-V3-style
tokenizer (its Split/ByteLevel pre-tokenizer sequence, added special and non-special tokens) and a
GPT-2-style one (ByteLevel with its own regex), both trained with `tokenizers` on the test corpus."""
import json

import pytest

import references

GPT2_STYLE = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
VARIANTS = {
    "deepseek_v3": (references.DEEPSEEK_V3_PRE_TOKENIZER, 16000),
    "gpt2_prefix_space": (dict(GPT2_STYLE, add_prefix_space=True), 6000),
    "digits_then_bytelevel": ({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Split", "pattern": {"String": "\n"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "MergedWithPrevious", "invert": False},
        GPT2_STYLE]}, 4000),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def hf_model(request, corpus, tmp_path_factory):
    docs, _ = corpus
    pre, vocab = VARIANTS[request.param]
    d = tmp_path_factory.mktemp("hf-" + request.param)
    texts = [x.decode("utf-8", "replace") for x in docs[-3000:]]
    tok = references.train_byte_level_bpe(texts, vocab, pre, d / "tokenizer.json")
    return request.param, d, tok


def test_corpus_matches_tokenizers(probe, hf_model, corpus):
    name, d, tok = hf_model
    docs, stats = corpus
    got = probe.encode(["--model", str(d)], docs)
    ref = [e.ids for e in tok.encode_batch([x.decode("utf-8", "replace") for x in docs], add_special_tokens=False)]
    bad = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
    print(f"tokenizers parity [{name}]: {len(docs)} documents, {sum(stats.values())} bytes, "
          f"{sum(map(len, ref))} tokens, {len(bad)} differing documents")
    assert not bad, [(docs[i][:60], ref[i][:12], got[i][:12]) for i in bad[:3]]


def test_decode_matches_tokenizers(probe, hf_model, corpus):
    name, d, tok = hf_model
    docs, _ = corpus
    ids = [e.ids for e in tok.encode_batch([x.decode("utf-8", "replace") for x in docs[-800:]], add_special_tokens=False)]
    specials = tok.encode("<｜User｜>hi<think>x</think><｜end▁of▁sentence｜>", add_special_tokens=False).ids
    ids.append(specials)
    for skip in (False, True):
        args = ["decode", "--model", str(d)] + (["--skip-special"] if skip else [])
        out = probe.parse_records(probe.run(args, "".join(" ".join(map(str, x)) + "\n" for x in ids).encode()))
        ref = [tok.decode(x, skip_special_tokens=skip).encode() for x in ids]
        assert out == ref


def test_unsupported_component_is_refused(probe, tmp_path):
    spec = {"version": "1.0", "added_tokens": [], "normalizer": {"type": "NFKC"}, "pre_tokenizer": GPT2_STYLE,
            "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(RuntimeError, match="unsupported tokenizer.json component normalizer NFKC"):
        probe.encode(["--model", str(tmp_path)], [b"x"])
