"""Build and run the C unit test of the stats and gate units (tests/c/test_stats.c).

It is compiled with the system C compiler into a temporary folder, without
Python or CUDA, exactly as a later C caller would use csrc/stats.c and
csrc/gate.c: once as is, once forcing rng.h's portable 128-bit product (the
path of compilers without __int128, which must give the same intervals), and
once under AddressSanitizer/UBSan where the toolchain has them.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "tests" / "c" / "test_stats.c", ROOT / "csrc" / "stats.c", ROOT / "csrc" / "gate.c"]
SANITIZERS = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


def _compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.parametrize("flags", [["-O2"], ["-O2", "-DAB_RNG_PORTABLE_MUL"], SANITIZERS],
                         ids=["int128", "portable-mul", "sanitizers"])
def test_c_unit_test_passes(tmp_path, flags):
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    exe = tmp_path / "test_stats"
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", *flags, f"-I{ROOT / 'csrc'}", *map(str, SOURCES), "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0 and flags is SANITIZERS:
        pytest.skip(f"this toolchain cannot build with sanitizers: {build.stderr.strip()[-300:]}")
    assert build.returncode == 0, f"{' '.join(cmd)}\n{build.stdout}{build.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    if run.returncode != 0 and "LeakSanitizer has encountered a fatal error" in run.stderr:
        pytest.skip("LeakSanitizer cannot run here (ptrace or container limits)")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout
