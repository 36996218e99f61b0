"""Bad input across the public API, every call in its own process (cnnkit issue 6).

The corpus (tests/bad_input_corpus.py) lists >= 300 malformed or unusual calls, each with its
documented outcome: an exception type and a regex its message must match, or a check of the
result (valid but unusual inputs: non-contiguous, read-only, empty batches, NaN/Inf).

One server process (``python tests/test_bad_input.py --serve OUT``) imports cnnkit once and
forks a child per entry. It is a fresh process that has never run an OpenMP parallel region
(it checks it has one thread): a child forked from a process whose libgomp thread pool exists
deadlocks in its first parallel region -- measured here, 20 of 20 children forked after one
conv2d in the parent hung, 0 of 20 forked from a fresh process -- and pytest's own process
has usually run many by the time this file runs.
Each child caps its address space (RLIMIT_AS, 4 GiB above what it maps at the fork) so an
input that would make cnnkit allocate gigabytes fails fast with MemoryError instead of
exhausting the machine -- and an entry documented to raise ValueError "before allocating"
fails if cnnkit allocates first. The child judges its entry, writes the verdict to a pipe and
leaves with os._exit; the server kills a child that runs past its timeout (a hang) and
reports a signal death as a crash. Two children run at a time.
"""
import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")  # tests/sanitize.sh's run
TIMEOUT_S = 20.0
PARALLEL = 2
# The children's address-space cap above what they map at the fork. 0 turns it off: for an
# AddressSanitizer build, which reserves terabytes of shadow memory (run it with
# ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=4096 instead).
EXTRA_ADDRESS_SPACE = int(float(os.environ.get("CNNKIT_BAD_INPUT_ADDRESS_LIMIT_GIB", "4")) * (1 << 30))


def _mapped_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _child(entry, wfd):
    import bad_input_corpus as corpus
    null = os.open(os.devnull, os.O_WRONLY)  # summary(), fit(verbose=...) and the cli print
    os.dup2(null, 1)
    os.dup2(null, 2)
    if EXTRA_ADDRESS_SPACE > 0:
        limit = _mapped_bytes() + EXTRA_ADDRESS_SPACE
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        ok, detail = corpus.judge(entry)
    except BaseException as e:  # noqa: BLE001 - the judge itself failed: report, never hang
        ok, detail = False, f"judge failed: {type(e).__name__}: {e}"
    os.write(wfd, json.dumps([ok, detail[:2000]]).encode())
    os.close(wfd)
    os._exit(0)


def serve(out_path, only=None):
    """Runs every corpus entry (or those in `only`) in a forked child; writes
    {id: [verdict, detail]} as JSON, verdict "pass", "fail", "crash" or "hang"."""
    sys.path.insert(0, str(HERE))
    import bad_input_corpus as corpus
    import cnnkit  # noqa: F401 - imported once, before forking
    # the children's temporary files (checkpoints, IDX files) go next to the verdicts
    tempfile.tempdir = os.path.join(os.path.dirname(os.path.abspath(out_path)), "tmp")
    os.makedirs(tempfile.tempdir, exist_ok=True)
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads != 1:
        raise SystemExit(f"the server has {threads} threads before forking (an op ran at import? "
                         "OPENBLAS_NUM_THREADS not 1?): its children could deadlock in libgomp")
    entries = [e for e in corpus.ENTRIES if only is None or e.id in only]
    results, running, durations = {}, {}, {}  # pid -> (entry, read fd, start time, chunks)
    todo = list(entries)
    while todo or running:
        while todo and len(running) < PARALLEL:
            entry = todo.pop(0)
            rfd, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(rfd)
                try:
                    _child(entry, wfd)
                finally:
                    os._exit(3)
            os.close(wfd)
            running[pid] = (entry, rfd, time.monotonic(), [])
        fds = {info[1]: pid for pid, info in running.items()}
        ready, _, _ = select.select(list(fds), [], [], 0.05)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                running[fds[fd]][3].append(data)
        for pid in list(running):
            entry, rfd, start, chunks = running[pid]
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                limit = min(TIMEOUT_S, entry.timeout or TIMEOUT_S)
                if time.monotonic() - start > limit:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    results[entry.id] = ["hang", f"still running after {limit:g} s; killed"]
                    os.close(rfd)
                    del running[pid]
                continue
            while True:  # the rest of what it wrote
                more = os.read(rfd, 65536)
                if not more:
                    break
                chunks.append(more)
            os.close(rfd)
            del running[pid]
            durations[entry.id] = time.monotonic() - start
            if os.WIFSIGNALED(status):
                sig = signal.Signals(os.WTERMSIG(status)).name
                results[entry.id] = ["crash", f"killed by {sig}"]
            elif not chunks:
                results[entry.id] = ["crash", f"exited with status {os.WEXITSTATUS(status)} and no verdict"]
            else:
                ok, detail = json.loads(b"".join(chunks))
                results[entry.id] = ["pass" if ok else "fail", detail]
    with open(out_path, "w") as f:
        json.dump(results, f)
    slow = sorted(durations.items(), key=lambda kv: -kv[1])[:5]
    print(f"child time {sum(durations.values()):.1f} s; slowest entries: " + ", ".join(f"{k} {v:.2f} s" for k, v in slow))


sys.path.insert(0, str(HERE))
import bad_input_corpus  # noqa: E402

IDS = [e.id for e in bad_input_corpus.ENTRIES]


def _server_env(**extra):
    """The server's environment: the cnnkit this test run imports (installed, as in CI, or a
    development build), and NumPy's OpenBLAS without its worker thread, so the server forks
    with one thread."""
    from helpers import child_env  # here, not at the top: the server itself must not import torch
    return child_env(OPENBLAS_NUM_THREADS="1", **extra)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad_input") / "verdicts.json"
    env = _server_env()
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--serve", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the bad-input server failed:\n{proc.stdout}\n{proc.stderr}"
    results = json.loads(out.read_text())
    counts = Counter(e.category for e in bad_input_corpus.ENTRIES)
    print(f"\nbad-input corpus: {len(IDS)} entries in {time.monotonic() - start:.1f} s; per category: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return results


def test_corpus_size_and_coverage():
    """>= 300 entries, every category of the issue represented, ids unique."""
    assert len(IDS) == len(set(IDS))
    assert len(IDS) >= 300
    counts = Counter(e.category for e in bad_input_corpus.ENTRIES)
    missing = set(bad_input_corpus.CATEGORIES) - set(counts)
    assert not missing, f"categories without entries: {sorted(missing)}"


@pytest.mark.parametrize("entry_id", IDS)
def test_bad_input(verdicts, entry_id):
    verdict, detail = verdicts[entry_id]
    assert verdict == "pass", f"{entry_id}: {verdict}: {detail}"


@pytest.mark.skipif(UNDER_ASAN, reason="ASan handles the planted SIGSEGV itself (a report and exit 1); "
                    "the harness is checked in the plain run")
def test_harness_reports_crash_and_hang(tmp_path):
    """The server itself: a child killed by a signal is a crash, one that never returns a hang."""
    env = _server_env(CNNKIT_BAD_INPUT_SELFTEST="1")
    out = tmp_path / "v.json"
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--serve", str(out),
                           "selftest_segfault", "selftest_hang", "selftest_wrong_error"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert results["selftest_segfault"][0] == "crash" and "SIGSEGV" in results["selftest_segfault"][1]
    assert results["selftest_hang"][0] == "hang"
    assert results["selftest_wrong_error"][0] == "fail"


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        if os.environ.get("CNNKIT_BAD_INPUT_SELFTEST"):
            TIMEOUT_S = 2.0
        serve(sys.argv[2], set(sys.argv[3:]) or None)
    else:
        sys.exit("usage: test_bad_input.py --serve OUT_JSON [ENTRY_ID ...]")
