"""cnnkit against PyTorch CPU, ops to whole networks, in one table.

Both libraries run in this process with the same thread count (--threads, default 1 then 2,
set with cnnkit.set_num_threads and torch.set_num_threads). For every case and thread count the
two sides alternate (A B A B ...) after a warm-up, in bursts of ~20 ms with a short pause
between sides (see _common.alternate), and each side's median time per call is reported.

    ratio = torch time / cnnkit time       (> 1: cnnkit faster; for memory: torch MB / cnnkit MB)
    GFLOP/s = cnnkit's FLOPs / cnnkit's time; % peak = that over the FP32 FMA peak of the thread
    count, measured in this run by build/bench/bench_gemm (the FMA chains of bench_common.cpp at
    the active tier's vector width, best of 3), or --peak, or the fallback constant below.

FLOPs: convolution and linear layers only (2 per multiply-add); forward+backward and training
count 3x the forward, less the input gradient of a network's first layer, which neither side
computes. Pooling, softmax, batch norm, activations and the optimizer count nothing.

Cases: conv2d and conv1d forward and forward+backward on bench/shapes/conv2d.txt and conv1d.txt;
max and average pooling 2x2 and linear 256x400->120, forward and forward+backward; softmax
cross-entropy 256x10 forward+backward; LeNet-5 training steps (batch 64 and 256, SGD momentum
0.9) and inference (batch 256 and batch-1 latency: model.predict, the public API, and the model
call model(x) in eval mode, the lower-level path, against torch.no_grad forward); the CIFAR-style
CNN of PERF.md training at batch 128; ResNet-18 (cnnkit.models.resnet18 and the same network
written in torch.nn) training at batch 16 on 3x64x64; and the peak resident memory of a LeNet-5
training epoch (batch 64, --memory-images random MNIST-shaped images), each side in a fresh
subprocess: VmHWM after the epoch minus VmRSS after imports and data load (the high-water mark
is reset at that point through /proc/self/clear_refs).

    PYTHONPATH=python flock /tmp/cnnkit-bench.lock python3 bench/compare_torch.py
        [--threads 1 2] [--reps 15] [--filter NAME] [--quick] [--markdown] [--peak GFLOPS]
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

import numpy as np

from _common import HERE, alternate, conv_cases, conv_problem

ROOT = os.path.dirname(HERE)
# One core's FP32 FMA peak at 512-bit width on the project's machine (AMD EPYC Zen 5, 2 vCPUs),
# from bench_gemm's "measured FMA peak" line with --threads 1, 2026-11: used, scaled by the
# thread count, only when neither bench_gemm nor --peak is available.
FALLBACK_PEAK_PER_CORE = 255.0
MEMORY_CASE = "lenet5_train_epoch_peak_rss"


# --- the FMA peak -------------------------------------------------------------------------------

def measure_peak(threads, given):
    """(GFLOP/s, where it came from) for `threads` threads."""
    if given:
        return given * threads, f"--peak {given:g} GFLOP/s per core x {threads}"
    exe = os.path.join(os.environ.get("CNNKIT_BUILD_DIR", os.path.join(ROOT, "build")), "bench", "bench_gemm")
    if os.access(exe, os.X_OK):
        best = 0.0
        for _ in range(3):  # other work only lowers a measured peak: keep the best
            out = subprocess.run([exe, "--threads", str(threads), "--filter", "__no_case__"],
                                 capture_output=True, text=True).stdout
            m = re.search(r"measured FMA peak ([\d.]+) GFLOP/s", out)
            if m:
                best = max(best, float(m.group(1)))
        if best > 0:
            width = "512" if "avx512" in out.split("|")[0] else "256"
            return best, f"measured now by {os.path.relpath(exe, ROOT)} ({width}-bit FMAs, best of 3)"
    return FALLBACK_PEAK_PER_CORE * threads, (f"fallback constant {FALLBACK_PEAK_PER_CORE:g} GFLOP/s per core "
                                              f"x {threads} (no build/bench/bench_gemm; see --peak)")


# --- networks in torch and their FLOPs ----------------------------------------------------------

def torch_lenet5(nn):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def torch_cifar_cnn(nn):
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2048, 256), nn.ReLU(), nn.Linear(256, 10))


def cnnkit_cifar_cnn(cnnkit):
    L = cnnkit.layers
    return cnnkit.Sequential([
        L.Conv2d(3, 32, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(32, 64, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(64, 128, 3, padding=1), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
        L.Linear(2048, 256), L.ReLU(), L.Linear(256, 10)], input_shape=(3, 32, 32), name="cifar_cnn")


def torch_resnet18(nn, num_classes=10):
    """torchvision's resnet18 (BasicBlock, layers 2-2-2-2), written out: torchvision is not a
    dependency."""
    def conv_bn(c_in, c_out, k, stride, pad):
        return [nn.Conv2d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm2d(c_out)]

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(c_in, c_out, 3, stride, 1), nn.ReLU(inplace=True),
                                      *conv_bn(c_out, c_out, 3, 1, 1))
            self.shortcut = (nn.Sequential(*conv_bn(c_in, c_out, 1, stride, 0))
                             if stride != 1 or c_in != c_out else nn.Identity())

        def forward(self, x):
            return (self.body(x) + self.shortcut(x)).relu_()

    layers, c_in = conv_bn(3, 64, 7, 2, 3) + [nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)], 64
    for stage, width in enumerate((64, 128, 256, 512)):
        layers += [BasicBlock(c_in, width, 2 if stage > 0 else 1), BasicBlock(width, width, 1)]
        c_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


def network_flops(torch, model, x):
    """(forward FLOPs, training FLOPs) of conv and linear layers for input x: training is 3x
    the forward less the first layer's input gradient."""
    nn, per_layer = torch.nn, []

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            per_layer.append(2.0 * out.numel() * (m.in_channels // m.groups) * np.prod(m.kernel_size))
        elif isinstance(m, nn.Linear):
            per_layer.append(2.0 * out.numel() * m.in_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    fwd = sum(per_layer)
    return fwd, 3 * fwd - per_layer[0]


# --- cases: name -> builder returning (FLOPs or None, cnnkit callable, torch callable) ----------

def conv_builders(torch):
    for name, xs, ws, stride, padding, groups, one_d in conv_cases():
        def build(all_, xs=xs, ws=ws, stride=stride, padding=padding, groups=groups, one_d=one_d, name=name):
            flops, c_fwd, c_all, t_fwd, t_all = conv_problem(torch, name, xs, ws, stride, padding, groups, one_d)
            return (3 * flops, c_all, t_all) if all_ else (flops, c_fwd, t_fwd)
        kind = "conv1d" if one_d else "conv2d"
        yield f"{kind} {name} fwd", lambda b=build: b(False)
        yield f"{kind} {name} fwd+bwd", lambda b=build: b(True)


def op_builders(torch):
    from cnnkit import functional as F
    tF = torch.nn.functional
    rng = np.random.default_rng(0)

    def pool(kind, backward):
        x = rng.standard_normal((64, 32, 32, 32)).astype(np.float32)
        dy = rng.standard_normal((64, 32, 16, 16)).astype(np.float32)
        tx, tdy = torch.from_numpy(x.copy()).requires_grad_(), torch.from_numpy(dy)
        tpool = tF.max_pool2d if kind == "max" else tF.avg_pool2d
        ref = tpool(tx, 2).detach().numpy()
        if kind == "max":
            assert np.array_equal(F.max_pool2d(x, 2), ref)
            c_fwd = lambda: F.max_pool2d(x, 2, return_indices=True)  # noqa: E731

            def c_all():
                _, idx = F.max_pool2d(x, 2, return_indices=True)
                F.max_pool2d_backward(dy, idx, x.shape, 2)
        else:
            assert np.allclose(F.avg_pool2d(x, 2), ref, atol=1e-6)
            c_fwd = lambda: F.avg_pool2d(x, 2)  # noqa: E731

            def c_all():
                F.avg_pool2d(x, 2)
                F.avg_pool2d_backward(dy, x.shape, 2)

        def t_fwd():
            with torch.no_grad():
                tpool(tx, 2)

        def t_all():
            tx.grad = None
            tpool(tx, 2).backward(tdy)
        return (None, c_all, t_all) if backward else (None, c_fwd, t_fwd)

    def linear(backward):
        x = rng.standard_normal((256, 400)).astype(np.float32)
        w = rng.standard_normal((120, 400)).astype(np.float32) * 0.05
        b = rng.standard_normal(120).astype(np.float32)
        dy = rng.standard_normal((256, 120)).astype(np.float32)
        tx, tw, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
        tdy = torch.from_numpy(dy)
        assert np.allclose(F.linear(x, w, b), tF.linear(tx, tw, tb).detach().numpy(), rtol=1e-4, atol=1e-4)
        flops = 2.0 * 256 * 400 * 120

        def c_all():
            F.linear(x, w, b)
            F.linear_backward(dy, x, w)

        def t_fwd():
            with torch.no_grad():
                tF.linear(tx, tw, tb)

        def t_all():
            tx.grad = tw.grad = tb.grad = None
            tF.linear(tx, tw, tb).backward(tdy)
        return (3 * flops, c_all, t_all) if backward else (flops, lambda: F.linear(x, w, b), t_fwd)

    def softmax_xent():
        logits = rng.standard_normal((256, 10)).astype(np.float32)
        labels = rng.integers(0, 10, 256)
        tl, tlab = torch.from_numpy(logits.copy()).requires_grad_(), torch.from_numpy(labels)
        assert abs(F.softmax_cross_entropy(logits, labels)[0] - tF.cross_entropy(tl, tlab).item()) < 1e-5

        def c_all():
            _, probs = F.softmax_cross_entropy(logits, labels)
            F.cross_entropy_backward(logits, labels, probs=probs)

        def t_all():
            tl.grad = None
            tF.cross_entropy(tl, tlab).backward()
        return None, c_all, t_all

    yield "max_pool2d 2x2 64x32x32x32 fwd", lambda: pool("max", False)
    yield "max_pool2d 2x2 64x32x32x32 fwd+bwd", lambda: pool("max", True)
    yield "avg_pool2d 2x2 64x32x32x32 fwd", lambda: pool("avg", False)
    yield "avg_pool2d 2x2 64x32x32x32 fwd+bwd", lambda: pool("avg", True)
    yield "linear 256x400->120 fwd", lambda: linear(False)
    yield "linear 256x400->120 fwd+bwd", lambda: linear(True)
    yield "softmax_xent 256x10 fwd+bwd", softmax_xent


def network_builders(torch):
    import cnnkit
    nn = torch.nn

    def data(shape, batch):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        y = rng.integers(0, 10, batch).astype(np.int64)
        return x, y, torch.from_numpy(x), torch.from_numpy(y)

    def train(make_cnnkit, make_torch, shape, batch, lr):
        cnnkit.set_random_seed(0)
        torch.manual_seed(0)
        model, tmodel = make_cnnkit(), make_torch()
        model.compile(optimizer=cnnkit.optim.SGD(learning_rate=lr, momentum=0.9), loss="cross_entropy")
        topt = torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=0.9)
        x, y, tx, ty = data(shape, batch)
        tmodel.train()

        def t_step():
            topt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(tmodel(tx), ty)
            loss.backward()
            topt.step()
            return loss.item()
        return network_flops(torch, tmodel, tx)[1], lambda: model.train_on_batch(x, y), t_step

    def infer(batch, call):
        cnnkit.set_random_seed(0)
        torch.manual_seed(0)
        model, tmodel = cnnkit.models.lenet5(), torch_lenet5(nn).eval()
        x, _, tx, _ = data((1, 28, 28), batch)
        if call:
            model.eval()
            c_fwd = lambda: model(x)  # noqa: E731
        else:
            c_fwd = lambda: model.predict(x, batch_size=batch)  # noqa: E731

        def t_fwd():
            with torch.no_grad():
                tmodel(tx)
        return network_flops(torch, tmodel, tx)[0], c_fwd, t_fwd

    lenet = (cnnkit.models.lenet5, lambda: torch_lenet5(nn), (1, 28, 28))
    yield "lenet5 train step b64", lambda: train(*lenet, 64, 0.05)
    yield "lenet5 train step b256", lambda: train(*lenet, 256, 0.05)
    yield "lenet5 infer b256 predict", lambda: infer(256, False)
    yield "lenet5 infer b256 model(x)", lambda: infer(256, True)
    yield "lenet5 infer b1 predict", lambda: infer(1, False)
    yield "lenet5 infer b1 model(x)", lambda: infer(1, True)
    yield "cifar_cnn train step b128", lambda: train(
        lambda: cnnkit_cifar_cnn(cnnkit), lambda: torch_cifar_cnn(nn), (3, 32, 32), 128, 0.01)
    yield "resnet18 3x64x64 train step b16", lambda: train(
        lambda: cnnkit.models.resnet18(num_classes=10, input_shape=(3, 64, 64)),
        lambda: torch_resnet18(nn), (3, 64, 64), 16, 0.01)


# --- peak resident memory of a LeNet-5 epoch, one fresh subprocess per side ---------------------

def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(side, threads, images):
    """Runs in the subprocess: imports one library, loads the data, resets the RSS high-water
    mark, trains one epoch at batch 64 and prints {"base_mb", "peak_mb", "reset", "seconds"}."""
    import resource
    import time

    if side == "cnnkit":
        import cnnkit
        cnnkit.set_num_threads(threads)
    else:
        import torch
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((images, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, images).astype(np.int64)
    try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    base = _status_kb("VmRSS")
    t = time.perf_counter()
    if side == "cnnkit":
        cnnkit.set_random_seed(0)
        model = cnnkit.models.lenet5()
        model.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
        model.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=True)
    else:
        torch.manual_seed(0)
        model = torch_lenet5(torch.nn)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        order = torch.randperm(images)
        for start in range(0, images, 64):  # what fit does: shuffled batches, step per batch
            idx = order[start:start + 64]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(tx.index_select(0, idx)), ty.index_select(0, idx))
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - t
    peak = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024, "reset": reset, "seconds": seconds}))


def memory_run(side, threads, images):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", side,
                          "--threads", str(threads), "--memory-images", str(images)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# --- the table ----------------------------------------------------------------------------------

COLUMNS = ("case", "thr", "unit", "cnnkit", "torch", "ratio", "cnnkit GFLOP/s", "% peak")


class Table:
    def __init__(self, markdown):
        self.markdown = markdown
        self.widths = (36, 3, 4, 9, 9, 6, 14, 6)

    def row(self, cells):
        if self.markdown:
            print("| " + " | ".join(cells) + " |", flush=True)
        else:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(cells, self.widths))).rstrip(), flush=True)

    def header(self):
        self.row(COLUMNS)
        if self.markdown:
            print("|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|")

    def result(self, case, threads, unit, ours, theirs, flops=None, peak=None):
        scale = 1e3 if unit == "ms" else 1.0
        gflops = flops / ours * 1e-9 if flops else None
        self.row((case, str(threads), unit, f"{ours * scale:.3f}" if unit == "ms" else f"{ours:.1f}",
                  f"{theirs * scale:.3f}" if unit == "ms" else f"{theirs:.1f}", f"{theirs / ours:.2f}",
                  f"{gflops:.1f}" if gflops else "-", f"{100 * gflops / peak:.0f}" if gflops else "-"))


def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=None, help="alternating rounds per case (default 15; --quick 3)")
    p.add_argument("--filter", default="", help="only cases whose name contains this")
    p.add_argument("--quick", action="store_true", help="few, short repetitions: a smoke test, not a measurement")
    p.add_argument("--markdown", action="store_true", help="the table in Markdown")
    p.add_argument("--peak", type=float, default=None, help="one core's FMA peak in GFLOP/s instead of measuring it")
    p.add_argument("--memory-images", type=int, default=None, help="images in the memory epoch (default 60000)")
    p.add_argument("--memory-child", choices=("cnnkit", "torch"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    reps = args.reps or (3 if args.quick else 15)
    images = args.memory_images or (1024 if args.quick else 60000)
    if args.memory_child:
        return memory_child(args.memory_child, args.threads[0], images)

    import torch

    import cnnkit

    peaks = {t: measure_peak(t, args.peak) for t in args.threads}
    print(f"# {machine()}; {datetime.date.today()}")
    print(f"# cnnkit {cnnkit.__version__} (SIMD {cnnkit._core.simd_tier()}), torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}); medians of {reps} alternating rounds"
          + (" (--quick: not a measurement)" if args.quick else ""))
    for t, (peak, source) in peaks.items():
        print(f"# FMA peak, {t} thread{'s' if t > 1 else ''}: {peak:.1f} GFLOP/s, {source}")
    print("# ratio = torch / cnnkit (> 1: cnnkit faster or smaller); GFLOP/s and % peak are cnnkit's")
    if args.markdown:
        print()
    table = Table(args.markdown)
    table.header()
    burst = 0.005 if args.quick else 0.02
    builders = [*conv_builders(torch), *op_builders(torch), *network_builders(torch)]
    for name, build in builders:
        if args.filter not in name:
            continue
        flops, ours, theirs = build()
        for t in args.threads:
            cnnkit.set_num_threads(t)
            torch.set_num_threads(t)
            t_ours, t_theirs = alternate((ours, theirs), reps, burst_s=burst)
            table.result(name, t, "ms", t_ours, t_theirs, flops, peaks[t][0])
        del ours, theirs
    if args.filter in MEMORY_CASE:
        notes = []
        for t in args.threads:
            ours, theirs = (memory_run(side, t, images) for side in ("cnnkit", "torch"))
            table.result(MEMORY_CASE, t, "MB", ours["peak_mb"] - ours["base_mb"],
                         theirs["peak_mb"] - theirs["base_mb"])
            notes.append(f"{t} thr: baselines {ours['base_mb']:.0f} / {theirs['base_mb']:.0f} MB, "
                         f"epoch {ours['seconds']:.1f} / {theirs['seconds']:.1f} s"
                         + ("" if ours["reset"] and theirs["reset"] else ", high-water mark not reset"))
        print(f"\n# {MEMORY_CASE}: {images} images, batch 64, cnnkit / torch: " + "; ".join(notes))
    if not args.peak:
        # Other work on the machine shows as a lower peak: measured again, it tells whether the
        # table's 2-thread rows had both cores to themselves.
        after = {t: measure_peak(t, None)[0] for t in args.threads}
        print("# FMA peak measured again after the run: "
              + ", ".join(f"{after[t]:.1f} GFLOP/s on {t} thread{'s' if t > 1 else ''} "
                          f"({100 * after[t] / peaks[t][0]:.0f}% of before)" for t in args.threads))


if __name__ == "__main__":
    main()
