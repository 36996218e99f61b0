import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests import reference and helpers directly

try:  # hypothesis drives the property tests (tests/test_properties*.py)
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover - the property tests then skip themselves
    settings = None

if settings is not None:
    _slow_ok = [HealthCheck.too_slow, HealthCheck.data_too_large]
    # CI: 100 examples per property, the same ones on every run (derandomize: seeded from each
    # test's name, no example database), no per-example deadline (the machine is shared).
    settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None,
                              suppress_health_check=_slow_ok, print_blob=True)
    # On demand: 2,000 fresh random examples per property, e.g.
    #   CNNKIT_HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties*.py
    # or  python -m pytest --hypothesis-profile=thorough tests/test_properties*.py
    settings.register_profile("thorough", max_examples=2000, deadline=None, derandomize=False,
                              suppress_health_check=_slow_ok, print_blob=True)
    # A quick look while editing the properties themselves.
    settings.register_profile("dev", max_examples=10, deadline=None, derandomize=True, database=None,
                              suppress_health_check=_slow_ok, print_blob=True)
    settings.load_profile(os.environ.get("CNNKIT_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: reproducible, different per test."""
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
