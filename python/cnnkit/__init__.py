"""cnnkit: fast convolutional neural networks on the CPU.

A C++17 core (OpenMP threads, SIMD kernels) does the arithmetic on float32 NCHW minibatches;
``cnnkit.functional`` exposes every op and its backward pass on NumPy arrays, ``cnnkit.layers``
and ``cnnkit.Sequential`` the Keras-style model lifecycle over PyTorch-style layers.
"""
from . import _core
from . import functional
from . import layers
from . import optim, losses, metrics, callbacks
from . import datasets
from . import models
from ._random import set_random_seed
from .model import Sequential
from .saving import CheckpointError, load_model

__version__ = _core.__version__

get_num_threads = _core.get_num_threads


def set_num_threads(n):
    """Set how many threads cnnkit's parallel regions use (n >= 1); applies to later calls."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if n >= 2**31:  # the core takes a C int (and reports n < 1 itself)
        raise ValueError(f"set_num_threads: n must be < 2**31, got {n}")
    _core.set_num_threads(n)


def show_config(file=None):
    """Print cnnkit's version, OpenMP support, thread count and the SIMD tier in use."""
    lines = [
        f"cnnkit {__version__}",
        f"  OpenMP:      {'on' if _core.openmp_enabled() else 'off (serial build)'}",
        f"  threads:     {_core.get_num_threads()}",
        f"  SIMD tier:   {_core.simd_tier()} (supported: {', '.join(_core.simd_tiers_supported())})",
    ]
    note = _core.simd_tier_note()
    if note:
        lines.append(f"  note:        {note}")
    print("\n".join(lines), file=file)


__all__ = ["Sequential", "CheckpointError", "load_model", "functional", "layers", "optim", "losses", "metrics",
           "callbacks", "datasets", "models", "get_num_threads", "set_num_threads", "set_random_seed", "show_config",
           "__version__"]
