"""SGD and Adam: updates against torch.optim step by step, the fast C++ loops against their
__ref loops bit for bit, state_dict round trips, and the errors for bad use."""
import json

import numpy as np
import pytest

import cnnkit
from cnnkit import _core, optim
from helpers import needs_torch, torch

# 1 element, odd sizes, a conv weight, and > 100k elements so that the update runs threaded
SHAPES = [(1,), (7,), (3, 5), (16, 3, 3, 3), (0, 4), (300, 401)]

SGD_CASES = {
    "plain": dict(learning_rate=0.1),
    "momentum": dict(learning_rate=0.05, momentum=0.9),
    "nesterov": dict(learning_rate=0.05, momentum=0.9, nesterov=True),
    "weight_decay": dict(learning_rate=0.1, weight_decay=0.01),
    "all": dict(learning_rate=0.02, momentum=0.5, nesterov=True, weight_decay=0.1),
}
ADAM_CASES = {
    "default": dict(),
    "weight_decay": dict(learning_rate=1e-2, weight_decay=0.05),
    "custom": dict(learning_rate=3e-3, betas=(0.8, 0.99), eps=1e-4),
    "small_beta1": dict(learning_rate=1e-2, betas=(0.3, 0.5), eps=1e-6),  # torch's other lerp form
}


def torch_optimizer(name, params, cfg):
    cfg = dict(cfg)
    lr = cfg.pop("learning_rate", 1e-3 if name == "adam" else 0.01)
    cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    # foreach=False: the single-tensor path, the reference implementation of the rules
    return cls(params, lr=lr, foreach=False, **cfg)


def make(name, cfg):
    return (optim.Adam if name == "adam" else optim.SGD)(**cfg)


def assert_matches(ours, theirs, what):
    """Within 1e-6 relative to the values' scale (the parameters are ~N(0, 1), the states of
    the size of the gradients), so elements near zero are not held to a pure relative bound."""
    theirs = theirs.detach().numpy()
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * scale, err_msg=what)


def compare_with_torch(name, cfg, rng, steps=5, lr_at=None):
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    ours, theirs = make(name, cfg), torch_optimizer(name, tparams, cfg)
    state_names = {"adam": ["exp_avg", "exp_avg_sq"], "sgd": ["momentum_buffer"]}[name]
    for step in range(1, steps + 1):
        if lr_at and step in lr_at:
            ours.learning_rate = lr_at[step]
            for group in theirs.param_groups:
                group["lr"] = lr_at[step]
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        ours.step(params, grads)
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        theirs.step()
        if step in (1, steps):
            sd = ours.state_dict()
            for i, (p, tp) in enumerate(zip(params, tparams)):
                assert_matches(p, tp, f"step {step}, params[{i}] of shape {p.shape}")
                for key in state_names:
                    if key in theirs.state[tp]:
                        assert_matches(sd[f"state.{i}.{key}"], theirs.state[tp][key],
                                       f"step {step}, state.{i}.{key}")
    assert ours.iterations == steps
    return params


@needs_torch
@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_matches_torch(case, rng):
    compare_with_torch("sgd", SGD_CASES[case], rng)


@needs_torch
@pytest.mark.parametrize("case", ADAM_CASES)
def test_adam_matches_torch(case, rng):
    compare_with_torch("adam", ADAM_CASES[case], rng)


@needs_torch
@pytest.mark.parametrize("name,cfg", [("sgd", SGD_CASES["all"]), ("adam", ADAM_CASES["weight_decay"])])
def test_learning_rate_change_between_steps_takes_effect(name, cfg, rng):
    compare_with_torch(name, cfg, rng, steps=4, lr_at={2: 0.5 * cfg.get("learning_rate", 1e-3), 4: 0.0})


def test_zero_learning_rate_changes_nothing_but_the_state(rng):
    p = rng.standard_normal(1000).astype(np.float32)
    before = p.copy()
    opt = optim.SGD(learning_rate=0.1, momentum=0.9)
    opt.learning_rate = 0.0
    opt.step([p], [rng.standard_normal(1000).astype(np.float32)])
    np.testing.assert_array_equal(p, before)
    assert "state.0.momentum_buffer" in opt.state_dict()


# --- the fast loops against the reference loops --------------------------------------------

@pytest.mark.parametrize("n", [1, 13, 300_001])
@pytest.mark.parametrize("cfg", [(0.1, 0.0, False, 0.0), (0.1, 0.0, False, 0.01), (0.05, 0.9, False, 0.0),
                                 (0.05, 0.9, True, 0.1)], ids=["plain", "wd", "momentum", "nesterov_wd"])
def test_sgd_step_is_bitwise_its_reference(cfg, n, rng):
    lr, mu, nesterov, wd = cfg
    p = rng.standard_normal(n).astype(np.float32)
    buf = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    for first in (True, False):
        fast = [p.copy(), buf.copy()]
        ref = [p.copy(), buf.copy()]
        _core.sgd_step(fast[0], fast[1], g, lr, mu, nesterov, wd, first)
        _core.sgd_step(ref[0], ref[1], g, lr, mu, nesterov, wd, first, ref=True)
        np.testing.assert_array_equal(fast[0], ref[0])
        np.testing.assert_array_equal(fast[1], ref[1])


@pytest.mark.parametrize("n", [1, 13, 300_001])
@pytest.mark.parametrize("cfg", [(1e-3, 0.9, 0.999, 1e-8, 0.0), (1e-2, 0.3, 0.5, 1e-4, 0.1)],
                         ids=["default", "small_beta1_wd"])
def test_adam_step_is_bitwise_its_reference(cfg, n, rng):
    lr, b1, b2, eps, wd = cfg
    p, m, g = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = rng.random(n).astype(np.float32)
    for step in (1, 7):
        fast = [p.copy(), m.copy(), v.copy()]
        ref = [p.copy(), m.copy(), v.copy()]
        _core.adam_step(*fast, g, step, lr, b1, b2, eps, wd)
        _core.adam_step(*ref, g, step, lr, b1, b2, eps, wd, ref=True)
        for a, b in zip(fast, ref):
            np.testing.assert_array_equal(a, b)


def test_update_does_not_depend_on_thread_count(rng):
    n = 400_000
    p0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    results = []
    old = cnnkit.get_num_threads()
    try:
        for threads in (1, 2, 3):
            cnnkit.set_num_threads(threads)
            p = p0.copy()
            opt = optim.Adam(learning_rate=1e-2)
            opt.step([p], [g])
            opt.step([p], [g])
            results.append(p)
    finally:
        cnnkit.set_num_threads(old)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


# --- state_dict -------------------------------------------------------------------------------

def _params(rng):
    return [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (4,), (2, 3, 3, 3)]]


@pytest.mark.parametrize("opt", [optim.SGD(0.1, momentum=0.9, nesterov=True), optim.SGD(0.1),
                                 optim.Adam(1e-2, weight_decay=0.1)], ids=repr)
def test_state_dict_round_trip_through_npz_continues_identically(opt, rng, tmp_path):
    opt = optim.get(opt.get_config())  # a fresh one of the same kind
    params = _params(rng)
    grads = [[rng.standard_normal(p.shape).astype(np.float32) for p in params] for _ in range(5)]
    for g in grads[:3]:
        opt.step(params, g)
    opt.learning_rate *= 0.5
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    config = json.loads(json.dumps(opt.get_config()))

    resumed = optim.get(config)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        resumed.load_state_dict(f)
    assert resumed.iterations == 3 and resumed.learning_rate == opt.learning_rate
    copies = [p.copy() for p in params]
    for g in grads[3:]:
        opt.step(params, g)
        resumed.step(copies, g)
    for a, b in zip(params, copies):
        np.testing.assert_array_equal(a, b)
    assert opt.state_dict().keys() == resumed.state_dict().keys()


def test_state_dict_is_a_snapshot(rng):
    params = _params(rng)
    opt = optim.SGD(0.1, momentum=0.9)
    opt.step(params, [np.ones_like(p) for p in params])
    sd = opt.state_dict()
    assert sd["step"] == 1 and isinstance(sd["learning_rate"], float)
    assert sorted(sd) == ["learning_rate", "state.0.momentum_buffer", "state.1.momentum_buffer",
                          "state.2.momentum_buffer", "step"]
    sd["state.0.momentum_buffer"][...] = 123.0
    assert not (opt.state_dict()["state.0.momentum_buffer"] == 123.0).any()
    assert optim.SGD(0.1).state_dict() == {"step": 0, "learning_rate": 0.1}


def _trained(rng, kind="adam"):
    params = _params(rng)
    opt = optim.Adam(1e-2) if kind == "adam" else optim.SGD(0.1, momentum=0.9)
    opt.step(params, [np.ones_like(p) for p in params])
    return opt, params


@pytest.mark.parametrize("mutate,message", [
    (lambda sd: sd.pop("step"), "missing keys \\['step'\\]"),
    (lambda sd: sd.pop("state.1.exp_avg_sq"), "missing keys \\['state.1.exp_avg_sq'\\]"),
    (lambda sd: sd.update({"state.0.momentum_buffer": np.zeros((4, 3), np.float32)}), "unexpected keys"),
    (lambda sd: sd.update({"bogus": 1}), "unexpected keys \\['bogus'\\]"),
    (lambda sd: sd.update({"state.0.exp_avg": np.zeros((3, 4), np.float32)}), "state.0.exp_avg has shape \\(3, 4\\)"),
    (lambda sd: sd.update({"state.0.exp_avg": np.zeros((4, 3), np.int64)}), "floating-point"),
    (lambda sd: sd.update({"step": -1}), "step must be >= 0"),
    (lambda sd: sd.update({"step": 1.5}), "step must be an integer"),
    (lambda sd: sd.update({"step": 0}), "step is 0"),
    (lambda sd: sd.update({"learning_rate": -1.0}), "learning_rate"),
    (lambda sd: [sd.pop(k) for k in ("state.2.exp_avg", "state.2.exp_avg_sq")], "for 2 parameters"),
    (lambda sd: [sd.pop(k) for k in ("state.1.exp_avg", "state.1.exp_avg_sq")], "positions must be"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("state.")], "holds no exp_avg"),
])
def test_load_state_dict_rejects_bad_entries(mutate, message, rng):
    opt, _ = _trained(rng)
    sd = opt.state_dict()
    mutate(sd)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(sd)
    after = opt.state_dict()  # nothing changed
    assert after.keys() == before.keys()
    for k in after:
        np.testing.assert_array_equal(after[k], before[k])


def test_fresh_optimizer_checks_loaded_shapes_at_first_step(rng):
    opt, params = _trained(rng, "sgd")
    sd = opt.state_dict()
    fresh = optim.SGD(0.1, momentum=0.9)
    fresh.load_state_dict(sd)  # no parameters seen yet: shapes are checked at the first step
    wrong = [params[1], params[0], params[2]]
    with pytest.raises(ValueError, match=r"state.0.momentum_buffer has shape \(4, 3\) but params\[0\] has shape \(4,\)"):
        fresh.step(wrong, [np.zeros_like(p) for p in wrong])
    with pytest.raises(ValueError, match="state is for 3 parameters, got 2"):
        fresh.step(params[:2], [np.zeros_like(p) for p in params[:2]])
    fresh.step(params, [np.zeros_like(p) for p in params])
    with pytest.raises(TypeError):
        fresh.load_state_dict([("step", 1)])


# --- hyperparameters, step arguments, get -------------------------------------------------------

@pytest.mark.parametrize("make,error", [
    (lambda: optim.SGD(learning_rate=-0.1), ValueError),
    (lambda: optim.SGD(learning_rate=float("nan")), ValueError),
    (lambda: optim.SGD(momentum=-0.5), ValueError),
    (lambda: optim.SGD(nesterov=True), ValueError),
    (lambda: optim.SGD(weight_decay=-1e-4), ValueError),
    (lambda: optim.SGD(learning_rate="0.1"), TypeError),
    (lambda: optim.SGD(momentum=0.9, nesterov=1), TypeError),
    (lambda: optim.Adam(learning_rate=-1e-3), ValueError),
    (lambda: optim.Adam(betas=(1.0, 0.999)), ValueError),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError),
    (lambda: optim.Adam(betas=0.9), TypeError),
    (lambda: optim.Adam(betas=(0.9, 0.99, 0.9)), TypeError),
    (lambda: optim.Adam(eps=-1e-8), ValueError),
    (lambda: optim.Adam(weight_decay=-0.1), ValueError),
])
def test_bad_hyperparameters_raise(make, error):
    with pytest.raises(error):
        make()


def test_learning_rate_is_a_validated_attribute():
    opt = optim.Adam()
    opt.learning_rate = np.float32(0.25)
    assert opt.learning_rate == 0.25 and type(opt.learning_rate) is float
    assert opt.get_config()["learning_rate"] == 0.25
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    assert opt.learning_rate == 0.25


def test_step_rejects_bad_arguments_before_changing_anything(rng):
    params = _params(rng)
    before = [p.copy() for p in params]
    opt = optim.SGD(0.1, momentum=0.9)
    good = [np.ones_like(p) for p in params]
    bad_shape = good[:2] + [np.ones((2, 3, 3, 2), np.float32)]
    with pytest.raises(ValueError, match=r"grads\[2\] has shape \(2, 3, 3, 2\) but params\[2\] has shape \(2, 3, 3, 3\)"):
        opt.step(params, bad_shape)
    with pytest.raises(ValueError, match="3 params but 2 grads"):
        opt.step(params, good[:2])
    with pytest.raises(TypeError, match="float32"):
        opt.step([p.astype(np.float64) for p in params], good)
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step([params[0].T] + params[1:], [good[0].T] + good[1:])
    with pytest.raises(TypeError, match="None"):
        opt.step(params, [None] + good[1:])
    with pytest.raises(TypeError, match="real numbers"):
        opt.step(params, [np.full((4, 3), "x")] + good[1:])
    for a, b in zip(params, before):
        np.testing.assert_array_equal(a, b)
    assert opt.iterations == 0
    opt.step(params, good)
    with pytest.raises(ValueError, match="differ from those of earlier steps"):
        opt.step(params[:2], good[:2])


def test_core_steps_validate_their_arrays(rng):
    p = np.zeros(5, np.float32)
    g = np.ones(5, np.float32)
    with pytest.raises(TypeError, match="momentum_buffer must be a numpy array, got None"):
        _core.sgd_step(p, None, g, 0.1, 0.9, False, 0.0, True)
    with pytest.raises(ValueError, match="overlaps"):
        _core.sgd_step(p, p, g, 0.1, 0.9, False, 0.0, True)
    with pytest.raises(ValueError, match=r"expected grad of shape \(5,\), got shape \(4,\)"):
        _core.sgd_step(p, None, g[:4], 0.1, 0.0, False, 0.0, True)
    with pytest.raises(ValueError, match="step must be >= 1"):
        _core.adam_step(p, np.zeros(5, np.float32), np.zeros(5, np.float32), g, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0)
    with pytest.raises(ValueError, match=r"expected exp_avg_sq of shape \(5,\)"):
        _core.adam_step(p, np.zeros(5, np.float32), np.zeros(6, np.float32), g, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0)


def test_get():
    assert type(optim.get("sgd")) is optim.SGD and type(optim.get("Adam")) is optim.Adam
    assert optim.get("sgd").learning_rate == 0.01 and optim.get("adam").learning_rate == 1e-3
    opt = optim.SGD(0.3, momentum=0.8, nesterov=True, weight_decay=1e-4)
    assert optim.get(opt) is opt
    clone = optim.get(json.loads(json.dumps(opt.get_config())))
    assert type(clone) is optim.SGD and clone.get_config() == opt.get_config()
    adam = optim.Adam.from_config({"learning_rate": 0.1, "betas": [0.5, 0.6]})
    assert adam.betas == (0.5, 0.6) and adam.get_config()["name"] == "Adam"
    with pytest.raises(ValueError, match="valid names: 'sgd', 'adam'"):
        optim.get("rmsprop")
    with pytest.raises(TypeError, match="'sgd', 'adam'"):
        optim.get(3)
    with pytest.raises(ValueError, match="unknown keys \\['lr'\\]"):
        optim.get({"name": "sgd", "lr": 0.1})
    with pytest.raises(ValueError, match="config is for 'adam'"):
        optim.SGD.from_config({"name": "adam"})
    with pytest.raises(ValueError, match="no 'name'"):
        optim.Optimizer.from_config({"learning_rate": 0.1})


# --- the batched step (one core call for all parameters) -----------------------------------

def per_tensor(opt):
    """opt with the batched step switched off: every step takes the per-tensor path."""
    opt._step_all = lambda params, grads, step: False
    return opt


@pytest.mark.parametrize("name,cfg", [("sgd", c) for c in SGD_CASES.values()] +
                         [("adam", c) for c in ADAM_CASES.values()],
                         ids=[f"sgd-{k}" for k in SGD_CASES] + [f"adam-{k}" for k in ADAM_CASES])
def test_batched_step_is_bitwise_the_per_tensor_step(name, cfg, rng):
    params = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    twins = [p.copy() for p in params]
    fast, slow = make(name, cfg), per_tensor(make(name, cfg))
    for step in range(4):
        grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
        fast.step(params, grads)
        slow.step(twins, [g.copy() for g in grads])
        for a, b in zip(params, twins):
            assert a.tobytes() == b.tobytes()
    sd_fast, sd_slow = fast.state_dict(), slow.state_dict()
    assert sd_fast.keys() == sd_slow.keys() and fast.iterations == slow.iterations == 4
    for k in sd_fast:
        assert np.asarray(sd_fast[k]).tobytes() == np.asarray(sd_slow[k]).tobytes(), k


def test_batched_step_is_taken_after_the_first_step(rng, monkeypatch):
    params = _params(rng)
    opt = optim.SGD(0.1, momentum=0.9)
    taken = []
    real = _core.sgd_step_many
    monkeypatch.setattr(_core, "sgd_step_many", lambda *a: taken.append(real(*a)) or taken[-1])
    for _ in range(3):
        opt.step(params, [np.ones_like(p) for p in params])
    assert taken == [True, True]  # the first step creates the momentum buffers


def test_batched_step_leaves_bad_arguments_to_the_per_tensor_checks(rng):
    """After a first step (state exists), each bad call changes nothing in the core's batched
    step and raises what the per-tensor path raises."""
    params = _params(rng)
    opt = optim.SGD(0.1, momentum=0.9)
    good = [np.ones_like(p) for p in params]
    opt.step(params, good)
    before = [p.copy() for p in params]
    with pytest.raises(ValueError, match=r"grads\[2\] has shape \(2, 3, 3, 2\) but params\[2\]"):
        opt.step(params, good[:2] + [np.ones((2, 3, 3, 2), np.float32)])
    with pytest.raises(ValueError, match="3 params but 2 grads"):
        opt.step(params, good[:2])
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step([params[0].T] + params[1:], [good[0].T] + good[1:])
    readonly = params[1].copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        opt.step([params[0], readonly, params[2]], good)
    with pytest.raises(ValueError, match=r"params\[0\]: sgd_step: param overlaps an input array"):
        opt.step(params, [params[0]] + good[1:])
    with pytest.raises(ValueError, match="differ from those of earlier steps"):
        opt.step(params[:2], good[:2])
    for a, b in zip(params, before):
        np.testing.assert_array_equal(a, b)
    # float64 gradients are converted by the per-tensor path: same update as float32 ones
    twins = [p.copy() for p in params]
    twin_opt = per_tensor(optim.SGD(0.1, momentum=0.9))
    twin_opt.load_state_dict(opt.state_dict())
    opt.step(params, [g.astype(np.float64) for g in good])
    twin_opt.step(twins, good)
    for a, b in zip(params, twins):
        assert a.tobytes() == b.tobytes()
