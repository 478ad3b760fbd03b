#!/usr/bin/env bash
# Fetches Kimi-K2's real tiktoken.model (163,584 ranks) from the crates.io data crate
# splintr-vocab-kimi into the git-ignored .deps/text/ folder, for the tokenizer comparison tests.
# The vocabulary is never committed. Idempotent; prints the path of the vocabulary file.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
crate=splintr-vocab-kimi
version=1.0.0
sha256=b6c497a7469b33ced9c38afb1ad6e47f03f5e5dc05f15930799210ec050c5103
dest="$here/.deps/text/kimi.tiktoken"

if [ -f "$dest" ] && echo "$sha256  $dest" | sha256sum -c --status; then
  echo "$dest"
  exit 0
fi
command -v cargo >/dev/null || { echo "fetch_kimi_vocab: cargo is required" >&2; exit 1; }
work="$here/.deps/text/cargo-fetch"
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "k2mlx-vocab-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$crate = "=$version"
TOML
echo "fn main() {}" > "$work/src/main.rs"
(cd "$work" && cargo fetch -q >&2)
src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version" | head -1)"
cp "$src/vocabs/kimi.tiktoken" "$dest.tmp"
echo "$sha256  $dest.tmp" | sha256sum -c --status || { echo "fetch_kimi_vocab: checksum mismatch" >&2; exit 1; }
mv "$dest.tmp" "$dest"
echo "$dest"
