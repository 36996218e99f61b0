"""The model zoo: published parameter counts, torchvision's layer structure (checked through
shapes: every block's output shape at 224x224, the shapes of the weights), small inputs through
the adaptive pool, summaries, num_classes, save/load, and the command line's summary.

Full 224x224 passes of the big models would take seconds each: forward passes use the smallest
inputs the architectures allow, and the 224x224 checks use output_shape, which computes no
arithmetic. Each default model is built once (VGG-16 alone takes seconds to initialise)."""
import functools

import numpy as np
import pytest

import cnnkit
from cnnkit import cli, models
from cnnkit import layers as L
from cnnkit.containers import Concat, Residual

PUBLISHED = {  # torchvision's counts at 1000 classes (LeNet-5 and resnet_small: 10)
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "googlenet": 6_624_904,
    "resnet_small": 174_970,
}

# name -> the input side of the forward passes: the smallest the architecture takes (AlexNet)
# or the smallest that leaves the last stage 1x1 maps
SMALL_INPUT = {"alexnet": 63, "vgg16": 32, "resnet18": 32, "resnet34": 32, "resnet50": 32, "googlenet": 32}


@functools.lru_cache(maxsize=None)
def default_model(name):
    return models.MODELS[name]()


def test_every_model_is_in_models():
    assert set(models.MODELS) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_count(name):
    m = default_model(name)
    assert m.count_params() == PUBLISHED[name]
    # batch norm's running statistics are buffers: in the state_dict, not in the count
    assert sum(v.size for k, v in m.state_dict().items()
               if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))) == PUBLISHED[name]


def layer_shapes(model, input_shape):
    """{child name: output shape} of the top-level children, from output_shape (no arithmetic)."""
    shapes, shape = {}, tuple(input_shape)
    for layer in model.layers:
        shape = tuple(layer.output_shape(shape))
        shapes[layer.name] = shape
    return shapes


@pytest.mark.parametrize("name, widths", [("resnet18", (64, 128, 256, 512)), ("resnet34", (64, 128, 256, 512)),
                                          ("resnet50", (256, 512, 1024, 2048))])
def test_resnet_stage_shapes_at_224(name, widths):
    shapes = layer_shapes(default_model(name), (3, 224, 224))
    assert shapes["conv2d"] == (64, 112, 112) and shapes["max_pool2d"] == (64, 56, 56)
    for i, (width, side) in enumerate(zip(widths, (56, 28, 14, 7))):
        assert shapes[f"layer{i + 1}"] == (width, side, side)
    assert shapes["adaptive_avg_pool2d"] == (widths[-1], 1, 1)


@pytest.mark.parametrize("name, blocks", [("resnet18", (2, 2, 2, 2)), ("resnet34", (3, 4, 6, 3)),
                                          ("resnet50", (3, 4, 6, 3))])
def test_resnet_blocks_are_residuals_with_torchvision_shapes(name, blocks):
    m = default_model(name)
    stages = [l for l in m.layers if l.name.startswith("layer")]
    assert [len(s.layers) for s in stages] == list(blocks)
    for s, stage in enumerate(stages):
        for i, block in enumerate(stage.layers):
            residual, relu = block.layers
            assert isinstance(residual, Residual) and isinstance(relu, L.ReLU)
            convs = [l for l in residual.block.layers if isinstance(l, L.Conv2d)]
            bns = [l for l in residual.block.layers if isinstance(l, L.BatchNorm2d)]
            assert len(convs) == len(bns) == (3 if name == "resnet50" else 2)
            assert all("bias" not in c.params for c in convs)
            stride = 2 if s > 0 and i == 0 else 1
            # the stride sits on the first 3x3 (v1.5 for the bottleneck) and on the shortcut
            first = next(j for j, c in enumerate(convs) if c.kernel_size == (3, 3))
            assert [c.stride for c in convs] == [(stride, stride) if j == first else (1, 1) for j in range(len(convs))]
            projects = i == 0 and (s > 0 or name == "resnet50")
            assert (residual.shortcut is not None) == projects
            if projects:
                conv, bn = residual.shortcut.layers
                assert conv.kernel_size == (1, 1) and conv.stride == (stride, stride) and "bias" not in conv.params
                assert isinstance(bn, L.BatchNorm2d)


def test_resnet50_bottleneck_weights():
    sd = default_model("resnet50").state_dict()
    # layer2.0 of torchvision: conv1 (128, 256, 1, 1), conv2 (128, 128, 3, 3), conv3 (512, 128, 1, 1),
    # downsample.0 (512, 256, 1, 1)
    assert sd["5.0.0.block.0.weight"].shape == (128, 256, 1, 1)
    assert sd["5.0.0.block.3.weight"].shape == (128, 128, 3, 3)
    assert sd["5.0.0.block.6.weight"].shape == (512, 128, 1, 1)
    assert sd["5.0.0.shortcut.0.weight"].shape == (512, 256, 1, 1)
    assert sd["5.0.0.shortcut.1.running_var"].shape == (512,)
    assert sd["10.weight"].shape == (1000, 2048)
    # torchvision's resnet50 state_dict has 320 entries: 53 convs, 53 batch norms of 5, fc's 2
    assert len(sd) == 320


def test_googlenet_shapes_at_224_are_torchvisions():
    # the sizes torchvision's GoogLeNet._forward notes after each stage
    shapes = layer_shapes(default_model("googlenet"), (3, 224, 224))
    want = {"conv1": (64, 112, 112), "max_pool2d": (64, 56, 56), "conv2": (64, 56, 56), "conv3": (192, 56, 56),
            "max_pool2d_1": (192, 28, 28), "inception3a": (256, 28, 28), "inception3b": (480, 28, 28),
            "max_pool2d_2": (480, 14, 14), "inception4a": (512, 14, 14), "inception4b": (512, 14, 14),
            "inception4c": (512, 14, 14), "inception4d": (528, 14, 14), "inception4e": (832, 14, 14),
            "max_pool2d_3": (832, 7, 7), "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7),
            "adaptive_avg_pool2d": (1024, 1, 1), "linear": (1000,)}
    assert {k: shapes[k] for k in want} == want


def test_googlenet_inception_module_structure():
    m = default_model("googlenet")
    module = next(l for l in m.layers if l.name == "inception4e")
    assert isinstance(module, Concat) and len(module.branches) == 4
    assert [b.output_shape((528, 14, 14))[0] for b in module.branches] == [256, 320, 128, 128]
    sd = m.state_dict()
    # torchvision's 3x3 (not 5x5) in the third branch; BasicConv2d: bias-free conv, BN(eps=0.001)
    convs = [l for l in cnnkit.containers.leaves(module) if isinstance(l, L.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1), (1, 1), (3, 3), (1, 1), (3, 3), (1, 1)]
    assert all("bias" not in c.params for c in convs)
    bns = [l for l in cnnkit.containers.leaves(m) if isinstance(l, L.BatchNorm2d)]
    assert len(bns) == 57 and all(bn.eps == 0.001 for bn in bns)
    assert len(sd) == 344  # torchvision's googlenet(aux_logits=False) state_dict


def ceil_mode_max_pool(x, k, s):
    """float64 reference of torch's max_pool2d(x, k, s, ceil_mode=True) without padding."""
    n, c, h, w = x.shape
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return y


@pytest.mark.parametrize("k, s, side", [(3, 2, 112), (3, 2, 14), (2, 2, 14), (2, 2, 7)])
def test_googlenet_pools_are_ceil_mode_at_even_sizes(k, s, side, rng):
    """GoogLeNet's downsampling pools: padding="same" stands in for ceil_mode=True (see
    models._ceil_max_pool): the same windows at even sizes, and always for the 2x2 pool."""
    x = rng.standard_normal((1, 2, side, side)).astype(np.float32)
    pool = models._ceil_max_pool(k, s)
    np.testing.assert_array_equal(pool.forward(x), ceil_mode_max_pool(x, k, s))


@pytest.mark.parametrize("name, shape", [("alexnet", (256, 6, 6)), ("vgg16", (512, 7, 7))])
def test_features_and_classifier_at_224(name, shape):
    m = default_model(name)
    features, pool, _, classifier = m.layers
    assert features.output_shape((3, 224, 224)) == shape
    assert pool.output_shape(shape) == shape  # the adaptive pool is the identity at 224x224
    assert [type(l).__name__ for l in classifier.layers].count("Dropout") == 2
    assert [l.out_features for l in classifier.layers if isinstance(l, L.Linear)] == [4096, 4096, 1000]


def test_vgg16_has_thirteen_3x3_convolutions_in_five_stages():
    features = default_model("vgg16").layers[0]
    convs = [l for l in features.layers if isinstance(l, L.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(l, L.MaxPool2d) for l in features.layers) == 5


@pytest.mark.parametrize("name", sorted(SMALL_INPUT))
def test_small_input_and_num_classes_change_only_the_head(name, rng):
    side = SMALL_INPUT[name]
    small = models.MODELS[name](num_classes=10, input_shape=(3, side, side))
    big = default_model(name).state_dict()
    sd = small.state_dict()
    assert list(sd) == list(big)
    changed = [k for k in sd if sd[k].shape != big[k].shape]
    head = [k for k in sd if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))][-2:]
    assert changed == head and sd[head[0]].shape[0] == 10
    assert small.count_params() == PUBLISHED[name] - 990 * (sd[head[0]].shape[1] + 1)
    y = small.predict(rng.standard_normal((2, 3, side, side)).astype(np.float32))
    assert y.shape == (2, 10) and np.isfinite(y).all()


def test_alexnet_is_too_small_below_63x63():
    with pytest.raises(ValueError, match="does not fit|kernel|larger"):
        models.alexnet(input_shape=(3, 62, 62))


@pytest.mark.parametrize("name, rows", [
    # rows as printed: a leading space, then two spaces per level of nesting
    ("resnet18", [" layer1 (Sequential)", "   basic_block1 (Sequential)", "     residual (Residual)",
                  "       block (Sequential)", "         conv2d (Conv2d)", "       shortcut (Sequential)",
                  "(None, 512, 7, 7)", "Total params: 11,689,512"]),
    ("resnet50", ["   bottleneck5 (Sequential)", "         conv2d_2 (Conv2d)", "(None, 2048, 7, 7)"]),
    ("googlenet", [" inception5b (Concat)", " conv1 (Sequential)", "   batch_norm2d (BatchNorm2d)",
                   "     basic_conv2d (Sequential)", "(None, 1024, 7, 7)", "Total params: 6,624,904"]),
    ("alexnet", [" features (Sequential)", "   conv2d_4 (Conv2d)", " classifier (Sequential)",
                 "(None, 256, 6, 6)"]),
])
def test_summary_shows_the_blocks(name, rows):
    lines = default_model(name).summary(print_fn=None).splitlines()
    for row in rows:
        assert any(line.startswith(row) for line in lines) or any(row in line for line in lines
                                                                  if row.startswith("(") or "params" in row), row


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_cli_summary(name, capsys, monkeypatch):
    # the command builds MODELS[name]() itself; hand it the already-built default model
    monkeypatch.setitem(models.MODELS, name, lambda: default_model(name))
    assert cli.main(["summary", name]) == 0
    assert f"Total params: {PUBLISHED[name]:,}" in capsys.readouterr().out


def test_resnet_small_structure():
    m = models.resnet_small()
    shapes = layer_shapes(m, (1, 28, 28))
    assert (shapes["stage1"], shapes["stage2"], shapes["stage3"]) == ((16, 28, 28), (32, 14, 14), (64, 7, 7))
    assert models.resnet_small(blocks_per_stage=(3, 3, 3), in_channels=3,
                               input_shape=(3, 32, 32)).count_params() == 272_474  # ResNet-20 with projections
    with pytest.raises(ValueError, match="one entry per stage"):
        models.resnet_small(widths=(16, 32), blocks_per_stage=(2, 2, 2))


def test_resnet_small_trains_and_round_trips_through_save(tmp_path, rng):
    cnnkit.set_random_seed(0)
    m = models.resnet_small(widths=(4, 8, 8), blocks_per_stage=(1, 1, 1))
    m.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.1, momentum=0.9), loss="cross_entropy",
              metrics=["accuracy"])
    x = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    losses = [m.train_on_batch(x, y)["loss"] for _ in range(5)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    m.save(tmp_path / "r.cnnkit")
    m2 = cnnkit.load_model(tmp_path / "r.cnnkit")
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:  # running statistics included
        np.testing.assert_array_equal(sd[k], sd2[k], err_msg=k)
    np.testing.assert_array_equal(m.predict(x), m2.predict(x))
    assert m2.summary(print_fn=None) == m.summary(print_fn=None)


def torch_resnet_small(torch, widths, blocks):
    """resnet_small written in torch.nn, parameters and buffers in the same order as cnnkit's
    state_dict (block, then shortcut; conv, then BN)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
            self.short = (nn.Identity() if stride == 1 and c_in == c_out else
                          nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    layers = [nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    c_in = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            layers.append(Block(c_in, width, 2 if stage > 0 and i == 0 else 1))
            c_in = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 10)]
    return nn.Sequential(*layers)


def test_resnet_small_matches_torch_in_training_and_evaluation(rng):
    """Residual blocks, projection shortcuts, batch norm (batch statistics, running statistics,
    eval mode) and the adaptive pool together: the logits, the loss, two SGD steps and the
    running statistics agree with the same network in PyTorch."""
    torch = pytest.importorskip("torch")
    widths, blocks = (4, 8, 8), (2, 1, 1)
    cnnkit.set_random_seed(5)
    ours = models.resnet_small(widths=widths, blocks_per_stage=blocks)
    ours.compile(optimizer=cnnkit.optim.SGD(learning_rate=0.1, momentum=0.9), loss="cross_entropy")
    theirs = torch_resnet_small(torch, widths, blocks).double()
    sd = ours.state_dict()
    assert len(sd) == len(theirs.state_dict())
    with torch.no_grad():
        for (key, value), (tkey, tvalue) in zip(sd.items(), theirs.state_dict().items()):
            assert value.shape == tuple(tvalue.shape), (key, tkey)
            tvalue.copy_(torch.from_numpy(np.asarray(value)))
    opt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    x = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 6)
    for _ in range(2):
        loss = ours.train_on_batch(x, y)["loss"]
        opt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x).double()), torch.from_numpy(y))
        tloss.backward()
        opt.step()
        assert loss == pytest.approx(tloss.item(), rel=1e-4)
    for (key, value), tvalue in zip(ours.state_dict().items(), theirs.state_dict().values()):
        np.testing.assert_allclose(value, tvalue.numpy(), rtol=1e-3, atol=1e-4, err_msg=key)
    theirs.eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(ours.predict(x), expected, rtol=1e-3, atol=1e-4)


def test_predict_runs_batch_norm_in_evaluation_mode_and_changes_no_statistics(rng):
    """predict on a model in training mode (as after fit) switches the batch norms inside
    residual blocks and their projections, leaves their running statistics alone and gives
    every layer its mode back."""
    cnnkit.set_random_seed(2)
    m = models.resnet_small(widths=(4, 8, 8), blocks_per_stage=(1, 1, 1))
    x = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
    before = m.state_dict()
    assert m.training
    got = m.predict(x)
    assert m.training and all(layer.training for layer in cnnkit.containers.leaves(m))
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    m.eval()
    np.testing.assert_array_equal(m.predict(x), got)
    m.train()
    m.compile(optimizer="sgd", loss="cross_entropy")
    m.train_on_batch(x, rng.integers(0, 10, 6))  # training mode again: statistics move
    assert not np.array_equal(m.state_dict()["0.weight"], before["0.weight"])
    assert not np.array_equal(m.state_dict()["1.running_mean"], before["1.running_mean"])
