# The project's own house rules (issue 13, items 10 and 11): scripts/setup.sh installs every outside tool the
# tests and check scripts run and nothing they do not use, and every CMake option can be set to its
# non-default value and still configure. Both broke before without any code test noticing: the tests failed on
# a fresh machine for reasons that were not about code (Node.js, cargo missing), and an "optional" part could
# not be switched off.
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup.sh"

# Outside commands the tests, check scripts and tools run, and the Debian package that provides each.
COMMANDS = {
    "node": "nodejs", "npm": "npm", "cargo": "cargo", "mpirun": "openmpi-bin", "clang++": "clang",
    "qemu-aarch64": "qemu-user", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu", "chromium": "chromium",
    "curl": "curl", "strace": "strace", "cmake": "cmake", "ninja": "ninja-build",
}
# Every package setup.sh installs, with a file that shows what uses it (a build file or a test).
USED_BY = {
    "build-essential": "CMakeLists.txt", "cmake": "CMakeLists.txt", "ninja-build": "scripts/setup.sh",
    "pkg-config": "src/text/CMakeLists.txt", "nlohmann-json3-dev": "CMakeLists.txt", "libcli11-dev": "CMakeLists.txt",
    "libfmt-dev": "CMakeLists.txt", "libgtest-dev": "tests/CMakeLists.txt", "libpcre2-dev": "src/text/CMakeLists.txt",
    "libcpp-httplib-dev": "src/server/CMakeLists.txt", "libopenblas-serial-dev": "src/CMakeLists.txt",
    "chromium": "tests/python/server/chat_page_check.cjs", "curl": "tests/python/server/test_http_protocol.py",
    "strace": "tests/python/test_formats_extra.py", "clang": "scripts/check_clang.sh",
    "libc++-dev": "scripts/check_clang.sh", "libc++abi-dev": "scripts/check_clang.sh",
    "libclang-rt-14-dev": "CMakeLists.txt", "g++-aarch64-linux-gnu": "scripts/check_neon.sh",
    "qemu-user": "scripts/check_neon.sh", "openmpi-bin": "tests/python/pipeline/test_mpi.py",
    "libopenmpi-dev": "tests/python/pipeline/test_mpi.py", "nodejs": "tests/python/server/test_node_and_browser.py",
    "npm": "scripts/install_node_deps.sh", "cargo": "tools/text/fetch_kimi_vocab.sh",
}
# The word in the user's file that shows the use (a package name rarely appears in the file that needs it).
EVIDENCE = {
    "build-essential": "project(", "cmake": "cmake_minimum_required", "ninja-build": "Ninja", "pkg-config": "pkg_check_modules",
    "nlohmann-json3-dev": "nlohmann_json", "libcli11-dev": "CLI11", "libfmt-dev": "fmt", "libgtest-dev": "GTest",
    "libpcre2-dev": "pcre2", "libcpp-httplib-dev": "httplib", "libopenblas-serial-dev": "openblas",
    "chromium": "chromium", "curl": "curl", "strace": "strace", "clang": "clang++", "libc++-dev": "libc++",
    "libc++abi-dev": "libc++", "libclang-rt-14-dev": "fsanitize", "g++-aarch64-linux-gnu": "aarch64-linux-gnu-g++",
    "qemu-user": "qemu-aarch64", "openmpi-bin": "mpirun", "libopenmpi-dev": "libmpi.so", "nodejs": "node",
    "npm": "npm", "cargo": "cargo",
}


def setup_packages() -> set[str]:
    """The Debian packages scripts/setup.sh may install: its `pkgs=(...)` list and the `pkgs+=(...)` additions."""
    text = SETUP.read_text()
    listed = re.search(r"local pkgs=\(([^)]*)\)", text, re.S)
    assert listed, "scripts/setup.sh has no `local pkgs=(...)` list"
    names = set(listed.group(1).split())
    names |= set(re.findall(r"pkgs\+=\((\S+)\)", text))
    return names


def test_setup_installs_every_outside_command_the_tests_run():
    pkgs = setup_packages()
    missing = {cmd: pkg for cmd, pkg in COMMANDS.items() if pkg not in pkgs}
    assert not missing, f"scripts/setup.sh does not install the packages of these commands: {missing}"


def test_setup_installs_nothing_unused():
    pkgs = setup_packages()
    unexplained = sorted(p for p in pkgs if p not in USED_BY)
    assert not unexplained, f"scripts/setup.sh installs packages no file is known to use: {unexplained}"
    for pkg in sorted(pkgs):
        user = ROOT / USED_BY[pkg]
        assert user.exists(), f"{pkg}: {USED_BY[pkg]} is gone"
        assert EVIDENCE[pkg] in user.read_text(), f"{pkg}: {USED_BY[pkg]} no longer uses it ({EVIDENCE[pkg]!r})"


def test_the_tests_do_not_claim_ctest_runs_pytest():
    for cmake in [ROOT / "CMakeLists.txt", *ROOT.glob("*/CMakeLists.txt"), *ROOT.glob("*/*/CMakeLists.txt")]:
        for line in cmake.read_text().splitlines():
            if line.lstrip().startswith("#") and "pytest" in line and "ctest" in line:
                assert "not" in line, f"{cmake.relative_to(ROOT)}: {line.strip()}"


def cmake_options() -> dict[str, str]:
    """option(NAME "doc" DEFAULT) of every CMakeLists.txt of ours."""
    found = {}
    for cmake in [ROOT / "CMakeLists.txt", *(ROOT / "src").rglob("CMakeLists.txt"), *(ROOT / "apps").rglob("CMakeLists.txt"),
                  *(ROOT / "tests").rglob("CMakeLists.txt")]:
        for name, default in re.findall(r'option\((\w+)\s+"[^"]*"\s+(ON|OFF)\)', cmake.read_text()):
            found[name] = default
    return found


def test_no_cmake_part_is_hidden_behind_a_file_check():
    # `if(EXISTS ...)` around our own sources made parts look optional that the link needs.
    for cmake in [ROOT / "CMakeLists.txt", *(ROOT / "src").rglob("CMakeLists.txt"), *(ROOT / "apps").rglob("CMakeLists.txt")]:
        assert "if(EXISTS" not in cmake.read_text().replace(" ", ""), f"{cmake.relative_to(ROOT)} guards a part by a file check"


@pytest.mark.skipif(not shutil.which("cmake") or not shutil.which("ninja"), reason="cmake/ninja not installed")
def test_every_cmake_option_can_be_switched(tmp_path):
    opts = cmake_options()
    assert {"K2MLX_BUILD_TESTS", "K2MLX_WITH_OPENBLAS", "K2MLX_FUZZ"} <= set(opts), opts
    import mlx

    mlx_root = list(mlx.__path__)[0]
    flipped = [f"-D{n}={'OFF' if d == 'ON' else 'ON'}" for n, d in opts.items() if n != "K2MLX_FUZZ"]
    # K2MLX_FUZZ needs clang; scripts/check_fuzz.sh builds it in CI. Here the others flip together, and the build
    # graph of k2mlx must still be complete (a dry run resolves every target and source).
    build = tmp_path / "b"
    p = subprocess.run(["cmake", "-S", ROOT, "-B", build, "-G", "Ninja", f"-DMLX_ROOT={mlx_root}", *flipped],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    p = subprocess.run(["ninja", "-C", build, "-n", "k2mlx"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert not (build / "tests").exists() or "k2_unit_tests" not in p.stdout
