"""bench/compare_torch.py still runs: one tiny case, --quick, in a child process (skipped
without PyTorch). A smoke test against rot, not a measurement."""
import os
import subprocess
import sys

import pytest

from helpers import child_env

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "compare_torch.py")


def test_compare_torch_quick_markdown():
    pytest.importorskip("torch")
    # --peak skips running bench_gemm for the peak, so the test needs no C++ bench build.
    r = subprocess.run([sys.executable, SCRIPT, "--quick", "--markdown", "--threads", "1",
                        "--filter", "softmax_xent", "--peak", "100"],
                       env=child_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| softmax_xent")]
    assert len(rows) == 1, r.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:3] == ["1", "ms"]
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and float(cells[5]) > 0
