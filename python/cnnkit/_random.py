"""cnnkit's random state. Weight initialisation, dropout masks and fit's shuffling all draw
from one NumPy generator, so ``set_random_seed(s)`` before building and training a model makes
the run reproducible: bit-identical for the same SIMD tier at any thread count (no kernel
splits a sum by thread; tests/test_determinism.py), within rounding across tiers."""
import operator

import numpy as np

_generator = np.random.default_rng()


def set_random_seed(seed):
    """Reseed cnnkit's generator (a non-negative int)."""
    global _generator
    if isinstance(seed, bool):
        raise TypeError("set_random_seed: seed must be an int, got bool")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise TypeError(f"set_random_seed: seed must be an int, got {type(seed).__name__}") from None
    if seed < 0:
        raise ValueError(f"set_random_seed: seed must be >= 0, got {seed}")
    _generator = np.random.default_rng(seed)


def generator():
    """The generator in use (replaced, not mutated, by set_random_seed)."""
    return _generator
