# Prompts from files and stdin (--prompt-file, --ids-file, '-') for tokenize, detokenize, generate, logits and
# chat, including inputs larger than Linux's 128 KiB limit on one argument; the rendered prompt
# (--print-prompt) against Python's jinja2; and the exit codes of malformed flags (2, naming the flag) for
# every command, with --help / --version still exiting 0. References: the `tokenizers` library, jinja2 (via
# test_cli_text's TextModel) and the engine's own --ids path.
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import k2parity as kp
from test_cli_text import TIMEOUT, models, run_bytes  # noqa: F401  (models is a fixture)

BIG_TEXT_BYTES = 200 * 1024  # over MAX_ARG_STRLEN (128 KiB): could not be passed as one argument


def k2_fails(*args, input: str | None = None) -> subprocess.CompletedProcess:
    kw = {"input": input} if input is not None else {}
    return run_bytes([kp.engine_bin(), *args], timeout=TIMEOUT, **kw)


def k2(*args, input: str | None = None) -> subprocess.CompletedProcess:
    p = k2_fails(*args, input=input)
    if p.returncode != 0:
        raise AssertionError(f"k2mlx exited {p.returncode}: {' '.join(map(str, p.args))}\n"
                             f"{(p.stdout[-1500:] + p.stderr[-1500:]).strip()}")
    return p


def big_text(m) -> str:
    """About 200 KiB of varied text (words, digits, punctuation, non-ASCII, newlines)."""
    rng = np.random.default_rng(99)
    words = ["Shaba", "kolu", "tinesta", "42", "héllo", "wörld", "日本語", "—", "3.14159", "ça", "va?", "\n",
             "Ελληνικά", "Кириллица", "🙂", "and", "the", "of", "a"]
    out, size = [], 0
    while size < BIG_TEXT_BYTES:
        w = words[int(rng.integers(len(words)))]
        out.append(w)
        size += len(w.encode()) + 1
    return " ".join(out)


def parse_ids_out(stdout: str) -> list[int]:
    first = stdout.split("\n", 1)[0].strip()
    return [int(x) for x in first.split(",")]


# =============================================================================================================
# tokenize / detokenize from files and stdin, > 128 KiB


def test_tokenize_big_file_and_stdin_match_tokenizers(models, engine, tmp_path):
    m = models["instruct"]
    text = big_text(m)
    assert len(text.encode()) > 128 * 1024
    f = tmp_path / "big.txt"
    f.write_bytes(text.encode())
    want = m.encode(text)
    from_file = parse_ids_out(k2("tokenize", "--model", m.dir, "--prompt-file", f).stdout)
    from_stdin = parse_ids_out(k2("tokenize", "--model", m.dir, "--prompt-file", "-", input=text).stdout)
    assert from_file == want, f"tokenize --prompt-file: {len(from_file)} ids vs tokenizers' {len(want)}"
    assert from_stdin == want, f"tokenize --prompt-file -: {len(from_stdin)} ids vs tokenizers' {len(want)}"


@pytest.mark.parametrize("fmt", ["comma", "lines", "spaces", "json"])
def test_detokenize_big_ids_file(models, engine, tmp_path, fmt):
    m = models["instruct"]
    text = big_text(m)
    ids = m.encode(text)
    body = {"comma": ",".join(map(str, ids)), "lines": "\n".join(map(str, ids)) + "\n",
            "spaces": " ".join(map(str, ids)), "json": json.dumps(ids)}[fmt]
    assert len(body) > 128 * 1024
    f = tmp_path / f"ids.{fmt}"
    f.write_text(body)
    want = m.tok.decode(ids, skip_special_tokens=False)
    got = k2("detokenize", "--model", m.dir, "--ids-file", f).stdout
    assert got == want + "\n", f"detokenize --ids-file ({fmt}): {len(got)} chars vs tokenizers' {len(want) + 1}"
    got = k2("detokenize", "--model", m.dir, "--ids-file", "-", input=body).stdout
    assert got == want + "\n", f"detokenize --ids-file - ({fmt}): {len(got)} chars vs {len(want) + 1}"


@pytest.mark.parametrize("body, bad", [
    ("1, 2, x3, 4", "'x3'"),
    ("1 2\n3\n-4\n", "'-4'"),
    ("1,,2", "empty element"),
    ("1,2,", "ends with ','"),
    ("[1, 2, \"3\"]", "element 3 of the JSON array"),
    ("[1, 2", "not a valid JSON array"),
    ("", "no token ids"),
    (" []", "the JSON array is empty"),
    ("[7203.6E3738]", "not a valid JSON array"),
])
def test_bad_ids_file_names_file_and_token(models, engine, tmp_path, body, bad):
    m = models["instruct"]
    f = tmp_path / "bad-ids.txt"
    f.write_text(body)
    p = k2_fails("detokenize", "--model", m.dir, "--ids-file", f)
    assert p.returncode == 2, f"exit {p.returncode} for {body!r}: {p.stderr}"
    assert str(f) in p.stderr and bad in p.stderr, f"message for {body!r} lacks the file or {bad}: {p.stderr!r}"
    if "\n" in body:
        assert "line 3" in p.stderr, f"the message should give the line of '-4': {p.stderr!r}"


def test_missing_prompt_file_is_bad_input(models, engine, tmp_path):
    m = models["instruct"]
    for cmd in (["tokenize", "--prompt-file"], ["generate", "--prompt-file"], ["logits", "--out", tmp_path / "o.npy",
                                                                               "--ids-file"]):
        p = k2_fails(cmd[0], "--model", m.dir, *cmd[1:], tmp_path / "nope.txt")
        assert p.returncode == 2 and "nope.txt" in p.stderr, f"{cmd[0]}: exit {p.returncode}: {p.stderr!r}"


# =============================================================================================================
# generate / logits / chat from files


def test_generate_prompt_file_equals_prompt(models, engine, tmp_path):
    m = models["instruct"]
    user = "Shaba kolu tinesta, 42 — ça va? 日本\nsecond line"
    (tmp_path / "p.txt").write_text(user)
    (tmp_path / "s.txt").write_text("Be brief.")
    common = ("-n", 6, "--temp", 0, "--dtype", "float32", "--chat")
    a = k2("generate", "--model", m.dir, "--prompt", user, "--system", "Be brief.", *common).stdout
    b = k2("generate", "--model", m.dir, "--prompt-file", tmp_path / "p.txt", "--system-file", tmp_path / "s.txt",
           *common).stdout
    c = k2("generate", "--model", m.dir, "--prompt-file", "-", "--system", "Be brief.", *common, input=user).stdout
    assert a == b == c, f"--prompt {a!r} vs --prompt-file {b!r} vs stdin {c!r}"


def test_print_prompt_equals_jinja2(models, engine, tmp_path):
    m = models["thinking"]
    user = "What is 6 × 7?\nThink first."
    messages = [{"role": "system", "content": "You answer in riddles."}, {"role": "user", "content": user}]
    (tmp_path / "p.txt").write_text(user)
    got = k2("generate", "--model", m.dir, "--prompt-file", tmp_path / "p.txt", "--chat", "--system",
             "You answer in riddles.", "--print-prompt").stdout
    assert got == m.render(messages), f"--print-prompt:\n{got!r}\njinja2:\n{m.render(messages)!r}"
    plain = k2("generate", "--model", m.dir, "--prompt", user, "--print-prompt").stdout
    assert plain == user


def test_logits_ids_file_formats_equal_ids(ws, engine, tmp_path):
    model = ws.path("kimi-hf-fp32")
    ids = kp.SEQS["long"]
    base = kp.engine_logits(model, ids, tmp_path, all_positions=False)
    for fmt, body in {"json": json.dumps(ids), "lines": "\n".join(map(str, ids)),
                      "mixed": " ,".join(map(str, ids)) + "\n"}.items():
        f, out = tmp_path / f"ids-{fmt}", tmp_path / f"out-{fmt}.npy"
        f.write_text(body)
        proc = kp.run_engine(["logits", "--model", model, "--ids-file", f, "--out", out, "--dtype", "float32"])
        kp._check(proc, out)
        assert np.array_equal(np.load(out), base), f"logits --ids-file ({fmt}) differ from --ids"


def test_chat_prompt_file_answers_first_message(models, engine, tmp_path):
    """chat --prompt-file -: the first user turn comes from stdin, is answered, then the chat ends (exit 0); the
    answer equals generate --chat on the same message, and --print-prompt shows the jinja2 rendering."""
    m = models["instruct"]
    user = "line one\nline two of one message"
    p = k2("chat", "--model", m.dir, "--prompt-file", "-", "-n", 6, "--temp", 0, "--dtype", "float32",
           "--print-prompt", input=user)
    want = k2("generate", "--model", m.dir, "--prompt", user, "--chat", "-n", 6, "--temp", 0, "--dtype",
              "float32").stdout
    answer = p.stdout.split("\n> ")[0] if "\n> " in p.stdout else p.stdout
    assert answer.strip() == want.strip(), f"chat answer {answer!r} vs generate --chat {want!r}"
    assert m.render([{"role": "user", "content": user}]) in p.stderr, f"--print-prompt output missing: {p.stderr!r}"


def test_chat_seed_gives_each_turn_its_own_stream(models, engine, tmp_path):
    """chat --seed S --temp 1: the first turn samples as generate --chat --seed S does; the same question again after
    /reset draws from the next stream (seed S + 1), not the first turn's draws over again."""
    m = models["instruct"]
    user = "Shaba kolu tinesta?"
    args = ["--model", m.dir, "-n", 12, "--temp", 1, "--top-k", 0, "--dtype", "float32", "--seed", 7]
    p = k2("chat", *args, input=f"{user}\n/reset\n{user}\n")
    turns = [t for t in p.stdout.split("> ") if t.strip()]
    assert len(turns) == 2, f"expected two answers, got {p.stdout!r}"
    first = k2("generate", *args, "--prompt", user, "--chat").stdout.strip()
    second = k2("generate", *args[:-1], 8, "--prompt", user, "--chat").stdout.strip()
    assert turns[0].strip() == first, f"turn 1 {turns[0]!r} vs generate --seed 7 {first!r}"
    assert turns[1].strip() == second, f"turn 2 {turns[1]!r} vs generate --seed 8 {second!r}"
    assert first != second, "fixture: seeds 7 and 8 give the same answer (pick another question)"


# =============================================================================================================
# Exit codes of malformed flags: 2, with the flag named


def _cases(tmp: Path, model: Path) -> list[tuple[list, str]]:
    out = tmp / "o.npy"
    return [
        (["generate", "-m", model, "--ids", "1", "--bogus-flag"], "--bogus-flag"),
        (["generate", "-m", model, "--ids", "1", "--max-tokens", "abc"], "--max-tokens"),
        (["generate", "-m", model, "--ids", "1", "--max-tokens", "-3"], "--max-tokens"),
        (["generate", "-m", model, "--ids", "1", "--top-p", "1.5"], "--top-p"),
        (["generate", "-m", model, "--ids", "1", "--temp", "-1"], "--temp"),
        (["generate", "-m", model, "--ids", "1", "--prefill-chunk", "-8"], "--prefill-chunk"),
        (["logits", "-m", model, "--ids", "1", "--out", out, "--prefill-chunk", "x"], "--prefill-chunk"),
        (["logits", "-m", model, "--ids", "1", "--out", out, "--split-at", "1.5"], "--split-at"),
        (["logits", "-m", model, "--ids", "1,zz", "--out", out], "--ids"),
        (["logits", "--ids", "1", "--out", out], "--model"),
        (["chat", "-m", model, "--min-p", "1"], "--min-p"),
        (["chat", "-m", model, "--seed", "-1"], "--seed"),
        (["pipeline", "-m", model, "--ids", "1", "--repetition-penalty", "0"], "--repetition-penalty"),
        (["serve", "-m", model, "--port", "notaport"], "--port"),
        (["plan", "--bogus"], "--bogus"),
        (["inspect", "-m", model, "--context", "1e99"], "--context"),
        (["tokenize", "-m", model, "--no-such", "x"], "--no-such"),
        (["detokenize", "-m", model, "1,2", "--skip-special", "--what"], "--what"),
        (["launch", "-n", "two"], "--ranks"),  # -n is short for --ranks
        (["nosuchcommand"], "nosuchcommand"),
        ([], "subcommand"),
    ]


def test_malformed_flags_exit_2_naming_the_flag(ws, engine, tmp_path):
    model = ws.path("kimi-hf-fp32")
    failures = []
    for args, flag in _cases(tmp_path, model):
        p = k2_fails(*args)
        if p.returncode != 2 or flag not in p.stderr:
            failures.append(f"k2mlx {' '.join(map(str, args))}: exit {p.returncode}, stderr {p.stderr.strip()[:300]!r}")
    assert not failures, "malformed flags must exit 2 and name the flag:\n" + "\n".join(failures)


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["generate", "--help"], ["logits", "--help"],
                                  ["serve", "--help"], ["tokenize", "--help"]])
def test_help_and_version_exit_0(engine, args):
    p = k2_fails(*args)
    assert p.returncode == 0 and p.stdout.strip(), f"k2mlx {' '.join(args)}: exit {p.returncode}: {p.stderr!r}"
