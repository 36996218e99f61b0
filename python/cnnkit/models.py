"""Model zoo: the classic architectures as Sequential models, with torchvision's layer structure
and the published parameter counts at 1000 classes.

Blocks are containers, so the structure shows in ``summary()`` and in the state_dict keys: a
torchvision submodule becomes a nested Sequential at the same place (AlexNet's ``features``,
``avgpool``, ``classifier`` are children 0, 1, 2; ResNet's ``layer1.0.conv1`` is stage 4, block
0, ``.0.block.0``; its ``downsample`` is the Residual's ``shortcut``).

Every constructor takes ``input_shape`` (without the batch). The ImageNet models default to
(3, 224, 224) and take other sizes down to the minimum their docstring names; the adaptive
average pool before the classifier makes the head independent of the input size.
``input_shape=None`` lets the model take its size from the first batch.
"""
from . import layers as L
from .model import Sequential

__all__ = ["lenet5", "alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "resnet_small", "googlenet",
           "MODELS"]

IMAGENET_SHAPE = (3, 224, 224)


def _check_args(name, num_classes, input_shape):
    """num_classes and input_shape checked before any weight is drawn (VGG-16 draws 138M)."""
    L._positive(num_classes, 1, "num_classes", name)
    if input_shape is not None:
        try:
            shape = Sequential._shape_arg(input_shape)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: {e}") from None
        if len(shape) != 3:
            raise ValueError(f"{name}: input_shape must be (C, H, W), got {shape}")


def lenet5(num_classes=10, input_shape=(1, 28, 28)):
    """LeNet-5 as in DESIGN.md (ReLU and max pooling, 'same'-padded first conv for 28x28 MNIST):
    61,706 parameters at 10 classes."""
    _check_args("lenet5", num_classes, input_shape)
    return Sequential([
        L.Conv2d(input_shape[0], 6, 5, padding=2), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(6, 16, 5), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
        L.Linear(16 * 5 * 5, 120), L.ReLU(), L.Linear(120, 84), L.ReLU(), L.Linear(84, num_classes),
    ], input_shape=input_shape, name="lenet5")


# --- AlexNet and VGG: convolutions, then an adaptive pool and a dense classifier ----------------

def alexnet(num_classes=1000, input_shape=IMAGENET_SHAPE, dropout=0.5):
    """AlexNet as torchvision builds it (one tower, Krizhevsky's 'one weird trick' widths
    64-192-384-256-256): 61,100,840 parameters at 1000 classes. Children: features (0),
    AdaptiveAvgPool2d(6) (1), flatten (2), classifier (3). Smallest input: 63x63."""
    _check_args("alexnet", num_classes, input_shape)
    features = Sequential([
        L.Conv2d(3, 64, 11, stride=4, padding=2), L.ReLU(), L.MaxPool2d(3, 2),
        L.Conv2d(64, 192, 5, padding=2), L.ReLU(), L.MaxPool2d(3, 2),
        L.Conv2d(192, 384, 3, padding=1), L.ReLU(),
        L.Conv2d(384, 256, 3, padding=1), L.ReLU(),
        L.Conv2d(256, 256, 3, padding=1), L.ReLU(), L.MaxPool2d(3, 2),
    ], name="features")
    classifier = Sequential([
        L.Dropout(dropout), L.Linear(256 * 6 * 6, 4096), L.ReLU(),
        L.Dropout(dropout), L.Linear(4096, 4096), L.ReLU(),
        L.Linear(4096, num_classes),
    ], name="classifier")
    return Sequential([features, L.AdaptiveAvgPool2d(6), L.Flatten(), classifier],
                      input_shape=input_shape, name="alexnet")


VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(num_classes=1000, input_shape=IMAGENET_SHAPE, dropout=0.5):
    """VGG-16 (configuration D, no batch norm) as torchvision builds it: 13 3x3 convolutions in
    five stages, each closed by a 2x2 max pool, AdaptiveAvgPool2d(7), three dense layers:
    138,357,544 parameters at 1000 classes. Children: features (0), avgpool (1), flatten (2),
    classifier (3). Smallest input: 32x32."""
    _check_args("vgg16", num_classes, input_shape)
    layers, c_in = [], input_shape[0] if input_shape else 3
    for v in VGG16_CONFIG:
        if v == "M":
            layers.append(L.MaxPool2d(2, 2))
        else:
            layers += [L.Conv2d(c_in, v, 3, padding=1), L.ReLU()]
            c_in = v
    classifier = Sequential([
        L.Linear(512 * 7 * 7, 4096), L.ReLU(), L.Dropout(dropout),
        L.Linear(4096, 4096), L.ReLU(), L.Dropout(dropout),
        L.Linear(4096, num_classes),
    ], name="classifier")
    return Sequential([Sequential(layers, name="features"), L.AdaptiveAvgPool2d(7), L.Flatten(), classifier],
                      input_shape=input_shape, name="vgg16")


# --- ResNet ---------------------------------------------------------------------------------------

def _conv_bn(c_in, c_out, kernel_size, stride=1, padding=0):
    """A bias-free convolution and the BatchNorm2d after it (the bias would be cancelled by the
    normalisation's mean)."""
    return [L.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False), L.BatchNorm2d(c_out)]


def _projection(c_in, c_out, stride):
    """ResNet's downsample shortcut: 1x1 convolution with the block's stride, then BatchNorm2d;
    None (the identity) when the block keeps the shape."""
    if stride == 1 and c_in == c_out:
        return None
    return Sequential(_conv_bn(c_in, c_out, 1, stride), name="shortcut")


def basic_block(c_in, c_out, stride=1, name="basic_block"):
    """ResNet-18/34's block: relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)), the stride
    on the first 3x3."""
    body = Sequential(_conv_bn(c_in, c_out, 3, stride, 1) + [L.ReLU()] + _conv_bn(c_out, c_out, 3, 1, 1))
    return Sequential([L.Residual(body, _projection(c_in, c_out, stride)), L.ReLU()], name=name)


def bottleneck(c_in, width, stride=1, name="bottleneck", expansion=4):
    """ResNet-50's block, torchvision's v1.5: 1x1 down to width, 3x3 with the stride, 1x1 up to
    expansion * width; batch norm after each, ReLU after the first two and after the sum."""
    c_out = width * expansion
    body = Sequential(_conv_bn(c_in, width, 1) + [L.ReLU()]
                      + _conv_bn(width, width, 3, stride, 1) + [L.ReLU()]
                      + _conv_bn(width, c_out, 1))
    return Sequential([L.Residual(body, _projection(c_in, c_out, stride)), L.ReLU()], name=name)


def _resnet(name, block, blocks_per_stage, num_classes, input_shape, expansion):
    """The ImageNet ResNet: stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages of blocks at
    widths 64-128-256-512 (stride 2 at the first block of stages 2-4), global average pool,
    linear. Stages are named layer1..layer4 as torchvision's."""
    _check_args(name, num_classes, input_shape)
    c_in = input_shape[0] if input_shape else 3
    layers = _conv_bn(c_in, 64, 7, 2, 3) + [L.ReLU(), L.MaxPool2d(3, 2, 1)]
    c_in = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
        blocks = []
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            if block is bottleneck:
                blocks.append(bottleneck(c_in, width, stride, name=f"bottleneck{i}"))
            else:
                blocks.append(basic_block(c_in, width, stride, name=f"basic_block{i}"))
            c_in = width * expansion
        layers.append(Sequential(blocks, name=f"layer{stage + 1}"))
    layers += [L.AdaptiveAvgPool2d(1), L.Flatten(), L.Linear(c_in, num_classes)]
    return Sequential(layers, input_shape=input_shape, name=name)


def resnet18(num_classes=1000, input_shape=IMAGENET_SHAPE):
    """ResNet-18 (He et al. 2015), torchvision's layout: 11,689,512 parameters at 1000 classes.
    Any input of at least 1x1 runs (the last stage sees 1x1 maps below 33x33); 224x224 gives
    7x7 before the pool."""
    return _resnet("resnet18", basic_block, (2, 2, 2, 2), num_classes, input_shape, 1)


def resnet34(num_classes=1000, input_shape=IMAGENET_SHAPE):
    """ResNet-34, torchvision's layout: 21,797,672 parameters at 1000 classes. Input sizes as
    resnet18."""
    return _resnet("resnet34", basic_block, (3, 4, 6, 3), num_classes, input_shape, 1)


def resnet50(num_classes=1000, input_shape=IMAGENET_SHAPE):
    """ResNet-50 with torchvision's v1.5 bottleneck (the stride on the 3x3, not the first 1x1):
    25,557,032 parameters at 1000 classes. Input sizes as resnet18."""
    return _resnet("resnet50", bottleneck, (3, 4, 6, 3), num_classes, input_shape, 4)


def resnet_small(num_classes=10, in_channels=1, widths=(16, 32, 64), blocks_per_stage=(2, 2, 2),
                 input_shape=None):
    """The CIFAR-style ResNet of He et al. section 4.2 for small images (Fashion-MNIST, CIFAR):
    3x3 stem conv + BN + ReLU at widths[0], a stage of basic blocks per width (stride 2 at the
    first block of every stage after the first, 1x1 projection shortcuts where the shape
    changes), global average pool, linear. blocks_per_stage=(3, 3, 3) is ResNet-20. input_shape
    defaults to (in_channels, 28, 28)."""
    _check_args("resnet_small", num_classes, input_shape)
    if len(widths) != len(blocks_per_stage):
        raise ValueError(f"resnet_small: widths {tuple(widths)} and blocks_per_stage {tuple(blocks_per_stage)} "
                         "must have one entry per stage")
    input_shape = (in_channels, 28, 28) if input_shape is None else input_shape
    layers = _conv_bn(in_channels, widths[0], 3, 1, 1) + [L.ReLU()]
    c_in = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks_per_stage)):
        blocks = [basic_block(c_in if i == 0 else width, width, 2 if stage > 0 and i == 0 else 1,
                              name=f"basic_block{i}") for i in range(count)]
        layers.append(Sequential(blocks, name=f"stage{stage + 1}"))
        c_in = width
    layers += [L.AdaptiveAvgPool2d(1), L.Flatten(), L.Linear(c_in, num_classes)]
    return Sequential(layers, input_shape=input_shape, name="resnet_small")


# --- GoogLeNet ----------------------------------------------------------------------------------

def basic_conv2d(c_in, c_out, kernel_size, stride=1, padding=0):
    """torchvision's BasicConv2d: bias-free conv, BatchNorm2d(eps=0.001), ReLU."""
    return Sequential([L.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
                       L.BatchNorm2d(c_out, eps=0.001), L.ReLU()], name="basic_conv2d")


def inception(c_in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, name="inception"):
    """An inception module: four branches joined on channels (1x1; 1x1 -> 3x3; 1x1 -> 3x3;
    3x3/1 max pool -> 1x1). The third branch's second convolution is 3x3 where the paper has
    5x5: torchvision's known deviation (pytorch/vision#906), kept for its parameter count."""
    module = L.Concat(
        basic_conv2d(c_in, ch1x1, 1),
        Sequential([basic_conv2d(c_in, ch3x3red, 1), basic_conv2d(ch3x3red, ch3x3, 3, padding=1)]),
        Sequential([basic_conv2d(c_in, ch5x5red, 1), basic_conv2d(ch5x5red, ch5x5, 3, padding=1)]),
        Sequential([L.MaxPool2d(3, 1, 1), basic_conv2d(c_in, pool_proj, 1)]),
    )
    module.name = name
    return module


def _ceil_max_pool(kernel_size, stride):
    """torchvision's MaxPool2d(kernel_size, stride, ceil_mode=True) for GoogLeNet's downsampling
    pools. cnnkit's pool has no ceil_mode; padding="same" (the extra padding after, counted as
    -inf) gives the same windows, so the same outputs, whenever the pool's input size is even:
    at every pool for inputs divisible by 16 (224 included). For odd sizes a 3x3/2 pool's output
    is one larger than ceil_mode's; a 2x2/2 pool always matches."""
    return L.MaxPool2d(kernel_size, stride, padding="same")


def googlenet(num_classes=1000, input_shape=IMAGENET_SHAPE, dropout=0.2):
    """GoogLeNet (Inception v1) as torchvision builds it without the auxiliary heads
    (aux_logits=False, transform_input=False): batch norm after every convolution, nine
    inception modules, global average pool, dropout, linear: 6,624,904 parameters at 1000
    classes. The downsampling max pools match torchvision's ceil_mode for inputs divisible by
    16 (see _ceil_max_pool). Any input of at least 1x1 runs; 224x224 gives 7x7 before the pool."""
    _check_args("googlenet", num_classes, input_shape)
    c_in = input_shape[0] if input_shape else 3
    return Sequential([
        _named(basic_conv2d(c_in, 64, 7, stride=2, padding=3), "conv1"),
        _ceil_max_pool(3, 2),
        _named(basic_conv2d(64, 64, 1), "conv2"),
        _named(basic_conv2d(64, 192, 3, padding=1), "conv3"),
        _ceil_max_pool(3, 2),
        inception(192, 64, 96, 128, 16, 32, 32, "inception3a"),
        inception(256, 128, 128, 192, 32, 96, 64, "inception3b"),
        _ceil_max_pool(3, 2),
        inception(480, 192, 96, 208, 16, 48, 64, "inception4a"),
        inception(512, 160, 112, 224, 24, 64, 64, "inception4b"),
        inception(512, 128, 128, 256, 24, 64, 64, "inception4c"),
        inception(512, 112, 144, 288, 32, 64, 64, "inception4d"),
        inception(528, 256, 160, 320, 32, 128, 128, "inception4e"),
        _ceil_max_pool(2, 2),
        inception(832, 256, 160, 320, 32, 128, 128, "inception5a"),
        inception(832, 384, 192, 384, 48, 128, 128, "inception5b"),
        L.AdaptiveAvgPool2d(1), L.Flatten(), L.Dropout(dropout), L.Linear(1024, num_classes),
    ], input_shape=input_shape, name="googlenet")


def _named(layer, name):
    layer.name = name
    return layer


MODELS = {"lenet5": lenet5, "alexnet": alexnet, "vgg16": vgg16, "resnet18": resnet18, "resnet34": resnet34,
          "resnet50": resnet50, "resnet_small": resnet_small, "googlenet": googlenet}
