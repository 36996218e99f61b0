"""Containers: Residual, Concat and nested Sequential against the float64 references (composed
from the gradchecked reference ops) and against the same network in PyTorch (state_dict keys,
outputs, and one training step), plus trainable/input_grad propagation, summary and save/load."""
import numpy as np
import pytest

import cnnkit
import reference as ref
from cnnkit import layers as L
from helpers import assert_close, exact_ints, needs_torch, torch


def conv_block(c_in, c_out, stride=1):
    return cnnkit.Sequential([L.Conv2d(c_in, c_out, 3, stride=stride, padding=1), L.ReLU(),
                              L.Conv2d(c_out, c_out, 3, padding=1)])


def test_residual_identity_against_reference(rng):
    block = conv_block(3, 3)
    res = L.Residual(block)
    for layer in block.layers:
        for k in layer.params:
            layer.params[k][...] = exact_ints(rng, *layer.params[k].shape) / 4
    x = exact_ints(rng, 2, 3, 6, 5)
    y = res.forward(x)
    w1, b1 = (block.layers[0].params[k].astype(np.float64) for k in ("weight", "bias"))
    w2, b2 = (block.layers[2].params[k].astype(np.float64) for k in ("weight", "bias"))
    pads = (1, 1, 1, 1)
    h = ref.relu(ref.conv2d(x, w1, b1, pads=pads))
    want = ref.conv2d(h, w2, b2, pads=pads) + x
    assert_close(y, want, 1e-6, 1e-6, "y")
    dy = exact_ints(rng, *y.shape)
    dx = res.backward(dy)
    dh, dw2, db2 = ref.conv2d_backward(dy, h, w2, pads=pads)
    dx_block, dw1, db1 = ref.conv2d_backward(ref.relu_backward(dh, h), x, w1, pads=pads)
    assert_close(dx, dx_block + dy, 1e-6, 1e-6, "dx")
    for got, want, name in [(block.layers[0].grads["weight"], dw1, "dw1"), (block.layers[0].grads["bias"], db1, "db1"),
                            (block.layers[2].grads["weight"], dw2, "dw2"), (block.layers[2].grads["bias"], db2, "db2")]:
        assert_close(got, want, 1e-5, 1e-5, name)


def test_concat_against_reference(rng):
    cat = L.Concat(L.Conv2d(2, 3, 1), L.Conv2d(2, 4, 3, padding=1), L.MaxPool2d(3, 1, 1))
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    y = cat.forward(x)
    assert y.shape == (2, 3 + 4 + 2, 5, 5) and cat.output_shape((2, 5, 5)) == (9, 5, 5)
    c1, c2 = cat.branches[0], cat.branches[1]
    parts = [ref.conv2d(x, c1.params["weight"], c1.params["bias"]),
             ref.conv2d(x, c2.params["weight"], c2.params["bias"], pads=(1, 1, 1, 1)),
             ref.max_pool2d(x, (3, 3), (1, 1), (1, 1, 1, 1))[0]]
    assert_close(y, np.concatenate(parts, axis=1), 1e-5, 1e-6, "y")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = cat.backward(dy)
    _, idx = ref.max_pool2d(x, (3, 3), (1, 1), (1, 1, 1, 1))
    want = (ref.conv2d_backward(dy[:, :3], x, c1.params["weight"])[0]
            + ref.conv2d_backward(dy[:, 3:7], x, c2.params["weight"], pads=(1, 1, 1, 1))[0]
            + ref.max_pool2d_backward(dy[:, 7:], idx, x.shape))
    assert_close(dx, want, 1e-4, 1e-5, "dx")


def test_concat_rejects_mismatched_branches():
    cat = L.Concat(L.Conv2d(2, 3, 1), L.Conv2d(2, 3, 3))
    with pytest.raises(ValueError, match="differ in more than their channels"):
        cnnkit.Sequential([cat], input_shape=(2, 8, 8))


def test_residual_rejects_a_mismatched_shortcut():
    with pytest.raises(ValueError, match=r"block output \(4, 8, 8\) and shortcut output \(3, 8, 8\) differ"):
        cnnkit.Sequential([L.Residual(conv_block(2, 4), shortcut=L.Conv2d(2, 3, 1))], input_shape=(2, 8, 8))


def nested_model():
    cnnkit.set_random_seed(0)
    return cnnkit.Sequential([
        L.Conv2d(1, 4, 3, padding=1), L.ReLU(),
        L.Residual(conv_block(4, 4)), L.ReLU(),
        L.Residual(cnnkit.Sequential([L.Conv2d(4, 6, 3, padding=1)]), shortcut=L.Conv2d(4, 6, 1)),
        L.Concat(L.Conv2d(6, 2, 1), cnnkit.Sequential([L.Conv2d(6, 3, 1), L.ReLU(), L.Conv2d(3, 3, 3, padding=1)])),
        L.MaxPool2d(2), L.Flatten(), L.Linear(5 * 4 * 4, 3),
    ], input_shape=(1, 8, 8))


def test_nested_state_dict_keys():
    keys = list(nested_model().state_dict())
    assert keys[:2] == ["0.weight", "0.bias"]
    assert "2.block.0.weight" in keys and "2.block.2.bias" in keys
    assert "4.block.0.weight" in keys and "4.shortcut.weight" in keys
    assert "5.0.weight" in keys and "5.1.2.weight" in keys and keys[-1] == "8.bias"


def torch_nested():
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block = block
            self.shortcut = shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    class Concat(nn.Module):
        def __init__(self, *branches):
            super().__init__()
            for i, b in enumerate(branches):
                self.add_module(str(i), b)

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], dim=1)

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1))

    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        Residual(block(4, 4)), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)), shortcut=nn.Conv2d(4, 6, 1)),
        Concat(nn.Conv2d(6, 2, 1), nn.Sequential(nn.Conv2d(6, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1))),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5 * 4 * 4, 3))


@needs_torch
def test_nested_network_matches_torch_forward_and_training_step(rng):
    torch.manual_seed(0)
    tm = torch_nested()
    m = nested_model()
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict(tm.state_dict())
    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 6)
    with torch.no_grad():
        np.testing.assert_allclose(m.predict(x), tm(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.1, momentum=0.9), loss="cross_entropy")
    for _ in range(2):
        topt.zero_grad()
        torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
        m.train_on_batch(x, y)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(m.state_dict()[k], v.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


def test_model_input_gradient_through_blocks_matches_finite_differences(rng):
    """d(sum(out * dy))/dx of the whole nested model, float32 analytic vs float64 central
    differences on a few input elements (loose: float32 forward)."""
    m = nested_model().eval()
    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)
    out = m.forward(x)
    dy = rng.standard_normal(out.shape).astype(np.float32)
    dx = m.backward(dy)
    eps = 1e-2
    for idx in [(0, 0, 3, 4), (0, 0, 0, 0), (0, 0, 7, 2), (0, 0, 5, 5)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num = (np.sum(m.forward(xp).astype(np.float64) * dy) - np.sum(m.forward(xm).astype(np.float64) * dy)) / (2 * eps)
        assert abs(num - dx[idx]) <= 2e-2 * max(1.0, abs(num)), (idx, num, dx[idx])


def test_trainable_and_input_grad_propagate_into_blocks(rng):
    m = nested_model()
    res = m.layers[2]
    res.trainable = False
    assert all(not l.trainable for l in res.block.layers)
    params, _ = m._trainable()
    assert len(params) == len(m.state_dict()) - 4  # the block's two convs' weight and bias
    m.compile(optimizer="sgd", loss="cross_entropy")
    before = {k: v.copy() for k, v in m.state_dict().items()}
    m.train_on_batch(rng.standard_normal((4, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 4))
    after = m.state_dict()
    assert np.array_equal(after["2.block.0.weight"], before["2.block.0.weight"])
    assert not np.array_equal(after["0.weight"], before["0.weight"])
    # a block first in a model gets input_grad off, and passes it on
    first = cnnkit.Sequential([L.Residual(conv_block(1, 1)), L.Flatten(), L.Linear(16, 2)], input_shape=(1, 4, 4))
    first.compile(optimizer="sgd", loss="cross_entropy")
    first.train_on_batch(np.ones((2, 1, 4, 4), np.float32), [0, 1])
    assert not first.layers[0].input_grad and not first.layers[0].block.layers[0].input_grad


def test_summary_shows_blocks_indented():
    text = nested_model().summary(print_fn=None)
    lines = text.splitlines()
    assert any(l.startswith(" residual (Residual)") and "(None, 4, 8, 8)" in l for l in lines)
    assert any(l.startswith("   block (Sequential)") for l in lines)
    assert any(l.startswith("     conv2d (Conv2d)") for l in lines)
    assert any(l.startswith("   shortcut (Conv2d)") and "(None, 6, 8, 8)" in l for l in lines)
    assert any(l.startswith(" concat (Concat)") and "(None, 5, 8, 8)" in l for l in lines)
    total = nested_model().count_params()
    assert f"Total params: {total:,}" in lines


def test_nested_model_save_load_round_trip(tmp_path, rng):
    m = nested_model()
    m.compile(optimizer="adam", loss="cross_entropy")
    m.fit(rng.standard_normal((16, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 16), epochs=1, verbose=0)
    m.save(tmp_path / "nested.cnnkit")
    m2 = cnnkit.load_model(tmp_path / "nested.cnnkit")
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(m2.predict(x), m.predict(x))
    assert m2.get_config() == m.get_config()
    assert isinstance(m2.layers[4], L.Residual) and isinstance(m2.layers[5], L.Concat)


def test_a_layer_cannot_be_in_a_model_twice():
    conv = L.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match="already in this model"):
        cnnkit.Sequential([L.Residual(cnnkit.Sequential([conv])), conv])


def test_replacing_the_head_and_freezing_for_fine_tuning(rng):
    """Pretrain, freeze the features, replace the head, go on training: the optimizer's state
    restarts when the trainable parameters change, as a recompile does in Keras."""
    cnnkit.set_random_seed(1)
    m = cnnkit.models.lenet5()
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    m.train_on_batch(x, rng.integers(0, 10, 32))
    features = {k: v.copy() for k, v in m.state_dict().items() if int(k.split(".")[0]) < 6}
    for layer in m[:6]:
        layer.trainable = False
    m[-1] = L.Linear(84, 5)
    assert len(m) == 12 and m[-1].name == "linear_2" and m.output_shapes()[-1] == (5,)
    m.train_on_batch(x, rng.integers(0, 5, 32))
    m.train_on_batch(x, rng.integers(0, 5, 32))
    after = m.state_dict()
    for k, v in features.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert after["11.weight"].shape == (5, 84)
    with pytest.raises(ValueError, match=r"layer 11 \(Linear\) does not fit"):
        m[11] = L.Linear(83, 5)
    last = m.pop()
    assert isinstance(last, L.Linear) and len(m) == 11
    m.add(L.Linear(84, 3))
    assert m.output_shapes()[-1] == (3,)


def test_backward_stops_below_the_lowest_trainable_layer(rng, monkeypatch):
    """A frozen feature extractor gets no backward pass (nor does the lowest trainable layer
    compute an input gradient); the trained head moves exactly as with the full backward, and
    unfreezing brings the whole backward back."""
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)

    def model():
        cnnkit.set_random_seed(3)
        m = cnnkit.models.lenet5()
        m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.05, momentum=0.9), loss="cross_entropy")
        for layer in m[:7]:
            layer.trainable = False
        return m

    full = model()
    full[0].trainable = True  # a trainable first layer forces the whole backward
    skipped = model()
    calls = []
    for layer in skipped[:7]:
        monkeypatch.setattr(layer, "backward", lambda g, layer=layer: calls.append(layer) or g)
    full.train_on_batch(x, y)
    skipped.train_on_batch(x, y)
    assert calls == []
    assert skipped[7].input_grad is False and skipped[9].input_grad is True
    for key in ("7.weight", "7.bias", "9.weight", "11.weight"):
        np.testing.assert_array_equal(skipped.state_dict()[key], full.state_dict()[key], err_msg=key)
    monkeypatch.undo()
    for layer in skipped[:7]:
        layer.trainable = True
    before = skipped[0].params["weight"].copy()
    skipped.train_on_batch(x, y)
    assert skipped[7].input_grad is True and skipped[0].input_grad is False
    assert not np.array_equal(skipped[0].params["weight"], before)
