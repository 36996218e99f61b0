"""CNNKIT_SIMD picks the tier once per process: for every supported tier, a fresh interpreter
with CNNKIT_SIMD=<tier> must report that tier and compute linear and conv2d correctly with it;
an unknown or unsupported request falls back to the best tier and simd_tier_note() says so."""
import json
import subprocess
import sys

import pytest

from cnnkit import _core
from helpers import child_env


# Runs in the child: reports the tier and the worst scaled errors of linear and conv2d against
# the float64 references (exact-integer inputs must match bit for bit).
CHILD = r"""
import json
import numpy as np
import cnnkit
from cnnkit import _core, functional as F
import reference as ref

rng = np.random.default_rng(7)
def worst(got, want, scale):
    return float(np.max(np.abs(np.asarray(got, np.float64) - want) / (scale + 1e-30)))

x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((37, 70), (19, 70), (19,)))
lin = worst(F.linear(x, w, b), ref.linear(x, w, b), np.abs(x) @ np.abs(w).T + np.abs(b))
for n in (1, 3):  # a few rows: dot products instead of the GEMM (kernels/gemv.hpp)
    lin = max(lin, worst(F.linear(x[:n], w, b), ref.linear(x[:n], w, b), np.abs(x[:n]) @ np.abs(w).T + np.abs(b)))
xi = rng.integers(-4, 5, (9, 33)).astype(np.float32)
wi = rng.integers(-4, 5, (17, 33)).astype(np.float32)
lin_exact = bool(np.array_equal(F.linear(xi, wi), ref.linear(xi, wi))
                 and np.array_equal(F.linear(xi[:2], wi), ref.linear(xi[:2], wi)))

x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
b = rng.standard_normal(5).astype(np.float32)
got = F.conv2d(x, w, b, stride=1, padding=1)
scale = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), pads=(1, 1, 1, 1))
conv = worst(got, ref.conv2d(x, w, b, pads=(1, 1, 1, 1)), scale)

print(json.dumps({"tier": _core.simd_tier(), "note": _core.simd_tier_note(),
                  "linear": lin, "linear_exact": lin_exact, "conv2d": conv}))
"""


def run_child(simd):
    out = subprocess.run([sys.executable, "-c", CHILD], env=child_env(CNNKIT_SIMD=simd), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("tier", _core.simd_tiers_supported())
def test_tier_override_runs_that_tier(tier):
    r = run_child(tier)
    assert r["tier"] == tier and r["note"] == ""
    assert r["linear"] <= 1e-5, f"linear on {tier}: scaled error {r['linear']}"
    assert r["linear_exact"], f"linear on {tier}: integer inputs not exact"
    assert r["conv2d"] <= 1e-5, f"conv2d on {tier}: scaled error {r['conv2d']}"


def test_unknown_tier_falls_back_with_a_note():
    r = run_child("sse9000")
    best = [t for t in ("avx512", "avx2", "portable") if t in _core.simd_tiers_supported()][0]
    assert r["tier"] == best
    assert "sse9000" in r["note"] and "ignored" in r["note"]
    assert r["linear"] <= 1e-5 and r["conv2d"] <= 1e-5
