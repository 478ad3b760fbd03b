#!/usr/bin/env bash
# The main job on a fresh machine: set everything up (scripts/setup.sh), then generate with k2mlx.
# Without --model it first creates a small random Kimi-K2-shaped checkpoint (HF bf16 layout, then
# converted to 3-bit MLX format by mlx-lm's own converter) under .cache/models/, inspects it, and
# generates from it. Extra arguments are passed to `k2mlx generate`. Afterwards
# `build/apps/k2mlx/k2mlx serve -m .cache/models/tiny-kimi-3bit` serves it to chat clients.
#   scripts/run.sh                                  # small generated model
#   scripts/run.sh --model /path/to/Kimi-K2-Instruct-3bit --ids 163587,... -n 64
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
py="$here/.deps/venv/bin/python"
k2mlx="$here/build/apps/k2mlx/k2mlx"

has_model=0
for a in "$@"; do [[ "$a" == "--model" || "$a" == "-m" || "$a" == --model=* ]] && has_model=1; done

if ((has_model)); then
  exec "$k2mlx" generate "$@"
fi

models="$here/.cache/models"
hf="$models/tiny-kimi-bf16"
mlx3="$models/tiny-kimi-3bit"
# The demo model carries a small chat template (Kimi-K2's turn format) so that `k2mlx serve` and chat
# clients work on it; a folder made before it had one is made again.
template="$here/tools/templates/tiny-kimi-chat.jinja"
has_template() { [ -f "$1/chat_template.jinja" ] || grep -q '"chat_template"' "$1/tokenizer_config.json" 2>/dev/null; }
if [ ! -f "$mlx3/config.json" ] || ! has_template "$mlx3"; then
  echo "[run] creating a small random Kimi-K2-shaped checkpoint in $hf"
  "$py" "$here/tools/make_tiny_model.py" --structure kimi --out "$hf" --chat-template "$template"
  echo "[run] converting it to 3-bit MLX format with mlx-lm's converter: $mlx3"
  "$py" "$here/tools/convert_variants.py" --src "$hf" --out-root "$models" --only q3 >/dev/null
  rm -rf "$mlx3" && mv "$models/q3" "$mlx3"
fi
echo "[run] k2mlx inspect --model $mlx3 --context 40000"
"$k2mlx" inspect --model "$mlx3" --context 40000
echo
# The weights are random, so the text is gibberish; the run shows the whole path (tokenizer, prefill,
# decode, streaming text, statistics).
prompt="Explain mixture-of-experts models in one paragraph."
echo "[run] k2mlx generate --model $mlx3 --prompt \"$prompt\" --max-tokens 32 $*"
"$k2mlx" generate --model "$mlx3" --prompt "$prompt" --max-tokens 32 "$@"
