"""k2mlx's Kimi-K2 tokenizer against Python tiktoken built from Kimi's real tiktoken.model, Kimi's
original pat_str (with `&&` class intersections) and the 256-id special block: zero differences."""
import random

import references


def _first_diff(a, b):
    return next(i for i in range(min(len(a), len(b)) + 1) if i >= len(a) or i >= len(b) or a[i] != b[i])


def _compare(enc, docs, got, allowed_special):
    bad = []
    for i, (d, g) in enumerate(zip(docs, got)):
        text = d.decode("utf-8", "replace")
        ref = enc.encode(text, allowed_special=allowed_special, disallowed_special=())
        if ref != g:
            k = _first_diff(ref, g)
            bad.append((i, text[:80], ref[max(0, k - 2):k + 3], g[max(0, k - 2):k + 3]))
    return bad


def test_corpus_matches_tiktoken(probe, kimi_model_dir, kimi_encoding, corpus):
    docs, stats = corpus
    assert sum(stats.values()) >= 1_000_000
    got = probe.encode(["--model", str(kimi_model_dir)], docs)
    bad = _compare(kimi_encoding, docs, got, "all")
    total = sum(len(g) for g in got)
    print(f"tiktoken parity: {len(docs)} documents, {sum(stats.values())} bytes, {total} tokens, "
          f"{len(bad)} differing documents; {stats}")
    assert not bad, bad[:5]


def test_corpus_matches_tiktoken_without_specials(probe, kimi_model_dir, kimi_encoding, corpus):
    docs, _ = corpus
    docs = [d for d in docs if b"<|" in d or b"[BOS]" in d or b"[EOS]" in d][:400] + docs[-300:]
    got = probe.encode(["--model", str(kimi_model_dir), "--no-special"], docs)
    assert not _compare(kimi_encoding, docs, got, set())


def test_special_tokens_become_control_ids(probe, kimi_model_dir):
    [ids] = probe.encode(["--model", str(kimi_model_dir)], ["a<|im_end|>b[EOS]<|reserved_token_163700|>".encode()])
    assert 163586 in ids and 163585 in ids and 163700 in ids
    [plain] = probe.encode(["--model", str(kimi_model_dir), "--no-special"], [b"<|im_end|>"])
    assert all(i < references.KIMI_BASE for i in plain)


def test_kimi_chunking_on_long_runs(probe, kimi_model_dir, kimi_encoding):
    """Runs longer than 25k characters are cut as tokenization_kimi.py cuts them."""
    r = random.Random(7)
    docs = ["x" * 60_001, " " * 30_000 + "y", "ab" * 20_000 + " " + "中" * 26_000,
            "".join(r.choice("abc ") for _ in range(100_000)) + "q" * 50_000]
    got = probe.encode(["--model", str(kimi_model_dir)], [d.encode() for d in docs])
    for d, g in zip(docs, got):
        ref = [t for c in references.kimi_chunks(d) for t in kimi_encoding.encode(c, allowed_special="all")]
        assert g == ref


def test_pcre2_reading_of_ampersand_is_wrong(probe, tmp_path, corpus):
    """The comparison can fail: PCRE2 given Kimi's pattern verbatim (no && rewrite) splits differently."""
    docs, _ = corpus
    pat = tmp_path / "pat.txt"
    pat.write_text(references.KIMI_PAT_STR)
    # "pieces" translates the pattern; a pattern where && stays literal is built by escaping it.
    naive = tmp_path / "naive.txt"
    naive.write_text(references.KIMI_PAT_STR.replace("&&[^\\p{Han}]]", "\\&\\&\\[^\\p{Han}\\]]"))
    sample = docs[-500:]
    a = probe.run(["pieces", "--pattern", str(pat)], probe.records(sample))
    b = probe.run(["pieces", "--pattern", str(naive)], probe.records(sample))
    assert a != b
