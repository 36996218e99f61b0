"""End-to-end comparisons with PyTorch 2.13 CPU that train_lenet.py does not make, each with the
thread count fixed on both sides and the two frameworks alternating (A B A B ...) in one process:

  latency  LeNet-5 inference on one image: cnnkit model.predict(x[:1]) and model(x[:1]) (the
           lowest-overhead public call) against a torch.no_grad() forward of the same network;
           median microseconds per call over rounds of --calls calls.
  cifar    the CIFAR-style CNN of PERF.md (conv 3->32->64->128 3x3 pad 1, each + ReLU + 2x2 max
           pool, fc 2048->256->ReLU->10), SGD momentum 0.9, batch 128, random data: median
           images/s of --rounds timed epochs of --cifar-images images after a warm-up epoch.
  memory   peak resident memory of one LeNet-5 training epoch (batch 64, --mem-images random
           images), each framework in a fresh subprocess: VmHWM after the epoch minus VmRSS
           after imports and data load (with the high-water mark reset there when the kernel
           allows it).

ratio = torch time / cnnkit time (> 1: cnnkit faster; for memory, torch MiB / cnnkit MiB).
Run it under the benchmark lock so that other timing runs do not overlap:

    flock /tmp/cnnkit-bench.lock python bench/e2e_vs_torch.py [--only latency cifar memory] [--threads 1 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def cnnkit_cifar():
    from cnnkit import Sequential, layers as L
    return Sequential([
        L.Conv2d(3, 32, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(32, 64, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(64, 128, 3, padding=1), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
        L.Linear(2048, 256), L.ReLU(), L.Linear(256, 10)], input_shape=(3, 32, 32), name="cifar_cnn")


def torch_cifar(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2048, 256), nn.ReLU(), nn.Linear(256, 10))


def torch_epoch(torch, model, opt, x, y, batch_size):
    """A shuffled pass of forward, loss, backward, step per batch: what cnnkit's fit does."""
    loss_fn = torch.nn.functional.cross_entropy
    order = torch.randperm(len(x))
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        xb, yb = x.index_select(0, idx), y.index_select(0, idx)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        opt.step()


def per_call_us(f, calls):
    t = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - t) / calls * 1e6


def latency(torch, threads, args):
    import cnnkit
    cnnkit.set_random_seed(0)
    model = cnnkit.models.lenet5()
    model.eval()
    tmodel = torch_lenet(torch).eval()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x), tmodel(xt).numpy(), rtol=1e-4, atol=1e-5)

    def torch_call():
        with torch.no_grad():
            tmodel(xt)

    sides = {"predict": lambda: model.predict(x), "call": lambda: model(x), "torch": torch_call}
    times = {k: [] for k in sides}
    for f in sides.values():  # warm-up
        per_call_us(f, args.calls)
    for _ in range(args.rounds):
        for k, f in sides.items():
            times[k].append(per_call_us(f, args.calls))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'latency':>8} {threads:>3}  predict {med['predict']:7.1f} us  model(x) {med['call']:7.1f} us  "
          f"torch {med['torch']:7.1f} us  ratio predict {med['torch'] / med['predict']:5.2f}  "
          f"model(x) {med['torch'] / med['call']:5.2f}")


def cifar(torch, threads, args):
    import cnnkit
    cnnkit.set_random_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.cifar_images, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, args.cifar_images).astype(np.int64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = cnnkit_cifar()
    model.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.01, momentum=0.9), loss="cross_entropy")
    tmodel = torch_cifar(torch)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    bs = 128

    def ours():
        t = time.perf_counter()
        model.fit(x, y, batch_size=bs, epochs=1, verbose=0, shuffle=True)
        return len(x) / (time.perf_counter() - t)

    def theirs():
        t = time.perf_counter()
        torch_epoch(torch, tmodel, topt, xt, yt, bs)
        return len(x) / (time.perf_counter() - t)

    ours(), theirs()
    a, b = [], []
    for _ in range(args.rounds):
        a.append(ours())
        b.append(theirs())
    a, b = statistics.median(a), statistics.median(b)
    print(f"{'cifar':>8} {threads:>3}  cnnkit {a:7.0f} img/s  torch {b:7.0f} img/s  ratio {a / b:5.2f}")


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(framework, threads, images):
    """Runs in a fresh interpreter: one LeNet-5 training epoch; prints JSON with MiB figures."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((images, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, images).astype(np.int64)
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        model = torch_lenet(torch)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        run = lambda: torch_epoch(torch, model, opt, xt, yt, 64)  # noqa: E731
    else:
        import cnnkit
        cnnkit.set_num_threads(threads)
        cnnkit.set_random_seed(0)
        model = cnnkit.models.lenet5()
        model.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
        run = lambda: model.fit(x, y, batch_size=64, epochs=1, verbose=0)  # noqa: E731
    try:  # reset VmHWM to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    base = _status_kib("VmRSS")
    run()
    peak = _status_kib("VmHWM")
    print(json.dumps({"base_mib": base / 1024, "peak_mib": peak / 1024, "delta_mib": (peak - base) / 1024,
                      "hwm_reset": reset}))


def memory(threads, args):
    res = {}
    for fw in ("cnnkit", "torch"):
        out = subprocess.run([sys.executable, __file__, "--memory-child", fw, "--threads", str(threads),
                              "--mem-images", str(args.mem_images)], check=True, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        res[fw] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b = res["cnnkit"]["delta_mib"], res["torch"]["delta_mib"]
    print(f"{'memory':>8} {threads:>3}  cnnkit +{a:6.1f} MiB (base {res['cnnkit']['base_mib']:.0f})  "
          f"torch +{b:6.1f} MiB (base {res['torch']['base_mib']:.0f})  ratio {b / max(a, 1e-9):5.2f}"
          f"{'' if res['cnnkit']['hwm_reset'] else '  (VmHWM not reset)'}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=["latency", "cifar", "memory"],
                   choices=["latency", "cifar", "memory"])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=2000, help="inference calls per latency round")
    p.add_argument("--cifar-images", type=int, default=1280)
    p.add_argument("--mem-images", type=int, default=6400)
    p.add_argument("--memory-child", choices=["cnnkit", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        return memory_child(args.memory_child, args.threads[0], args.mem_images)

    import torch
    import cnnkit
    print(f"# cnnkit {cnnkit.__version__} (SIMD {cnnkit._core.simd_tier()}), torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}); medians of {args.rounds} alternating rounds")
    for what in args.only:
        for threads in args.threads:
            if what == "memory":
                memory(threads, args)
            else:
                cnnkit.set_num_threads(threads)
                torch.set_num_threads(threads)
                (latency if what == "latency" else cifar)(torch, threads, args)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
