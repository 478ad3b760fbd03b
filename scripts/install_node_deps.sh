#!/usr/bin/env bash
# Installs the pinned npm packages the server tests drive (the official `openai` SDK and
# playwright-core for the chat page in Debian's Chromium) into the git-ignored .deps/node.
# Idempotent: does nothing when the pinned versions are already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$here/.deps/node"
OPENAI_NPM_VERSION=7.55.0
PLAYWRIGHT_CORE_VERSION=1.64.1

have() {  # have NAME VERSION
  local pj="$prefix/node_modules/$1/package.json"
  [ -f "$pj" ] && node -e "process.exit(require('$pj').version === '$2' ? 0 : 1)"
}

if have openai "$OPENAI_NPM_VERSION" && have playwright-core "$PLAYWRIGHT_CORE_VERSION"; then
  exit 0
fi
command -v npm >/dev/null || { echo "install_node_deps: npm is not installed" >&2; exit 1; }
mkdir -p "$prefix"
[ -f "$prefix/package.json" ] || echo '{"private": true}' > "$prefix/package.json"
echo "[setup] installing npm packages into $prefix: openai@$OPENAI_NPM_VERSION playwright-core@$PLAYWRIGHT_CORE_VERSION"
# playwright-core never downloads browsers by itself; the tests use /usr/bin/chromium.
npm install --prefix "$prefix" --no-audit --no-fund --silent --save-exact \
  "openai@$OPENAI_NPM_VERSION" "playwright-core@$PLAYWRIGHT_CORE_VERSION"
