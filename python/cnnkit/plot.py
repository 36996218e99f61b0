"""Seeing what a network learned: its convolution kernels, the feature maps of one image, and
the training curves. Needs matplotlib (``pip install cnnkit[plot]``), imported only when a
function here is called.

Each function returns a matplotlib Figure made with pyplot and never calls ``show()``: in a
script call ``plt.show()`` or ``fig.savefig(path)``; in a notebook the figure appears when the
cell ends.
"""
import math

import numpy as np

__all__ = ["filters", "feature_maps", "history"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("cnnkit.plot needs matplotlib: pip install cnnkit[plot] (or pip install matplotlib)") from e
    return plt


def _grid(n, ncols):
    """(rows, columns) of a grid for n panels: about square unless ncols is given."""
    if ncols is None:
        ncols = max(1, math.ceil(math.sqrt(n)))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(int(ncols), max(n, 1))
    return max(1, math.ceil(n / ncols)), ncols


def _scaled(a):
    """a mapped linearly onto [0, 1] by its own minimum and maximum (a constant array: 0.5)."""
    a = np.asarray(a, np.float64)
    lo, hi = a.min(), a.max()
    return np.full_like(a, 0.5) if hi == lo else (a - lo) / (hi - lo)


def filter_images(weight, channel=None):
    """The images filters() draws for conv weights (OC, C, KH, KW): (OC, KH, KW) grayscale, or
    (OC, KH, KW, 3) RGB when C == 3 and no channel is chosen, each kernel scaled to [0, 1] by
    its own range. C > 1 otherwise: input channel `channel`, or the mean over the channels."""
    w = np.asarray(weight)
    if w.ndim != 4:
        raise ValueError(f"filters: expected conv weights (out_channels, in_channels, KH, KW), got shape {w.shape}")
    c = w.shape[1]
    if channel is not None:
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not -c <= channel < c:
            raise ValueError(f"filters: channel must be an int in [0, {c}), got {channel!r}")
        w = w[:, channel]
    elif c == 3:
        return np.stack([_scaled(k) for k in w.transpose(0, 2, 3, 1)])
    else:
        w = w.mean(axis=1)
    return np.stack([_scaled(k) for k in w])


def filters(layer, ncols=None, channel=None):
    """A grid of a Conv2d's kernels, one panel per output channel, each scaled to its own
    range. 1-channel kernels are grayscale, 3-channel ones RGB (the input channels as red,
    green, blue), others show input channel `channel` or, by default, the mean over the input
    channels. layer: a Conv2d or its weight array (OC, C, KH, KW). Returns the Figure."""
    plt = _pyplot()
    weight = layer if isinstance(layer, np.ndarray) else getattr(layer, "params", {}).get("weight")
    if weight is None or np.ndim(weight) != 4:
        raise TypeError(f"filters: expected a Conv2d or its 4-D weight array, got {type(layer).__name__}")
    images = filter_images(weight, channel)
    n = len(images)
    rows, cols = _grid(n, ncols)
    fig = plt.figure(figsize=(1.1 * cols + 0.4, 1.1 * rows + 0.6))
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, cmap=None if image.ndim == 3 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(str(i), fontsize=8)
        ax.set_axis_off()
    oc, c, kh, kw = np.shape(weight)
    shown = "RGB" if images.ndim == 4 else (f"input channel {channel}" if channel is not None
                                            else ("mean over input channels" if c > 1 else "grayscale"))
    fig.suptitle(f"{oc} filters, {c}x{kh}x{kw} ({shown}; each scaled to its own range)", fontsize=9)
    return fig


# --- activations ------------------------------------------------------------------------------------

def _children(layer):
    return layer.named_children() if hasattr(layer, "named_children") else []


def _contains(container, target):
    return any(child is target or _contains(child, target) for _, child in _children(container))


def _find(model, layer):
    """The layer object that `layer` names: an index into model.layers, a top-level layer's
    name, a dotted path of child keys as in state_dict's keys ("4.0.0.block.0"), or the layer."""
    from .layers import Layer
    top = model.layers
    if isinstance(layer, Layer):
        if layer is model or not _contains(model, layer):
            raise ValueError(f"feature_maps: {layer!r} is not a layer of this model")
        return layer
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(top) <= layer < len(top):
            raise ValueError(f"feature_maps: layer index {layer} is out of range for {len(top)} layers")
        return top[layer]
    if isinstance(layer, str):
        for child in top:
            if child.name == layer:
                return child
        node = model
        for key in layer.split("."):
            node = dict(_children(node)).get(key)
            if node is None:
                break
        if node is not None:
            return node
        names = ", ".join(repr(c.name) for c in top)
        raise ValueError(f"feature_maps: no layer {layer!r}; the top-level layers are {names} "
                         "(or give a dotted path as in state_dict's keys)")
    raise TypeError(f"feature_maps: layer must be an index, a name or a layer, got {type(layer).__name__}")


def _run_to(container, x, target):
    """(found, output): the output of target for input x of container, running only the layers
    on the way to it: in a Sequential the layers before it in turn; in a Residual or Concat the
    one branch that holds it (each branch sees the container's input)."""
    from .model import Sequential
    for _, child in _children(container):
        if child is target:
            return True, child.forward(x)
        if _contains(child, target):
            return _run_to(child, x, target)
        if isinstance(container, Sequential):
            x = child.forward(x)
    return False, x


def activations(model, x, layer):
    """The output of `layer` (see feature_maps) for one image x, (C, H, W) or (1, C, H, W),
    without the batch dimension; computed in evaluation mode, a fresh float32 array."""
    target = _find(model, layer)
    x = np.asarray(x, np.float32)
    if x.ndim >= 1 and model.input_shape is not None and x.shape == tuple(model.input_shape):
        x = x[None]
    if x.ndim < 2 or x.shape[0] != 1:
        raise ValueError(f"feature_maps: expected one image {tuple(model.input_shape or ('C', 'H', 'W'))} or a "
                         f"batch of one, got shape {x.shape}")
    x = model._check_input(np.ascontiguousarray(x))
    with model._Mode(model, False):
        _, out = _run_to(model, x, target)
    return np.array(out[0], dtype=np.float32, copy=True)


def feature_maps(model, x, layer, ncols=None):
    """The activations of one image x at a layer of model: one panel per channel of a
    (C, H, W) output, each with its own colour range; a bar chart for a flat (F,) output.
    layer: an index into model.layers, a top-level layer's name, the layer object (nested in a
    block or not), or a dotted path of child keys as in state_dict's keys. The model runs in
    evaluation mode up to and including that layer. Returns the Figure."""
    plt = _pyplot()
    maps = activations(model, x, layer)
    target = _find(model, layer)
    label = f"{target.name or type(target).__name__} ({type(target).__name__})"
    if maps.ndim == 1:
        fig = plt.figure(figsize=(6, 3))
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(np.arange(len(maps)), maps)
        ax.set_xlabel("feature")
        fig.suptitle(f"output of {label}, {len(maps)} features", fontsize=9)
        return fig
    if maps.ndim != 3:
        raise ValueError(f"feature_maps: {label} outputs shape {maps.shape}; expected (C, H, W) maps or (F,)")
    rows, cols = _grid(len(maps), ncols)
    fig = plt.figure(figsize=(1.3 * cols + 0.4, 1.3 * rows + 0.6))
    for i, m in enumerate(maps):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(m, cmap="viridis", interpolation="nearest")
        ax.set_title(str(i), fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"feature maps of {label}: {maps.shape[0]} x {maps.shape[1]}x{maps.shape[2]}", fontsize=9)
    return fig


# --- training curves --------------------------------------------------------------------------------

def history(history):
    """Training curves from fit's History (or its .history dict): one panel per quantity
    (loss, accuracy, ...), the training values and, when present, the validation ones
    (val_...), against the epoch (from 1). The learning rate a LearningRateScheduler records
    is left out. Returns the Figure."""
    plt = _pyplot()
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError("history: expected a History or its non-empty dict of per-epoch lists")
    names = []
    for key in logs:
        name = key[len("val_"):] if key.startswith("val_") else key
        if name != "learning_rate" and name not in names:
            names.append(name)
    names.sort(key=lambda n: n != "loss")  # loss first, then the metrics in logged order
    fig = plt.figure(figsize=(4.5 * len(names), 3.4))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, label, style in ((name, "train", "-o"), (f"val_{name}", "validation", "-s")):
            if key in logs:
                values = np.asarray(logs[key], np.float64)
                ax.plot(np.arange(1, len(values) + 1), values, style, label=label, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
