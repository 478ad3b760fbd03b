"""Fixtures for the text-layer comparison tests: the C++ probe, the real Kimi vocabulary, the corpus,
and the Python references (tiktoken, tokenizers, jinja2 configured as transformers does)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools" / "text"))

import make_corpus  # noqa: E402
import references  # noqa: E402


def _find_probe():
    env = os.environ.get("K2_TEXT_PROBE")
    candidates = [pathlib.Path(env)] if env else []
    for build in ["build", "build-text", *sorted(p.name for p in ROOT.glob("build*"))]:
        candidates.append(ROOT / build / "src" / "text" / "k2_text_probe")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise RuntimeError("k2_text_probe not found: build the project (cmake --build build) or set K2_TEXT_PROBE")


class Probe:
    def __init__(self, path):
        self.path = str(path)

    def run(self, args, data: bytes) -> bytes:
        res = subprocess.run([self.path, *args], input=data, capture_output=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"k2_text_probe {' '.join(args)} failed ({res.returncode}): {res.stderr.decode()}")
        return res.stdout

    @staticmethod
    def records(docs):
        return b"".join(b"%d\n%s\n" % (len(d), d) for d in docs)

    @staticmethod
    def parse_records(out: bytes):
        res, pos = [], 0
        while pos < len(out):
            nl = out.index(b"\n", pos)
            n = int(out[pos:nl])
            res.append(out[nl + 1:nl + 1 + n])
            pos = nl + 2 + n
        return res

    def encode(self, args, docs):
        lines = self.run(["encode", *args], self.records(docs)).decode().split("\n")
        return [[int(x) for x in line.split()] for line in lines[:len(docs)]]


@pytest.fixture(scope="session")
def probe():
    return Probe(_find_probe())


@pytest.fixture(scope="session")
def kimi_vocab():
    res = subprocess.run([str(ROOT / "tools" / "text" / "fetch_kimi_vocab.sh")], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError("could not fetch the Kimi vocabulary: " + res.stderr)
    return pathlib.Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def kimi_model_dir(kimi_vocab, tmp_path_factory):
    """A Kimi-K2 tokenizer folder: the real tiktoken.model plus tokenizer_config.json."""
    d = tmp_path_factory.mktemp("kimi-k2")
    (d / "tiktoken.model").symlink_to(kimi_vocab)
    (d / "tokenizer_config.json").write_text(json.dumps(references.kimi_tokenizer_config(), ensure_ascii=False))
    return d


@pytest.fixture(scope="session")
def kimi_encoding(kimi_vocab):
    return references.kimi_encoding(kimi_vocab)


@pytest.fixture(scope="session")
def corpus():
    docs, stats = make_corpus.documents()
    return docs, stats
