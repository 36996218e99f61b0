#!/usr/bin/env bash
# Runs the test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of cnnkit,
# with LeakSanitizer on at every Python exit; fails if pytest fails or any sanitizer wrote a
# report, and prints the reports.
#
#   tests/sanitize.sh [pytest args]   build, then run pytest (default: -q tests, less
#                                     tests/test_isa_portability.py: see below)
#   tests/sanitize.sh --train         build, then run tests/train_smoke.py (a short LeNet fit)
#   tests/sanitize.sh --self-test     check that this set-up does catch an overflow, a leak, UB
#
# The sanitized module is built in its own directory (default build-sanitize/, or
# $CNNKIT_SAN_BUILD) next to a copy of python/cnnkit, so the developer's normal module in
# python/cnnkit/ is never replaced. The traps of ../shared/TESTING.md are handled here:
# libstdc++ is preloaded with libasan (else the first C++ exception aborts), ASan and LSan
# reports go to files and UBSan's to a scanned log (pytest swallows stderr), and
# tests/lsan.supp names only CPython's allocators of objects alive at exit, never a library.
#
# valgrind (not in CI: ~9x slower than plain) on the same training run, with a normal build
# (PYTHONPATH=python after the usual cmake build, or an installed cnnkit); --keep-debuginfo
# keeps libgomp named at exit so its initializer's one-off allocation matches the suppression:
#   PYTHONMALLOC=malloc valgrind --keep-debuginfo=yes --suppressions=tests/python311.supp \
#     --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
#     --errors-for-leak-kinds=definite python tests/train_smoke.py
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

python=${PYTHON:-python3}
# The real interpreter, not a pyenv shim or wrapper script, so only Python runs preloaded.
python=$("$python" -c 'import sys; print(sys.executable)')
build=${CNNKIT_SAN_BUILD:-$root/build-sanitize}
mkdir -p "$build"
build=$(cd "$build" && pwd)
reports=$build/reports
pkg=$build/python  # holds cnnkit/: the package's .py files and the sanitized _core module

san_env() {
  local libasan libstdcxx
  libasan=$(gcc -print-file-name=libasan.so)
  libstdcxx=$(gcc -print-file-name=libstdc++.so)
  for lib in "$libasan" "$libstdcxx"; do
    [ -e "$lib" ] || { echo "sanitize.sh: $lib not found (gcc with libasan needed)" >&2; exit 2; }
  done
  export LD_PRELOAD="$libasan $libstdcxx"
  export PYTHONMALLOC=malloc  # every Python allocation through ASan's malloc
  # allocator_may_return_null + max_allocation_size_mb: the bad-input corpus's too-big calls
  # must get MemoryError, as without ASan, not an ASan abort; its own address-space cap would
  # fail under ASan's shadow memory, so it is off (CNNKIT_BAD_INPUT_ADDRESS_LIMIT_GIB=0)
  export ASAN_OPTIONS=detect_leaks=1:log_exe_name=1:allocator_may_return_null=1:max_allocation_size_mb=4096:log_path=$reports/asan${CNNKIT_SAN_ASAN_OPTIONS:+:$CNNKIT_SAN_ASAN_OPTIONS}
  export CNNKIT_BAD_INPUT_ADDRESS_LIMIT_GIB=0
  export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1  # reports on stderr, see below
}

# Prints every report file and returns 1 if there is any.
# A file holding nothing but "failed to allocate" warnings is not a report: with
# allocator_may_return_null, ASan warns once per allocation it refuses and returns NULL, which
# the bad-input corpus's too-big calls turn into the MemoryError they expect. Those are counted.
check_reports() {
  local files=("$reports"/*) real=() refused=0 f
  [ -e "${files[0]}" ] || return 0
  for f in "${files[@]}"; do
    if ! grep -qv "WARNING: AddressSanitizer failed to allocate 0x[0-9a-f]* bytes" "$f"; then
      refused=$((refused + 1))
    else
      real+=("$f")
    fi
  done
  [ "$refused" = 0 ] || echo "sanitize.sh: $refused process(es) had allocations refused (max_allocation_size_mb), as the bad-input corpus expects"
  [ "${#real[@]}" -gt 0 ] || return 0
  for f in "${real[@]}"; do
    echo "===== $f"
    cat "$f"
  done
  echo "sanitize.sh: ${#real[@]} sanitizer report(s) above" >&2
  return 1
}

fresh_reports() {
  rm -rf "$reports"
  mkdir -p "$reports"
}

# Runs a command with its stdout and stderr shown and kept in $build/run.log; returns its exit
# status. GCC's libubsan, loaded beside a preloaded libasan, ignores log_path (its call to set
# the report path binds to libasan's copy) and writes to stderr, so any UBSan line in the log
# becomes the report file ubsan.stderr.
run_logged() {
  local log=$build/run.log rc=0
  "$@" 2>&1 | tee "$log" || rc=${PIPESTATUS[0]}
  if grep -qE "runtime error:|UndefinedBehaviorSanitizer" "$log"; then
    cp "$log" "$reports/ubsan.stderr"
  fi
  return "$rc"
}

if [ "${1:-}" = "--self-test" ]; then
  # An out-of-bounds write and a leak made through ctypes in a preloaded Python, and a signed
  # overflow in a sanitized library it loads, must each leave a report where check_reports
  # looks; a clean snippet must leave none.
  printf '#include <limits.h>\nint add_max(int a) { return a + INT_MAX; }\n' >"$build/ub.c"
  gcc -shared -fPIC -fsanitize=address,undefined -fno-sanitize-recover=undefined \
      "$build/ub.c" -o "$build/ub.so"
  san_env
  fresh_reports
  "$python" -c 'import ctypes, numpy; numpy.ones(10).sum()'
  if ! check_reports >/dev/null; then
    check_reports || true
    echo "self-test FAILED: a clean snippet left a report" >&2
    exit 1
  fi
  "$python" -c '
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
p = libc.malloc(16)
libc.memset(p, 0, 32)  # 16 bytes past the end
' && { echo "self-test FAILED: the overflow did not stop Python" >&2; exit 1; }
  grep -qs "heap-buffer-overflow" "$reports"/asan.* ||
    { echo "self-test FAILED: no heap-buffer-overflow report" >&2; exit 1; }
  fresh_reports
  "$python" -c '
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc(1000)  # the pointer is dropped: a definite leak
' && { echo "self-test FAILED: the leak did not fail the exit status" >&2; exit 1; }
  grep -qs "detected memory leaks" "$reports"/asan.* ||
    { echo "self-test FAILED: no leak report" >&2; exit 1; }
  # A signed overflow in a sanitized shared library loaded by ctypes, as _core is.
  fresh_reports
  run_logged "$python" -c "import ctypes; ctypes.CDLL('$build/ub.so').add_max(1)" >/dev/null &&
    { echo "self-test FAILED: the signed overflow did not stop Python" >&2; exit 1; }
  grep -qs "signed integer overflow" "$reports/ubsan.stderr" ||
    { echo "self-test FAILED: no UBSan report" >&2; exit 1; }
  check_reports >/dev/null 2>&1 && exit 1
  rm -rf "$reports"
  echo "self-test ok: ASan caught the overflow, LSan the leak, UBSan the signed overflow," \
       "and check_reports saw each"
  exit 0
fi

# --- build ---------------------------------------------------------------------------------
rm -rf "$pkg"
mkdir -p "$pkg"
cp -R python/cnnkit "$pkg/"
find "$pkg" \( -name '*.so' -o -name '*.pyd' -o -name __pycache__ \) -prune -exec rm -rf {} +
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNNKIT_SANITIZE=ON \
      -DCNNKIT_BUILD_BENCH=OFF -DCNNKIT_MODULE_DIR="$pkg/cnnkit" -DPython_EXECUTABLE="$python" >/dev/null
cmake --build "$build" -j"${CNNKIT_SAN_JOBS:-2}"

# --- run -----------------------------------------------------------------------------------
san_env
fresh_reports
export PYTHONPATH=$pkg${PYTHONPATH:+:$PYTHONPATH}
# Fail early if the interpreter would import another cnnkit (an installed wheel, python/).
"$python" - "$pkg" <<'EOF'
import os, sys, cnnkit, cnnkit._core as c
want = os.path.join(sys.argv[1], "cnnkit")
assert os.path.dirname(c.__file__) == want, f"imported {c.__file__}, expected the module in {want}"
assert "libasan" in open("/proc/self/maps").read()
print(f"sanitized cnnkit {cnnkit.__version__} from {c.__file__}")
EOF
# pytest captures only sys.stdout/stderr (--capture=sys) so that a UBSan report written to
# fd 2 reaches run_logged even when halt_on_error kills pytest mid-test. A test's child process
# that hits UBSan exits non-zero, which fails that test.
status=0
if [ "${1:-}" = "--train" ]; then
  run_logged "$python" tests/train_smoke.py || status=$?
else
  # tests/test_isa_portability.py checks the release build's machine code and runs the package
  # under qemu as a CPU without AVX2: ASan's 20 TB shadow mapping gets qemu killed, and neither
  # test is about memory. pytest-benchmark (if installed) would run git, an uninstrumented
  # program whose own leaks LSan would report.
  [ "$#" -gt 0 ] || set -- -q tests --ignore=tests/test_isa_portability.py
  run_logged "$python" -m pytest -p no:cacheprovider -p no:benchmark --capture=sys "$@" ||
    status=$?
fi
check_reports || status=1
[ "$status" = 0 ] && echo "sanitize.sh: passed, 0 sanitizer reports"
exit "$status"
