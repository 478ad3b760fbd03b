#!/usr/bin/env bash
# Installs everything k2mlx needs on a fresh machine and builds it.
# Linux: Debian packages for the C++ libraries, a git-ignored Python venv (.deps/venv) holding the
# pinned mlx[cpu] wheel (which also provides the C++ headers, libmlx and MLX's CMake package) and
# mlx-lm (the reference implementation the tests compare against). macOS: see README.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

MLX_VERSION=0.32.4
MLX_LM_VERSION=0.32.2
venv="$here/.deps/venv"

log() { printf '[setup] %s\n' "$*"; }

install_system_packages() {
  # Libraries the build links (serial OpenBLAS: MLX's float32 matmuls bind to it, src/CMakeLists.txt), then what the tests drive: chromium (chat page), curl, strace (shard-read
  # trace), clang + libc++ (scripts/check_clang.sh), clang's libFuzzer and sanitizer runtimes
  # (scripts/check_fuzz.sh), an arm64 cross compiler and qemu (scripts/check_neon.sh:
  # the NEON kernel against the scalar one), Open MPI with its unversioned libmpi.so, which only the -dev
  # package provides and MLX's MPI backend loads (tests/python/pipeline/test_mpi.py).
  local pkgs=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev
              libfmt-dev libgtest-dev libpcre2-dev libcpp-httplib-dev libopenblas-serial-dev
              chromium curl strace clang libc++-dev libc++abi-dev libclang-rt-14-dev g++-aarch64-linux-gnu
              qemu-user openmpi-bin libopenmpi-dev)
  # Node.js/npm (the openai npm SDK and the chat page test) and cargo (tools/text/fetch_kimi_vocab.sh) are
  # often installed another way (NodeSource, rustup): take Debian's only when the command is missing, since
  # Debian's npm conflicts with NodeSource's nodejs package.
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  command -v cargo >/dev/null || pkgs+=(cargo)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_python_env() {
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv"
    python3 -m venv "$venv"
  fi
  local want="mlx==$MLX_VERSION mlx-lm==$MLX_LM_VERSION"
  if ! "$venv/bin/python" -c "import mlx.core, mlx_lm, numpy, pytest, tiktoken, jinja2, tokenizers, openai" >/dev/null 2>&1; then
    log "installing mlx[cpu]==$MLX_VERSION, mlx-lm==$MLX_LM_VERSION and test tools"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r "$here/scripts/requirements.txt"
  fi
}

build() {
  local mlx_root
  mlx_root="$("$venv/bin/python" -c 'import mlx, os; print(os.path.join(list(mlx.__path__)[0]))')"
  log "configuring with MLX at $mlx_root"
  cmake -S "$here" -B "$here/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMLX_ROOT="$mlx_root" >/dev/null
  log "building"
  cmake --build "$here/build" -j "$(nproc)"
}

case "$(uname -s)" in
  Linux) install_system_packages ;;
  Darwin) log "macOS: expecting Homebrew packages (see README); not installing system packages" ;;
esac
install_python_env
build
log "done"
