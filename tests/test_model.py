"""Sequential: structure and summary, PyTorch parity (state_dict keys and logits, one training
step with SGD momentum and with Adam), fit/evaluate/predict, modes, reproducibility, memory
reuse and clear errors."""
import tracemalloc

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L
from helpers import needs_torch, torch


def lenet():
    return cnnkit.models.lenet5()


def torch_lenet():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def blobs(rng, n=256, classes=3, dim=8):
    """Linearly separable classes: centres far apart, small noise."""
    centres = rng.standard_normal((classes, dim)) * 4
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.standard_normal((n, dim))).astype(np.float32), y


# --- structure ------------------------------------------------------------------------------------

def test_lenet5_parameter_count_and_shapes():
    m = lenet()
    assert m.count_params() == 61706
    assert m.output_shapes() == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5),
                                 (400,), (120,), (120,), (84,), (84,), (10,)]


def test_summary_is_keras_like():
    text = lenet().summary(print_fn=None)
    lines = text.splitlines()
    assert lines[0] == 'Model: "lenet5"'
    assert any("Layer (type)" in l and "Output Shape" in l and "Param #" in l for l in lines)
    assert any(l.split()[:2] == ["conv2d", "(Conv2d)"] and "(None, 6, 28, 28)" in l and l.endswith("156")
               for l in lines)
    assert any(l.startswith(" conv2d_1 (Conv2d)") and l.endswith("2,416") for l in lines)
    assert any(l.startswith(" linear (Linear)") and "(None, 120)" in l and l.endswith("48,120") for l in lines)
    assert "Total params: 61,706" in lines and "Trainable params: 61,706" in lines
    assert "Non-trainable params: 0" in lines


def test_summary_counts_frozen_layers_as_non_trainable():
    m = lenet()
    m.layers[0].trainable = False
    assert "Non-trainable params: 156" in m.summary(print_fn=None)


def test_add_checks_the_layers_fit_together():
    m = cnnkit.Sequential([L.Conv2d(1, 4, 3)], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"layer 1 \(Linear\) does not fit.*\(4, 6, 6\).*Flatten"):
        m.add(L.Linear(10, 2))
    assert len(m.layers) == 1
    with pytest.raises(TypeError, match="expects a cnnkit Layer"):
        m.add(lambda x: x)
    with pytest.raises(ValueError, match=r"expected input shape \(3, H, W\), got \(1, 8, 8\)"):
        cnnkit.Sequential([L.Conv2d(3, 4, 3)], input_shape=(1, 8, 8))


def test_input_shape_inferred_from_the_first_batch(rng):
    m = cnnkit.Sequential([L.Flatten(), L.Linear(12, 2)])
    assert m.forward(rng.standard_normal((5, 3, 4)).astype(np.float32)).shape == (5, 2)
    assert m.input_shape == (3, 4)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 3, 4\), got shape \(5, 4, 3\)"):
        m.forward(np.zeros((5, 4, 3), np.float32))


def test_channels_last_batch_gets_a_hint():
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\), got shape \(2, 28, 28, 1\).*channels-last.*transpose\(0, 3, 1, 2\)"):
        lenet().predict(np.zeros((2, 28, 28, 1), np.float32))


# --- PyTorch parity -------------------------------------------------------------------------------

@needs_torch
def test_state_dict_keys_match_torch_and_torch_weights_load(rng):
    tm = torch_lenet()
    m = lenet()
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict(tm.state_dict())
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.predict(x), want, rtol=1e-4, atol=1e-4)


@needs_torch
@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
def test_one_training_step_matches_torch(opt, rng):
    torch.manual_seed(0)
    tm = torch_lenet()
    m = lenet()
    m.load_state_dict(tm.state_dict())
    if opt == "sgd_momentum":
        topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
        m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
    else:
        topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
        m.compile(optimizer=cnnkit.optim.Adam(learning_rate=1e-3), loss="cross_entropy")
    for step in range(2):  # the second step exercises the momentum / moment buffers
        x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, 16)
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        topt.step()
        logs = m.train_on_batch(x, y)
        assert abs(logs["loss"] - loss.item()) < 1e-4
        for k, v in tm.state_dict().items():
            np.testing.assert_allclose(m.state_dict()[k], v.numpy(), rtol=1e-4, atol=1e-4, err_msg=f"{k} step {step}")


def test_load_state_dict_checks_keys_and_shapes():
    m = lenet()
    sd = m.state_dict()
    before = m.state_dict()
    bad = dict(sd, **{"0.weight": np.zeros((6, 1, 3, 3))})
    with pytest.raises(ValueError, match=r"0.weight has shape \(6, 1, 3, 3\), the model expects \(6, 1, 5, 5\)"):
        m.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "3.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['3.bias'\]"):
        m.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['99.weight'\]"):
        m.load_state_dict(dict(sd, **{"99.weight": np.zeros(3)}))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])  # nothing changed by the failed loads
    assert m.load_state_dict(missing, strict=False)["missing_keys"] == ["3.bias"]


def test_state_dict_is_a_copy():
    m = lenet()
    sd = m.state_dict()
    sd["0.weight"][...] = 0
    assert np.abs(m.layers[0].params["weight"]).sum() > 0


# --- training -----------------------------------------------------------------------------------

def test_fit_learns_and_reports_keras_history(rng):
    cnnkit.set_random_seed(0)
    x, y = blobs(rng)
    m = cnnkit.Sequential([L.Linear(8, 16), L.ReLU(), L.Linear(16, 3)])
    m.compile(optimizer=cnnkit.optim.Adam(learning_rate=0.01), loss="cross_entropy", metrics=["accuracy"])
    h = m.fit(x, y, batch_size=32, epochs=15, verbose=0, validation_split=0.25)
    assert set(h.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(h.history["loss"]) == 15 and h.history["loss"][-1] < h.history["loss"][0]
    assert h.history["val_accuracy"][-1] > 0.9
    results = m.evaluate(x, y)
    assert set(results) == {"loss", "accuracy"} and results["accuracy"] > 0.9
    assert m.history is h


def test_fit_batches_are_the_shuffled_rows(rng):
    # fit gathers each batch into a reused array (np.take with mode="clip"): the same steps as
    # train_on_batch on the rows of the permutation fit draws, bit for bit
    x, y = blobs(rng, n=70)
    models = []
    for _ in range(2):
        cnnkit.set_random_seed(3)
        m = cnnkit.Sequential([L.Linear(8, 16), L.ReLU(), L.Linear(16, 3)])
        m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.1, momentum=0.9), loss="cross_entropy")
        models.append(m)
    cnnkit.set_random_seed(5)
    models[0].fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=True)
    cnnkit.set_random_seed(5)
    order = cnnkit._random.generator().permutation(len(x))
    for start in range(0, len(x), 32):
        idx = order[start:start + 32]
        models[1].train_on_batch(x[idx], y[idx])
    for k, v in models[0].state_dict().items():
        np.testing.assert_array_equal(v, models[1].state_dict()[k], err_msg=k)


def test_fit_with_one_hot_labels_and_validation_data(rng):
    x, y = blobs(rng)
    onehot = np.eye(3, dtype=np.float32)[y]
    m = cnnkit.Sequential([L.Linear(8, 3)])
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.1), loss="cross_entropy", metrics=["accuracy"])
    h = m.fit(x[:200], onehot[:200], epochs=3, batch_size=16, verbose=0, validation_data=(x[200:], onehot[200:]))
    assert h.history["val_accuracy"][-1] > 0.8


def test_same_seed_gives_bit_identical_training(rng):
    x = rng.standard_normal((300, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 4, 300)

    def run():
        cnnkit.set_random_seed(123)
        m = cnnkit.Sequential([L.Conv2d(1, 4, 3), L.ReLU(), L.MaxPool2d(2), L.Dropout(0.2), L.Flatten(),
                               L.Linear(100, 4)], input_shape=(1, 12, 12))
        m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
        m.fit(x, y, batch_size=32, epochs=2, verbose=0)
        return m.state_dict()

    a, b = run(), run()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_modes_switch_automatically_and_are_restored(rng):
    x, y = blobs(rng, n=64)
    m = cnnkit.Sequential([L.Linear(8, 8), L.Dropout(0.5), L.Linear(8, 3)])
    m.compile(optimizer="sgd", loss="cross_entropy")
    m.eval()
    m.fit(x, y, epochs=1, verbose=0)
    assert not m.training and not m.layers[1].training  # restored
    m.train()
    p1, p2 = m.predict(x), m.predict(x)  # predict runs in eval mode: no dropout, deterministic
    np.testing.assert_array_equal(p1, p2)
    assert m.training
    a, b = m.forward(x), m.forward(x)  # by hand, in training mode: dropout differs
    assert not np.array_equal(a, b)


def test_modes_set_on_single_layers_are_still_switched(rng, monkeypatch):
    # predict switches only the layers whose forward depends on the mode, and only those not
    # in evaluation mode already: a layer switched on its own (or in a nested block) is run in
    # evaluation mode, then gets its own mode back.
    x = rng.standard_normal((16, 8)).astype(np.float32)
    inner = cnnkit.Sequential([L.Dropout(0.5)])
    m = cnnkit.Sequential([L.Linear(8, 8), L.Dropout(0.5), inner, L.Linear(8, 3)]).eval()
    want = m.predict(x)
    for layer in (m.layers[1], inner.layers[0]):
        layer.train()
        np.testing.assert_array_equal(m.predict(x), want)
        assert layer.training  # its own mode, given back
        layer.eval()
    calls = []
    monkeypatch.setattr(L.Layer, "train", lambda self, mode=True: calls.append(self) or self)
    np.testing.assert_array_equal(m.predict(x), want)
    # (batches of up to 4 rows run linear as dot products: the same up to rounding)
    np.testing.assert_allclose(m.predict(x[:3], batch_size=2), want[:3], rtol=1e-5, atol=1e-6)
    assert calls == []  # already in evaluation mode throughout: nothing to switch
    monkeypatch.undo()
    m.train()
    switched = []
    monkeypatch.setattr(L.Dropout, "training", property(lambda self: self.__dict__["_training"],
                        lambda self, v: switched.append(v) or self.__dict__.__setitem__("_training", v)))
    np.testing.assert_array_equal(m.predict(x), want)
    assert switched == [False, False, True, True]  # the two dropouts only, there and back
    assert m.training and m.layers[0].training and inner.layers[0].training
    out = m.predict(x[:1])
    out[...] = 7  # one batch: still a fresh array
    np.testing.assert_allclose(m.predict(x[:1]), want[:1], rtol=1e-5, atol=1e-6)


def test_predict_matches_forward_for_any_batch_size(rng):
    m = lenet().eval()
    x = rng.standard_normal((70, 1, 28, 28)).astype(np.float32)
    full = m.forward(x)
    for bs in (1, 7, 32, 70, 128):
        np.testing.assert_allclose(m.predict(x, batch_size=bs), full, rtol=1e-5, atol=1e-6)
    assert m.predict(x[:0]).shape == (0, 10)


def test_forward_returns_a_fresh_array(rng):
    m = lenet()
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    a = m.forward(x)
    b = m.forward(x + 1)
    assert not np.shares_memory(a, b) and not np.array_equal(a, b)


def test_backward_gives_the_input_gradient(rng):
    m = cnnkit.Sequential([L.Linear(4, 3)])
    x = rng.standard_normal((5, 4)).astype(np.float32)
    m.forward(x)
    dx = m.backward(np.ones((5, 3), np.float32))
    np.testing.assert_allclose(dx, np.tile(m.layers[0].params["weight"].sum(0), (5, 1)), rtol=1e-6)


def test_a_training_step_allocates_no_large_buffers(rng):
    m = lenet()
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.01, momentum=0.9), loss="cross_entropy")
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    for _ in range(3):
        m.train_on_batch(x, y)  # warm up: buffers allocated once
    tracemalloc.start()
    for _ in range(5):
        m.train_on_batch(x, y)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # a single fresh conv1 output would be 64*6*28*28*4 = 1.2 MB
    assert peak < 200_000, f"a training step allocated {peak} bytes"


def test_fit_errors(rng):
    m = lenet()
    x = np.zeros((10, 1, 28, 28), np.float32)
    with pytest.raises(RuntimeError, match=r"compile"):
        m.fit(x, np.zeros(10))
    m.compile(optimizer="sgd", loss="cross_entropy")
    with pytest.raises(ValueError, match=r"x has 10 samples but y has 9"):
        m.fit(x, np.zeros(9, np.int64))
    with pytest.raises(ValueError, match=r"batch_size must be >= 1"):
        m.fit(x, np.zeros(10, np.int64), batch_size=0)
    with pytest.raises(TypeError, match=r"epochs must be an int"):
        m.fit(x, np.zeros(10, np.int64), epochs=1.5)
    with pytest.raises(ValueError, match=r"validation_split must be in \[0, 1\)"):
        m.fit(x, np.zeros(10, np.int64), validation_split=1.0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        m.fit(x, np.full(10, 10), verbose=0)


def test_terminate_on_nan_stops_training(rng, capsys):
    x, y = blobs(rng, n=64)
    x[10] = np.nan
    m = cnnkit.Sequential([L.Linear(8, 3)])
    m.compile(optimizer="sgd", loss="cross_entropy")
    h = m.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False,
              callbacks=[cnnkit.callbacks.TerminateOnNaN()])
    assert len(h.history["loss"]) == 1
    assert "nan" in capsys.readouterr().out.lower()


def test_in_place_activations_change_no_result_and_no_caller_array(rng, monkeypatch):
    """Inside a model an activation overwrites the output array of the layer before (when
    that layer's backward does not read it) and, in backward, the gradient array of the layer
    after; results equal those without, and arrays the caller passed are kept."""
    def build():
        cnnkit.set_random_seed(5)
        return cnnkit.Sequential([L.ReLU(), L.Linear(6, 5), L.ReLU(), L.Linear(5, 4), L.Tanh(),
                                  L.Dropout(0.5), L.Sigmoid(), L.Linear(4, 3), L.ReLU()]).eval()
    x = rng.standard_normal((7, 6)).astype(np.float32)
    g = rng.standard_normal((7, 3)).astype(np.float32)
    keep_x, keep_g = x.copy(), g.copy()
    m = build()
    y = m.forward(x)
    dx = m.backward(g)
    np.testing.assert_array_equal(x, keep_x)  # the first layer got the caller's array
    np.testing.assert_array_equal(g, keep_g)  # the last layer got the caller's array
    assert m.layers[2]._input_is_scratch and not m.layers[6]._input_is_scratch  # Tanh's output is kept
    assert m.layers[2]._grad_is_scratch and m.layers[4]._grad_is_scratch
    monkeypatch.setattr(L.Layer, "_owns", lambda self, grad: False)
    monkeypatch.setattr(L.Layer, "_owns_output", lambda self, y: False)
    plain = build()
    np.testing.assert_array_equal(plain.forward(x), y)
    np.testing.assert_array_equal(plain.backward(g), dx)
    for a, b in zip(m.layers, plain.layers):
        for k in a.grads:
            np.testing.assert_array_equal(a.grads[k], b.grads[k])


def test_fused_relu_max_pool_trains_bit_for_bit_like_the_two_layers(rng, monkeypatch):
    """A model runs ReLU + MaxPool2d as one pass (_stages); training with and without the
    fusion (and the in-place activations) gives the same parameters bit for bit."""
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    x[0, 0, :4, :4] = -0.0  # ties at zero after the ReLU
    y = rng.integers(0, 10, 16)

    def train():
        cnnkit.set_random_seed(11)
        m = lenet()
        m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
        for _ in range(3):
            m.train_on_batch(x, y)
        m.forward(x)
        return m, m.backward(np.ones((16, 10), np.float32))

    fused, dx = train()
    assert [f for _, f, _ in fused._stages] == [False, True, False, True] + [False] * 6
    monkeypatch.setattr(cnnkit.Sequential, "_plan_stages",
                        lambda self: [(layer, False, True) for layer in self._layers])
    monkeypatch.setattr(L.Layer, "_owns", lambda self, grad: False)
    monkeypatch.setattr(L.Layer, "_owns_output", lambda self, y: False)
    plain, dx_plain = train()
    np.testing.assert_array_equal(dx, dx_plain)
    for k, v in fused.state_dict().items():
        assert v.tobytes() == plain.state_dict()[k].tobytes(), k


def test_subclassed_layers_get_no_in_place_neighbours(rng):
    """A subclass of a cnnkit layer may keep its output or gradient arrays: the activations
    next to it compute into their own arrays."""
    class KeepsOutput(L.Linear):
        def forward(self, x):
            self.kept = super().forward(x)
            return self.kept

    m = cnnkit.Sequential([KeepsOutput(4, 3), L.ReLU()])
    m.layers[0].params["weight"][...] = -1.0
    m.layers[0].params["bias"][...] = 0.0
    y = m.forward(np.ones((5, 4), np.float32))
    assert not m.layers[1]._input_is_scratch
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(m.layers[0].kept, -4.0)  # not overwritten by the ReLU
