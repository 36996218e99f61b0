"""A build made here must run on any x86-64: AVX2 code lives only in the *_avx2 kernel files,
is reached only when the CPU has AVX2+FMA, and the package falls back to the portable tier
elsewhere. Checked statically (disassembly) and by running under qemu with a CPU that has
AVX but not AVX2 (Sandy Bridge)."""
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest

import cnnkit
from helpers import child_env

x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")


@x86
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump not installed")
def test_vex_instructions_only_in_isa_named_functions():
    """VEX/EVEX-encoded instructions (mnemonics starting with 'v': vfmadd, vmovups, ...) may
    appear only in functions whose name carries their ISA (__avx2). Anything else compiled
    with -mavx2 -- an inline function or template instantiated in an ISA file and merged by
    the linker -- would crash a CPU without AVX2."""
    so = cnnkit._core.__file__
    out = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", so], capture_output=True,
                         text=True, check=True).stdout
    offenders, func = set(), None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            func = m.group(1)
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+(\S+)", line)
        if m and func and m.group(1).startswith("v") and "avx2" not in func and "avx512" not in func:
            offenders.add(func)
    assert not offenders, f"VEX instructions outside ISA-named functions: {sorted(offenders)[:10]}"


SCRIPT = r"""
import numpy as np, cnnkit, cnnkit.functional as F
assert cnnkit._core.simd_tier() == "portable", cnnkit._core.simd_tier()
assert "avx2" not in cnnkit._core.simd_tiers_supported()
rng = np.random.default_rng(0)
x = rng.integers(-3, 4, size=(2, 3, 9, 9)).astype(np.float32)
w = rng.integers(-3, 4, size=(4, 3, 3, 3)).astype(np.float32)
y = F.conv2d(x, w, padding=1)
xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
ref = np.zeros_like(y)
for i in range(9):
    for j in range(9):
        ref[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + 3, j:j + 3], w)
assert np.array_equal(y, ref)
a, b = rng.standard_normal((37, 29)).astype(np.float32), rng.standard_normal((41, 29)).astype(np.float32)
assert np.allclose(F.linear(a, b), a @ b.T, rtol=1e-4, atol=1e-4)
print("portable ok")
"""


@x86
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user not installed")
def test_runs_on_a_cpu_without_avx2_under_qemu():
    env = child_env()
    env.pop("CNNKIT_SIMD", None)
    env.pop("OPENBLAS_CORETYPE", None)  # a forced Haswell OpenBLAS kernel would itself need AVX2
    r = subprocess.run(["qemu-x86_64", "-cpu", "SandyBridge", os.path.realpath(sys.executable), "-c", SCRIPT],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0 and "portable ok" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
