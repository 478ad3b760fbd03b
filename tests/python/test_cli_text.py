# The text commands of the k2mlx binary on a tiny Kimi checkpoint with the real Kimi-K2 chat templates:
# tokenize / detokenize against the `tokenizers` library, `generate --prompt --chat` against ids rendered by
# Python's jinja2, and the interactive `chat` (prefix reuse across turns must not change answers; Ctrl-C stops
# an answer; end of input exits 0). Owns no fixtures beyond the template checkpoints below.
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import k2parity as kp

sys.path.insert(0, str(kp.ROOT / "tools" / "text"))
import references  # noqa: E402  (jinja2 configured as transformers' apply_chat_template)

TEMPLATES = kp.ROOT.parent / "shared" / "data" / "templates"  # as tests/python/text/ finds them
TEMPLATE_FILES = {"instruct": "kimi-k2-instruct.jinja", "thinking": "kimi-k2-thinking.jinja"}
TIMEOUT = 60  # seconds for any single k2mlx call on the tiny model
CHAT_TOKENS = 8
STAT_RE = re.compile(r"\[(\d+) new prompt tokens \((\d+) reused\), [\d.]+ tok/s prefill; (\d+) tokens, "
                     r"[\d.]+ tok/s(, interrupted)?\]")


def _template_source(kind: str) -> str:
    p = TEMPLATES / TEMPLATE_FILES[kind]
    if not p.exists():
        pytest.skip(f"chat template {p} not found (the shared data folder next to the repository is missing)")
    return p.read_text()


class TextModel:
    """A tiny kimi checkpoint (the parity suite's kimi-hf-bf16 weights, linked) whose tokenizer_config.json
    carries one of the Kimi-K2 chat templates, plus the Python references for it."""

    def __init__(self, root: Path, src: Path, kind: str):
        from tokenizers import Tokenizer

        self.kind = kind
        self.dir = root / f"kimi-{kind}"
        self.dir.mkdir()
        for f in src.iterdir():
            if f.name.startswith("."):
                continue
            if f.suffix == ".safetensors":
                (self.dir / f.name).symlink_to(f)
            else:
                shutil.copy(f, self.dir / f.name)
        self.template = _template_source(kind)
        tcfg = json.loads((self.dir / "tokenizer_config.json").read_text())
        tcfg["chat_template"] = self.template
        (self.dir / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2, ensure_ascii=False) + "\n")
        self.tok = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        self.jinja = references.chat_environment().from_string(self.template)

    def render(self, messages: list[dict]) -> str:
        return self.jinja.render(messages=messages, tools=None, add_generation_prompt=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids


@pytest.fixture(scope="module")
def models(ws, tmp_path_factory) -> dict[str, TextModel]:
    root = tmp_path_factory.mktemp("text-models")
    src = ws.path("kimi-hf-bf16")
    return {k: TextModel(root, src, k) for k in TEMPLATE_FILES}


def run_bytes(cmd: list, **kw) -> subprocess.CompletedProcess:
    """Like subprocess.run(text=True) but without newline translation ("\r\n" must survive) and strict UTF-8."""
    if "input" in kw:
        kw["input"] = kw["input"].encode()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, **kw)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode("utf-8", "replace")
    return proc


def k2(*args, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    proc = run_bytes([kp.engine_bin(), *args], timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"k2mlx exited {proc.returncode}: {' '.join(map(str, proc.args))}\n"
                             f"{(proc.stdout[-1500:] + proc.stderr[-1500:]).strip()}")
    return proc


def engine_ids(model: TextModel, text: str, *flags) -> list[int]:
    out = k2("tokenize", "--model", model.dir, *flags, text).stdout
    first = out.split("\n", 1)[0].strip()
    return [int(x) for x in first.split(",")] if first else []


def detokenize(model: TextModel, ids: list[int], *flags) -> str:
    out = k2("detokenize", "--model", model.dir, *flags, kp.ids_arg(ids)).stdout
    assert out.endswith("\n"), f"detokenize output does not end in a newline: {out!r}"
    return out[:-1]


def generate_ids(model: TextModel, tmp_path: Path, *args, n=CHAT_TOKENS) -> tuple[list[int], dict]:
    out, stats = tmp_path / f"ids-{time.monotonic_ns()}.json", tmp_path / f"stats-{time.monotonic_ns()}.json"
    k2("generate", "--model", model.dir, *args, "-n", n, "--temp", 0, "--dtype", "float32", "--ids-out", out,
       "--stats-json", stats)
    return json.loads(out.read_text()), json.loads(stats.read_text())


# =============================================================================================================
# tokenize / detokenize vs the tokenizers library

TEXTS = [
    "Shaba kolu, 42 tinesta!",
    "  leading spaces,\ttabs and trailing spaces  ",
    "line one\nline two\n\n\nafter blank lines\r\nwindows line",
    "digits 1234567890 and 3.14159 and 007",
    "unicode: héllo wörld — 日本語のテキスト 🙂👍🏽 Ελληνικά Кириллица",
    "<|im_system|>system<|im_middle|>Be brief.<|im_end|><|im_user|>user<|im_middle|>Hi<|im_end|>"
    "<|im_assistant|>assistant<|im_middle|>",
    "glued<|im_end|>text[EOS]more[BOS]",
    "almost special: <|im_end| and <im_end|> and [EOS",
    "<think>reasoning here</think>the answer",
    "<|tool_calls_section_begin|><|tool_call_begin|>functions.get:0<|tool_call_argument_begin|>{\"a\": 1}"
    "<|tool_call_end|><|tool_calls_section_end|>",
]


@pytest.mark.parametrize("i", range(len(TEXTS)))
def test_tokenize_matches_tokenizers(models, engine, i):
    m = models["instruct"]
    text = TEXTS[i]
    want = m.encode(text)
    got = engine_ids(m, text)
    assert got == want, f"tokenize {text!r}:\n  k2mlx      {got}\n  tokenizers {want}"


def test_tokenize_no_special_encodes_markers_as_text(models, engine, tmp_path):
    """--no-special: special-token strings are ordinary text, i.e. what a tokenizer without the added tokens
    produces (tokenizer.json with its added_tokens removed)."""
    from tokenizers import Tokenizer

    m = models["instruct"]
    spec = json.loads((m.dir / "tokenizer.json").read_text())
    specials = {t["id"] for t in spec["added_tokens"]}
    spec["added_tokens"] = []
    plain = Tokenizer.from_str(json.dumps(spec))
    text = TEXTS[5] + TEXTS[6]
    got = engine_ids(m, text, "--no-special")
    assert not specials & set(got), f"--no-special produced special ids {sorted(specials & set(got))}"
    assert got == plain.encode(text).ids, f"--no-special {text!r}:\n  k2mlx {got}\n  plain {plain.encode(text).ids}"
    assert detokenize(m, got) == text


@pytest.mark.parametrize("i", range(len(TEXTS)))
def test_detokenize_round_trip(models, engine, i):
    m = models["instruct"]
    text = TEXTS[i]
    ids = m.encode(text)
    assert m.tok.decode(ids, skip_special_tokens=False) == text, "fixture: tokenizers itself does not round-trip"
    assert detokenize(m, ids) == text
    assert detokenize(m, ids, "--skip-special") == m.tok.decode(ids, skip_special_tokens=True)


# =============================================================================================================
# generate --prompt --chat vs ids rendered by Python


@pytest.mark.parametrize("kind, system", [("instruct", None), ("instruct", "You answer in riddles."),
                                          ("thinking", None), ("thinking", "Be brief.")])
def test_generate_chat_prompt_equals_rendered_ids(models, engine, tmp_path, kind, system):
    m = models[kind]
    user = "Shaba kolu tinesta, 42 — ça va? 日本"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    ids = m.encode(m.render(messages))
    sys_args = ("--system", system) if system else ()
    via_text, stats = generate_ids(m, tmp_path, "--prompt", user, "--chat", *sys_args)
    via_ids, _ = generate_ids(m, tmp_path, "--ids", kp.ids_arg(ids))
    assert stats["prompt_tokens"] == len(ids), (
        f"{kind}: the engine's chat prompt has {stats['prompt_tokens']} tokens, Python's rendering {len(ids)}:\n"
        f"  {m.render(messages)!r}")
    assert len(via_ids) == CHAT_TOKENS and via_text == via_ids, f"{kind}: --prompt --chat {via_text} vs --ids {via_ids}"


# =============================================================================================================
# chat: three turns over stdin, prefix reuse, and Ctrl-C


def _stat_lines(stderr: str) -> list[tuple[int, int, int, bool]]:
    return [(int(a), int(b), int(c), bool(d)) for a, b, c, d in STAT_RE.findall(stderr)]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


USER_TURNS = ["Shaba kolu tinesta?", "Dimo vake, 42 sulo!", "Kene ripa dosu ma?"]


@pytest.mark.parametrize("kind", list(TEMPLATE_FILES))
def test_chat_three_turns_reuse_prefix_without_changing_answers(models, engine, tmp_path, kind):
    """Three turns through `chat`, then the same conversation replayed without any cache: every turn rendered by
    Python's jinja2 (with the assistant answers as the chat stores them: decoded text), encoded by `tokenizers`
    and run by a fresh `generate --ids`. The chat prints only text, so its whole stdout is compared with the
    replay's answers; the per-turn statistics must show the reuse the replay predicts."""
    m = models[kind]
    proc = run_bytes([kp.engine_bin(), "chat", "--model", m.dir, "-n", CHAT_TOKENS, "--temp", 0, "--dtype", "float32"],
                     input="\n".join(USER_TURNS) + "\n", timeout=TIMEOUT)
    assert proc.returncode == 0, f"chat exited {proc.returncode} at end of input\n{proc.stderr[-2000:]}"
    stats = _stat_lines(proc.stderr)
    assert len(stats) == 3, f"expected 3 statistics lines, found {len(stats)}:\n{proc.stderr[-2000:]}"

    history: list[dict] = []
    expected_stdout = ""
    cached: list[int] = []
    replay = []
    for turn, user in enumerate(USER_TURNS):
        history.append({"role": "user", "content": user})
        prompt = m.encode(m.render(history))
        answer, _ = generate_ids(m, tmp_path, "--ids", kp.ids_arg(prompt))
        assert len(answer) == CHAT_TOKENS, f"turn {turn + 1}: fresh generate stopped early: {answer}"
        # As the chat stores an answer: ids past the tokenizer's vocabulary (the embedding has more rows) dropped.
        known = [t for t in answer if t < m.tok.get_vocab_size(with_added_tokens=True)]
        content = detokenize(m, known) if known else ""
        for marker in ("<think>", "</think>", "<|tool_calls_section_begin|>"):
            assert marker not in content, (f"fixture: turn {turn + 1}'s answer {content!r} contains {marker}; the "
                                           "replay does not parse reasoning / tool calls (pick other user turns)")
        history.append({"role": "assistant", "content": content})
        expected_stdout += "> " + (detokenize(m, known, "--skip-special") if known else "") + "\n"
        keep = min(_common_prefix(cached, prompt), len(prompt) - 1)
        replay.append((len(prompt) - keep, keep, CHAT_TOKENS, False))
        # The session now holds the prompt and all but the last answer token (that one is never fed back).
        cached = (prompt + answer)[: len(prompt) + CHAT_TOKENS - 1]
    expected_stdout += "> \n"
    print(f"{kind}: per-turn (new, reused, generated, interrupted) {stats}; chat stdout {proc.stdout!r}")

    assert proc.stdout == expected_stdout, (
        f"{kind}: chat answers differ from fresh `generate --ids` runs of the full rendered conversation\n"
        f"  chat:   {proc.stdout!r}\n  replay: {expected_stdout!r}\n  stats: chat {stats}, replay {replay}")
    assert stats == replay, f"{kind}: per-turn (new, reused, generated, interrupted): chat {stats}, replay {replay}"
    assert stats[1][1] > 0 and stats[2][1] > 0, f"{kind}: turns 2 and 3 reused nothing: {stats}"


class _Reader(threading.Thread):
    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.buf, self.lock = stream, b"", threading.Lock()

    def run(self):
        while chunk := os.read(self.stream.fileno(), 4096):
            with self.lock:
                self.buf += chunk

    def text(self) -> str:
        with self.lock:
            return self.buf.decode("utf-8", "replace")


def _wait_for(proc, cond, timeout: float, what: str, dump) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            time.sleep(0.2)  # let the readers drain the pipes
            if cond():
                return
            raise AssertionError(f"chat exited ({proc.returncode}) while waiting for {what}\n{dump()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{dump()}")


def test_chat_ctrl_c_stops_answer_then_eof_exits_0(models, engine):
    m = models["instruct"]
    proc = subprocess.Popen([str(kp.engine_bin()), "chat", "--model", str(m.dir), "-n", "2000", "--temp", "0",
                             "--dtype", "float32"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    out, err = _Reader(proc.stdout), _Reader(proc.stderr)
    out.start()
    err.start()
    dump = lambda: f"stdout: {out.text()[-800:]!r}\nstderr: {err.text()[-1500:]}"  # noqa: E731
    try:
        proc.stdin.write(b"Tell me a very long story about kolu.\n")
        proc.stdin.flush()
        # The answer is streaming once 40 characters follow the prompt marker.
        _wait_for(proc, lambda: len(out.text().partition("> ")[2]) >= 40, TIMEOUT, "the answer to stream", dump)
        proc.send_signal(signal.SIGINT)
        _wait_for(proc, lambda: STAT_RE.search(err.text()), TIMEOUT, "the answer's statistics line", dump)
        new, reused, generated, interrupted = _stat_lines(err.text())[0]
        print(f"interrupted answer: {new} new prompt tokens, {generated} tokens generated before Ctrl-C")
        assert interrupted and generated < 2000, f"Ctrl-C did not stop the answer: {_stat_lines(err.text())}"
        _wait_for(proc, lambda: out.text().endswith("\n> "), TIMEOUT, "the next prompt after the interrupted answer", dump)
        assert proc.poll() is None, f"chat exited ({proc.returncode}) on Ctrl-C during an answer\n{dump()}"
        proc.stdin.close()
        rc = proc.wait(timeout=TIMEOUT)
        assert rc == 0, f"chat exited {rc} at end of input after an interrupted answer\n{dump()}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
