"""The packed GEMM, every supported SIMD tier, through _core.gemm: against a float64 NumPy
product and against tier ``ref``, on sizes chosen around the tiers' tiles (MR 6, NR 8 or 16)
and K slices (KC 256) so that every tail path runs; integer-valued inputs must match bit for
bit; beta == 0 must never read C; results must not depend on the thread count. The epilogue
(bias) is exercised through cnnkit.functional.linear."""
import numpy as np
import pytest

import cnnkit
import reference as ref
from cnnkit import _core
from helpers import assert_exact, assert_scaled_close, exact_ints, randn

TIERS = _core.simd_tiers_supported()
FAST_TIERS = [t for t in TIERS if t != "ref"]

# (M, N, K): around the tiles MR x NR = 6 x 8 (portable), 6 x 16 (avx2), 8 x 32 (avx512)
# (1, 5, 7, 9, 15, 17, 31, 33 ...), KC = 256 / 384 / 512 (255, 257, 385, 513, 769, 1100 -> two
# and three K slices), MC = 144, and a few odd sizes up to ~70.
SIZES = [
    (1, 1, 1), (1, 17, 3), (5, 1, 7), (6, 16, 8), (7, 17, 9), (5, 15, 33), (11, 13, 1),
    (12, 32, 64), (13, 31, 65), (18, 48, 2), (23, 47, 70), (37, 9, 255), (19, 33, 257),
    (31, 63, 129), (47, 70, 43), (64, 64, 64), (65, 67, 66), (70, 5, 513), (3, 70, 300),
    (145, 17, 20), (143, 35, 31), (9, 20, 385), (4, 9, 769),
    (3, 33, 1100),
]
TRANS = [(False, False), (True, False), (False, True), (True, True)]


def operands(rng, M, N, K, trans_a, trans_b, make=randn):
    """a, b as stored (transposed when asked) and their float64 logical product factors."""
    a = make(rng, K, M) if trans_a else make(rng, M, K)
    b = make(rng, N, K) if trans_b else make(rng, K, N)
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    return a, b, a64, b64


def size_id(s):
    return "x".join(map(str, s))


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_gemm_matches_float64(tier, size, rng):
    M, N, K = size
    for trans_a, trans_b in TRANS:
        a, b, a64, b64 = operands(rng, M, N, K, trans_a, trans_b)
        c = randn(rng, M, N)
        alpha, beta = 1.5, -0.5
        got = _core.gemm(a, b, trans_a, trans_b, alpha, beta, c, tier)
        want = alpha * (a64 @ b64) + beta * c.astype(np.float64)
        scale = abs(alpha) * (np.abs(a64) @ np.abs(b64)) + abs(beta) * np.abs(c)
        assert_scaled_close(got, want, scale, what=f"{tier} trans={trans_a},{trans_b}")


@pytest.mark.parametrize("tier", FAST_TIERS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_gemm_matches_ref_tier(tier, size, rng):
    M, N, K = size
    for trans_a, trans_b in TRANS:
        a, b, a64, b64 = operands(rng, M, N, K, trans_a, trans_b)
        got = _core.gemm(a, b, trans_a, trans_b, tier=tier)
        want = _core.gemm(a, b, trans_a, trans_b, tier="ref")
        scale = np.abs(a64) @ np.abs(b64)
        assert_scaled_close(got, want, scale, what=f"{tier} vs ref trans={trans_a},{trans_b}")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_gemm_integer_values_exact(tier, size, rng):
    """Integer values in [-4, 4]: every partial sum is exact in float32, so any summation
    order must give the float64 product bit for bit (and alpha 2, beta -1 keep it exact)."""
    M, N, K = size
    for trans_a, trans_b in TRANS:
        a, b, a64, b64 = operands(rng, M, N, K, trans_a, trans_b, make=exact_ints)
        c = exact_ints(rng, M, N)
        got = _core.gemm(a, b, trans_a, trans_b, 2.0, -1.0, c, tier)
        assert_exact(got, 2.0 * (a64 @ b64) - c, what=f"{tier} trans={trans_a},{trans_b}")
        assert_exact(got, _core.gemm(a, b, trans_a, trans_b, 2.0, -1.0, c, "ref"),
                     what=f"{tier} vs ref")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("size", [(7, 17, 9), (19, 33, 257), (145, 17, 20)], ids=size_id)
def test_gemm_beta_zero_never_reads_c(tier, size, rng):
    M, N, K = size
    a, b = randn(rng, M, K), randn(rng, K, N)
    c = np.full((M, N), np.nan, dtype=np.float32)
    got = _core.gemm(a, b, alpha=1.0, beta=0.0, c=c, tier=tier)
    assert not np.isnan(got).any(), f"{tier}: NaN from C leaked into the result with beta=0"
    assert_exact(got, _core.gemm(a, b, tier=tier), what=f"{tier} NaN C vs no C")
    assert_scaled_close(got, a.astype(np.float64) @ b, np.abs(a) @ np.abs(b), what=tier)


@pytest.mark.parametrize("tier", TIERS)
def test_gemm_nan_in_operands_propagates(tier):
    a = np.ones((7, 5), np.float32)
    b = np.ones((5, 18), np.float32)
    a[3, 2] = np.nan
    got = _core.gemm(a, b, tier=tier)
    assert np.isnan(got[3]).all() and not np.isnan(np.delete(got, 3, axis=0)).any()


@pytest.mark.parametrize("tier", TIERS)
def test_gemm_k_zero(tier, rng):
    a, b = np.zeros((5, 0), np.float32), np.zeros((0, 19), np.float32)
    c = randn(rng, 5, 19)
    assert_exact(_core.gemm(a, b, beta=0.5, c=c, tier=tier), 0.5 * c.astype(np.float64))
    assert_exact(_core.gemm(a, b, tier=tier), np.zeros((5, 19)))
    nan_c = np.full((5, 19), np.nan, np.float32)
    assert_exact(_core.gemm(a, b, beta=0.0, c=nan_c, tier=tier), np.zeros((5, 19)))


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("M, N, K", [(0, 5, 3), (4, 0, 3), (0, 0, 0)])
def test_gemm_empty(tier, M, N, K):
    got = _core.gemm(np.zeros((M, K), np.float32), np.zeros((K, N), np.float32), tier=tier)
    assert got.shape == (M, N)


@pytest.fixture
def threads():
    before = cnnkit.get_num_threads()
    yield cnnkit.set_num_threads
    cnnkit.set_num_threads(before)


@pytest.mark.parametrize("tier", FAST_TIERS)
@pytest.mark.parametrize("size", [(301, 90, 100), (40, 501, 150), (97, 97, 600)], ids=size_id)
def test_gemm_same_bits_for_any_thread_count(tier, size, rng, threads):
    """Large enough for a parallel region (split along M, along N, and with K slices): each
    element must be computed with the same arithmetic whichever thread owns it."""
    M, N, K = size
    a, b, c = randn(rng, M, K), randn(rng, K, N), randn(rng, M, N)
    results = []
    for n in (1, 2, 3):
        threads(n)
        results.append(_core.gemm(a, b, alpha=0.75, beta=0.25, c=c, tier=tier))
    for r in results[1:]:
        assert_exact(r, results[0], what=f"{tier} threads")


# --- the epilogue, through linear: y = x · W^T + b uses the GEMM's col_bias ------------------

@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 13, 17), (64, 400, 120), (33, 70, 9),
                                   (130, 20, 300)])
def test_linear_bias_epilogue(shape, rng):
    N, IN, OUT = shape
    x, w, b = randn(rng, N, IN), randn(rng, OUT, IN), randn(rng, OUT)
    got = cnnkit.functional.linear(x, w, b)
    scale = np.abs(x) @ np.abs(w).T + np.abs(b)
    assert_scaled_close(got, ref.linear(x, w, b), scale, what="linear with bias")
    xi, wi, bi = exact_ints(rng, N, IN), exact_ints(rng, OUT, IN), exact_ints(rng, OUT)
    assert_exact(cnnkit.functional.linear(xi, wi, bi), ref.linear(xi, wi, bi), what="exact")


def test_linear_same_bits_for_any_thread_count(rng, threads):
    x, w, b = randn(rng, 200, 300), randn(rng, 70, 300), randn(rng, 70)
    threads(1)
    one = cnnkit.functional.linear(x, w, b)
    threads(2)
    assert_exact(cnnkit.functional.linear(x, w, b), one)
