"""Deterministic multilingual test corpus for the tokenizer comparison tests.

Produces a list of documents (bytes) covering English prose, code (camelCase, snake_case, numbers,
punctuation runs), Chinese / Japanese (Han, kana, CJK punctuation), Korean, emoji (ZWJ sequences,
modifiers, flags), combining marks, whitespace runs (tabs, CRLF, NBSP, U+3000, U+0085), contractions
in every case, every assigned code point (per this Python's unicodedata) and random bytes.
Run as a script to write the corpus to a file: python make_corpus.py OUT [--size BYTES].
"""
import random
import sys
import unicodedata

WORDS = ("the of and to in is was that for it with as his on be at by had are but from or have an they which "
         "one you were all her she there would their we him been has when who will no more if out so said what up "
         "its about than into them can only other time new some could these two may first then do any like my now "
         "over such our man me even most made after also did many before must through back years where much your way "
         "well down should because each just those people how too little state good very make world still own see men "
         "work long get here between both life being under never day same another know while last might us great old "
         "year off come since against go came right used take three").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'M", "'LL", "'D", "’s", "'ſ", "'x"]
IDENTS = ["getUserName", "iPhone", "XMLHttpRequest", "parse_json_value", "MAX_BUFFER_SIZE", "__init__", "k2mlx",
          "snake_case_name", "HTTPServer2", "camelCaseWord", "ABCdef", "x1y2z3", "ÉcoleNormale", "ñandúGrande"]
PUNCT = ["...", "!!!", "?!", "->", "=>", "::", "&&", "||", "<=>", "/*", "*/", "{{", "}}", "#!", "@@", "%%", "--", "~~~",
         "```", "'''", '"""', "<|", "|>", "[]", "()", "{}", ";;", ",,", "..", "$$", "^^", "\\\\", "//"]
EMOJI = ["😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸", "❤️", "🤖", "🧑🏿‍💻", "✨", "🔥", "🙂", "🫠", "⌚", "☕"]
CJK_PUNCT = "、。〃〄々〆〇〈〉《》「」『』【】〒〓〔〕〖〗〘〙〚〛〜〝〞〟〰〱〲〳〴〵〶〷〻〼〽・ー！？（），：；"
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\r", " \n ", "\u00a0", "\u3000", "\u2003", "\u0085", "\u2028",
              "\x0b", "\x0c", "   \t  ", "\n   \n"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "\u0915\u094d\u0937", "\u0627\u064e\u0644\u0652", "o\u0336\u0337",
             "\u05e9\u05c1\u05b8", "\u0e01\u0e34", "Z\u0351\u036b\u0343\u036a\u0302", "\u1100\u1161\u11a8"]
SPECIALS = ["<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>", "[BOS]", "[EOS]",
            "<|tool_calls_section_begin|>", "<|tool_call_begin|>", "<|reserved_token_163700|>", "<|im_end",
            "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<think>", "</think>"]


def assigned_code_points():
    """Every assigned, non-surrogate code point known to this Python (Unicode 14 on CPython 3.11)."""
    return [c for c in range(0x110000)
            if not (0xD800 <= c <= 0xDFFF) and unicodedata.category(chr(c)) != "Cn"]


def rand_han(r, n):
    blocks = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0xF900, 0xFAFF)]
    out = []
    for _ in range(n):
        lo, hi = r.choice(blocks) if r.random() < 0.2 else blocks[0]
        out.append(chr(r.randint(lo, hi)))
    return "".join(out)


def english(r):
    parts = []
    for _ in range(r.randint(5, 60)):
        w = r.choice(WORDS)
        if r.random() < 0.1:
            w = w.capitalize()
        if r.random() < 0.03:
            w = w.upper()
        if r.random() < 0.08:
            w += r.choice(CONTRACTIONS)
        parts.append(w)
        if r.random() < 0.1:
            parts.append(r.choice([",", ".", ";", ":", "!", "?", " -", " (x)", " 42", " 3.14159", " 1,000,000"]))
    return " ".join(parts)


def code(r):
    lines = []
    for _ in range(r.randint(2, 20)):
        ind = r.choice(["", "    ", "        ", "\t", "\t\t"])
        a, b = r.choice(IDENTS), r.choice(IDENTS)
        n = r.choice(["0", "1", "42", "1234567", "0xFF", "3.5e-10", "1_000_000", "007", "12345678901234567890"])
        lines.append(r.choice([
            f"{ind}def {a}({b}, n={n}):",
            f"{ind}{a} = {b}[{n}] + {b}.{a}()",
            f"{ind}if ({a} != nullptr && {b}->{a} >= {n}) {{ return {n}; }}",
            f"{ind}// {english(r)[:60]}",
            f"{ind}printf(\"%d %s\\n\", {n}, \"{a}\");",
            f"{ind}{r.choice(PUNCT)}{r.choice(PUNCT)} {a}{r.choice(PUNCT)}{n}",
            f"{ind}let {a}: Vec<u8> = vec![{n}; {n}];",
        ]))
    return r.choice(["\n", "\r\n"]).join(lines) + "\n"


def cjk(r):
    out = []
    for _ in range(r.randint(3, 30)):
        k = r.random()
        if k < 0.4:
            out.append(rand_han(r, r.randint(1, 12)))
        elif k < 0.55:
            out.append("".join(chr(r.randint(0x3041, 0x3096)) for _ in range(r.randint(1, 6))))  # hiragana
        elif k < 0.7:
            out.append("".join(chr(r.randint(0x30A1, 0x30FA)) for _ in range(r.randint(1, 6))))  # katakana
        elif k < 0.85:
            out.append("".join(chr(r.randint(0xAC00, 0xD7A3)) for _ in range(r.randint(1, 5))))  # hangul
        else:
            out.append(r.choice(CJK_PUNCT))
        if r.random() < 0.2:
            out.append(r.choice([" ", "\n", "123", "ABC", "abc", "Kimi", "，", "。"]))
    return "".join(out)


def mixed(r, cps):
    out = []
    for _ in range(r.randint(5, 40)):
        k = r.random()
        if k < 0.15:
            out.append(r.choice(EMOJI))
        elif k < 0.3:
            out.append(r.choice(COMBINING))
        elif k < 0.45:
            out.append(r.choice(WHITESPACE))
        elif k < 0.55:
            out.append(r.choice(SPECIALS))
        elif k < 0.75:
            out.append("".join(chr(r.choice(cps)) for _ in range(r.randint(1, 8))))
        elif k < 0.85:
            out.append(r.choice(IDENTS) + r.choice(CONTRACTIONS))
        else:
            out.append(english(r)[:40])
    return "".join(out)


def documents(size=1_100_000, seed=1234):
    """Returns (docs, stats): docs is a list of bytes, stats maps category -> total bytes."""
    r = random.Random(seed)
    cps = assigned_code_points()
    docs, stats, total = [], {}, 0
    # Every assigned code point once, in runs of 64, so each character meets the pre-tokenizer.
    for i in range(0, len(cps), 64):
        d = "".join(chr(c) for c in cps[i:i + 64]).encode()
        docs.append(d)
        stats["all_code_points"] = stats.get("all_code_points", 0) + len(d)
        total += len(d)
    gens = [("english", english), ("code", code), ("cjk", cjk), ("mixed", lambda rr: mixed(rr, cps))]
    while total - stats["all_code_points"] < size:
        k = r.random()
        if k < 0.04:
            n = r.randint(1, 300)
            d, name = bytes(r.getrandbits(8) for _ in range(n)), "random_bytes"
        elif k < 0.08:
            d = ("".join(r.choice(WHITESPACE) for _ in range(r.randint(1, 40))) + r.choice(WORDS)).encode()
            name = "whitespace"
        else:
            name, g = r.choice(gens)
            d = g(r).encode()
        docs.append(d)
        stats[name] = stats.get(name, 0) + len(d)
        total += len(d)
    return docs, stats


if __name__ == "__main__":
    size = int(sys.argv[sys.argv.index("--size") + 1]) if "--size" in sys.argv else 1_100_000
    docs, stats = documents(size)
    with open(sys.argv[1], "wb") as f:
        for d in docs:
            f.write(b"%d\n%s\n" % (len(d), d))
    print(stats, sum(stats.values()), "bytes in", len(docs), "documents")
