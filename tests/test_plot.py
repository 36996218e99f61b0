"""cnnkit.plot, headless: the figures' panels and image data (the kernels each scaled to their
own range, the activations of the chosen layer), the training curves, and the install hint
without matplotlib."""
import sys

import numpy as np
import pytest

import cnnkit
from cnnkit import layers as L
from cnnkit import models

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cnnkit import plot  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def scaled(a):
    a = np.asarray(a, np.float64)
    return (a - a.min()) / (a.max() - a.min())


def images(fig):
    return [ax.images[0].get_array() for ax in fig.axes if ax.images]


def test_filters_of_a_one_channel_conv_are_grayscale_and_scaled_per_kernel():
    cnnkit.set_random_seed(0)
    conv = L.Conv2d(1, 6, 5)
    fig = plot.filters(conv)
    assert isinstance(fig, Figure) and len(fig.axes) == 6
    for i, img in enumerate(images(fig)):
        np.testing.assert_allclose(img, scaled(conv.params["weight"][i, 0]), rtol=0, atol=1e-12)
        assert img.min() == 0 and img.max() == 1
    assert all(ax.images[0].get_cmap().name == "gray" for ax in fig.axes)


def test_filters_of_a_three_channel_conv_are_rgb():
    conv = L.Conv2d(3, 4, 3)
    fig = plot.filters(conv, ncols=2)
    assert len(fig.axes) == 4 and fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)
    for i, img in enumerate(images(fig)):
        assert img.shape == (3, 3, 3)  # KH, KW, RGB
        np.testing.assert_allclose(img, scaled(conv.params["weight"][i].transpose(1, 2, 0)), atol=1e-12)


def test_filters_of_a_many_channel_conv_show_the_mean_or_one_channel():
    conv = L.Conv2d(5, 3, 3)
    w = conv.params["weight"]
    mean_imgs = images(plot.filters(conv))
    chan_imgs = images(plot.filters(conv, channel=2))
    for i in range(3):
        np.testing.assert_allclose(mean_imgs[i], scaled(w[i].mean(axis=0)), atol=1e-6)
        np.testing.assert_allclose(chan_imgs[i], scaled(w[i, 2]), atol=1e-12)
    with pytest.raises(ValueError, match="channel must be an int in"):
        plot.filters(conv, channel=5)
    # a constant kernel is drawn mid-grey, not divided by zero
    conv.params["weight"][0] = 1.0
    assert np.all(images(plot.filters(conv))[0] == 0.5)


def test_filters_rejects_what_is_not_a_conv():
    with pytest.raises(TypeError, match="Conv2d"):
        plot.filters(L.Linear(3, 4))
    with pytest.raises(ValueError, match="ncols"):
        plot.filters(L.Conv2d(1, 2, 3), ncols=0)


def small_net():
    cnnkit.set_random_seed(1)
    return cnnkit.Sequential([
        L.Conv2d(1, 4, 3, padding=1), L.ReLU(), L.MaxPool2d(2),
        L.Residual(cnnkit.Sequential([L.Conv2d(4, 4, 3, padding=1), L.ReLU(), L.Conv2d(4, 4, 3, padding=1)])),
        L.Flatten(), L.Dropout(0.5), L.Linear(4 * 4 * 4, 3),
    ], input_shape=(1, 8, 8))


def test_feature_maps_by_index_name_and_layer(rng):
    m = small_net()
    x = rng.standard_normal((1, 8, 8)).astype(np.float32)
    conv, relu = m.layers[0], m.layers[1]
    want = np.maximum(conv.forward(x[None])[0], 0)
    for which in (1, "re_lu", relu, -6):
        fig = plot.feature_maps(m, x, which)
        assert isinstance(fig, Figure) and len(fig.axes) == 4
        for i, img in enumerate(images(fig)):
            np.testing.assert_array_equal(img, want[i])
    # a batch of one works as well; the output of the whole residual block
    residual = plot.activations(m, x[None], 3)
    np.testing.assert_allclose(residual, m.layers[3].forward(m.layers[2].forward(want[None]))[0], rtol=1e-6)


def test_feature_maps_inside_a_block(rng):
    m = small_net()
    x = rng.standard_normal((1, 8, 8)).astype(np.float32)
    inner = m.layers[3].block.layers[1]  # the ReLU inside the residual block
    h = m.layers[2].forward(m.layers[1].forward(m.layers[0].forward(x[None])))
    want = np.maximum(m.layers[3].block.layers[0].forward(h), 0)[0]
    np.testing.assert_array_equal(plot.activations(m, x, inner), want)
    np.testing.assert_array_equal(plot.activations(m, x, "3.block.1"), want)  # state_dict-style path
    assert len(plot.feature_maps(m, x, inner).axes) == 4


def test_feature_maps_run_in_evaluation_mode_and_restore_the_mode(rng):
    m = small_net()
    x = rng.standard_normal((1, 8, 8)).astype(np.float32)
    assert m.training
    logits = plot.activations(m, x, -1)
    np.testing.assert_allclose(logits, m.predict(x[None])[0], rtol=1e-6)  # no dropout
    assert m.training
    fig = plot.feature_maps(m, x, "linear")  # flat output: one bar chart
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 3


def test_feature_maps_of_a_zoo_resnet(rng):
    m = models.resnet_small(widths=(4, 8, 8), blocks_per_stage=(1, 1, 1))
    x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
    fig = plot.feature_maps(m, x, "stage2", ncols=4)
    assert len(fig.axes) == 8 and images(fig)[0].shape == (14, 14)


def test_feature_maps_errors(rng):
    m = small_net()
    x = rng.standard_normal((1, 8, 8)).astype(np.float32)
    with pytest.raises(ValueError, match="out of range"):
        plot.feature_maps(m, x, 7)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        plot.feature_maps(m, x, "nope")
    with pytest.raises(ValueError, match="not a layer of this model"):
        plot.feature_maps(m, x, L.ReLU())
    with pytest.raises(ValueError, match="one image"):
        plot.feature_maps(m, np.zeros((2, 1, 8, 8), np.float32), 0)


def test_history_curves(rng):
    m = models.lenet5()
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.01), loss="cross_entropy", metrics=["accuracy"])
    x = rng.standard_normal((16, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    h = m.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=[cnnkit.callbacks.LearningRateScheduler(lambda epoch: 0.01)])
    fig = plot.history(h)
    assert isinstance(fig, Figure) and [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    lines = fig.axes[0].get_lines()
    assert [l.get_label() for l in lines] == ["train", "validation"]
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines[1].get_ydata(), h.history["val_loss"])
    # the dict works as well, without validation curves
    fig = plot.history({"loss": [2.0, 1.0]})
    assert len(fig.axes) == 1 and len(fig.axes[0].get_lines()) == 1
    with pytest.raises(ValueError, match="History"):
        plot.history({})


def test_without_matplotlib_an_install_hint(monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install cnnkit\[plot\].*pip install matplotlib"):
        plot.filters(L.Conv2d(1, 2, 3))
    with pytest.raises(ImportError, match=r"cnnkit\[plot\]"):
        plot.history({"loss": [1.0]})


def test_importing_cnnkit_does_not_import_matplotlib():
    import subprocess
    from helpers import child_env
    code = "import sys, cnnkit, cnnkit.plot; print('matplotlib' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
