"""Encoding stays linear-ish: a megabyte without spaces (one giant pre-tokenizer piece when Kimi's
chunking is off) must not trigger quadratic BPE or catastrophic regex backtracking. Ratios of two
sizes in the same run, not absolute timings, decide."""
import json
import random


def _bench(probe, args, text):
    n, secs = probe.run(["bench", *args], text.encode()).decode().split()
    return int(n), float(secs)


def test_megabyte_without_spaces_scales_linearly(probe, kimi_vocab, tmp_path):
    (tmp_path / "specials.json").write_text(json.dumps({}))
    args = ["--ranks", str(kimi_vocab), "--specials", str(tmp_path / "specials.json"), "--no-chunking"]
    r = random.Random(1)
    for alphabet in ["abcdefghijklmnopqrstuvwxyz", "!@#$%^&*()_+-=", "中文字符测试一二三", "\u00a0 \t\n"]:
        small = "".join(r.choice(alphabet) for _ in range(250_000))
        big = small * 4
        _, t_small = _bench(probe, args, small)
        n_big, t_big = _bench(probe, args, big)
        assert n_big > 0
        assert t_big < 30, (alphabet, t_big)
        assert t_big < 8 * max(t_small, 0.02), (alphabet, t_small, t_big)  # linear would be ~4x
