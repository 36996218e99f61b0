"""Layers made of layers: the Container base (Sequential is one), Residual (y = block(x) +
shortcut(x)) and Concat (branches joined on channels, as an inception module).

Containers nest freely. Their state_dict keys are the children's keys prefixed with the child's
name, PyTorch-style ("3.block.0.weight"). Setting ``trainable``, ``training``, ``input_grad`` or
``reuse_buffers`` on a container sets it on everything inside. The sums and copies that join
branches run in C++ (``_core.add``, ``_core.concat``).
"""
import numpy as np

from . import _core
from .layers import LAYER_TYPES, Layer

__all__ = ["Container", "Residual", "Concat", "leaves", "named_arrays", "layer_spec", "layer_from_spec"]


def _propagated(name):
    """A container's boolean setting that is set on every child too (trainable, input_grad)."""
    private = f"_{name}_setting"

    def setter(self, value):
        setattr(self, private, bool(value))
        self._propagate(name, bool(value))

    return property(lambda self: getattr(self, private), setter)


class Container(Layer):
    """A layer whose work is done by named child layers."""

    def __init__(self):
        super().__init__()
        self._children = []  # [(name, layer)]

    def named_children(self):
        return list(self._children)

    # Bumped whenever any container gains, loses or replaces a child, so that a model can
    # cache what it found by walking its tree (Sequential._mode_leaves).
    _structure_version = 0

    def _adopt(self, name, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"{type(self).__name__}: expected a cnnkit Layer, got {type(layer).__name__}")
        if any(layer is l for l in leaves(self)) or layer is self:
            raise ValueError(f"layer {layer!r} is already in this {type(self).__name__}")
        layer.reuse_buffers = True
        layer.training = self.training
        if not self.trainable:
            layer.trainable = False
        self._children.append((name, layer))
        Container._structure_version += 1

    # Settings that apply to everything inside.
    def _propagate(self, attr, value):
        for _, child in getattr(self, "_children", ()):
            setattr(child, attr, value)

    trainable = _propagated("trainable")

    @property
    def reuse_buffers(self):
        return self._reuse_buffers

    @reuse_buffers.setter
    def reuse_buffers(self, value):
        # children always reuse (the container owns the flow); the flag says whether this
        # container is itself driven by a parent
        self._reuse_buffers = bool(value)

    def train(self, mode=True):
        self.training = bool(mode)
        for _, child in self._children:
            child.train(mode)
        return self

    def count_params(self):
        return int(sum(child.count_params() for _, child in self._children))

    def _summary_inputs(self, input_shape):
        """(label, child, the child's input shape) for Sequential.summary(): by default every
        child sees the container's input (true of Residual's and Concat's branches)."""
        return [(name, child, input_shape) for name, child in self._children]

    def get_config(self):
        return {"children": [layer_spec(child) for _, child in self._children]}

    def __repr__(self):
        inner = "\n".join(f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._children)
        return f"{type(self).__name__}(\n{inner}\n)" if inner else f"{type(self).__name__}()"


# --- walking trees of layers ------------------------------------------------------------------------

def leaves(layer):
    """The non-container layers inside layer (itself if it is one), depth first."""
    if isinstance(layer, Container):
        for _, child in layer.named_children():
            yield from leaves(child)
    else:
        yield layer


def named_arrays(layer, prefix=""):
    """(key, live array) for every parameter and buffer inside layer, PyTorch's state_dict
    order and keys: a layer's params, then its buffers; a container's children in order,
    each under "<prefix><child name>."."""
    if isinstance(layer, Container):
        for name, child in layer.named_children():
            yield from named_arrays(child, f"{prefix}{name}.")
    else:
        for key, value in layer.params.items():
            yield prefix + key, value
        for key, value in getattr(layer, "buffers", {}).items():
            yield prefix + key, value


def layer_spec(layer):
    """What save() stores for a layer: its type, constructor config, name and trainable flag
    (containers' configs hold their children's specs)."""
    return {"type": type(layer).__name__, "config": layer.get_config(), "name": layer.name,
            "trainable": bool(layer.trainable)}


def layer_from_spec(spec):
    """Rebuild a layer from layer_spec's output, using only cnnkit's registry of layer types."""
    cls = LAYER_TYPES.get(spec["type"])
    if cls is None:
        raise ValueError(f"unknown layer type {spec['type']!r}")
    layer = cls.from_config(spec["config"])
    layer.name = spec.get("name")
    layer.trainable = bool(spec.get("trainable", True))
    return layer


# --- residual connections ---------------------------------------------------------------------------

class Residual(Container):
    """y = block(x) + shortcut(x). The shortcut defaults to the identity, or, when the block
    changes the shape of a (C, H, W) input, to a projection: a 1x1 convolution with the
    block's stride and no bias, then BatchNorm2d (ResNet's downsample), built when the input
    shape is first known."""

    def __init__(self, block, shortcut=None):
        super().__init__()
        self._adopt("block", block)
        self._explicit_shortcut = shortcut is not None
        if shortcut is not None:
            self._adopt("shortcut", shortcut)

    @property
    def block(self):
        return self._children[0][1]

    @property
    def shortcut(self):
        """The shortcut layer, or None for the identity."""
        return self._children[1][1] if len(self._children) > 1 else None

    input_grad = _propagated("input_grad")

    def _projection(self, input_shape, block_shape):
        from .layers import BatchNorm2d, Conv2d
        if len(input_shape) != 3 or len(block_shape) != 3:
            raise ValueError(f"Residual: the block maps {tuple(input_shape)} to {tuple(block_shape)}; "
                             "give a shortcut that does the same (a projection is only built for (C, H, W))")
        (c_in, h, w), (c_out, oh, ow) = input_shape, block_shape
        stride = (max(1, -(-h // oh)), max(1, -(-w // ow)))
        projection = _sequential([Conv2d(c_in, c_out, 1, stride=stride, bias=False), BatchNorm2d(c_out)])
        if tuple(projection.output_shape(input_shape)) != tuple(block_shape):
            raise ValueError(f"Residual: no 1x1 projection maps {tuple(input_shape)} to {tuple(block_shape)}; "
                             "give the shortcut explicitly")
        return projection

    def output_shape(self, input_shape):
        out = tuple(self.block.output_shape(input_shape))
        if self.shortcut is None and out != tuple(input_shape):
            self._adopt("shortcut", self._projection(input_shape, out))
            self.shortcut.input_grad = self.input_grad
        if self.shortcut is not None:
            short = tuple(self.shortcut.output_shape(input_shape))
            if short != out:
                raise ValueError(f"Residual: block output {out} and shortcut output {short} differ")
        return out

    def forward(self, x):
        if self.shortcut is None and not getattr(self, "_checked_shape", None) == np.shape(x)[1:]:
            self.output_shape(np.shape(x)[1:])  # builds the projection when shapes change
            self._checked_shape = np.shape(x)[1:]
        yb = self.block.forward(x)
        ys = x if self.shortcut is None else self.shortcut.forward(x)
        out = self._out("y", np.shape(yb)) if self.reuse_buffers else None
        return _core.add(yb, ys, out=out)

    def backward(self, grad_output):
        # the children must not overwrite grad_output: the shortcut reads it after the block
        gb = self.block.backward(grad_output)
        gs = grad_output if self.shortcut is None else self.shortcut.backward(grad_output)
        if not self.input_grad:
            return None
        return _core.add(gb, gs, out=self._out("dx", np.shape(gb)) if self.reuse_buffers else None)

    def get_config(self):
        return {"block": layer_spec(self.block),
                "shortcut": layer_spec(self.shortcut) if self._explicit_shortcut else None}

    @classmethod
    def from_config(cls, config):
        shortcut = config.get("shortcut")
        return cls(layer_from_spec(config["block"]), None if shortcut is None else layer_from_spec(shortcut))


# --- branches joined on channels --------------------------------------------------------------------

class Concat(Container):
    """Runs every branch on the same input and concatenates their outputs along the channels
    (axis 1), as GoogLeNet's inception module joins its four branches."""

    def __init__(self, *branches):
        super().__init__()
        if len(branches) == 1 and isinstance(branches[0], (list, tuple)):
            branches = tuple(branches[0])
        if not branches:
            raise ValueError("Concat needs at least one branch")
        for i, branch in enumerate(branches):
            self._adopt(str(i), branch)

    @property
    def branches(self):
        return [child for _, child in self._children]

    input_grad = _propagated("input_grad")

    def output_shape(self, input_shape):
        shapes = [tuple(b.output_shape(input_shape)) for b in self.branches]
        rest = {s[1:] for s in shapes}
        if len(rest) != 1:
            raise ValueError(f"Concat: branch outputs {shapes} differ in more than their channels")
        return (sum(s[0] for s in shapes),) + shapes[0][1:]

    def forward(self, x):
        outs = [b.forward(x) for b in self.branches]
        self._sizes = [np.shape(o)[1] for o in outs]
        shape = (np.shape(outs[0])[0], sum(self._sizes)) + tuple(np.shape(outs[0])[2:])
        return _core.concat(outs, out=self._out("y", shape) if self.reuse_buffers else None)

    def backward(self, grad_output):
        parts = _core.concat_backward(grad_output, self._sizes)
        grads = [b.backward(g) for b, g in zip(self.branches, parts)]
        if not self.input_grad:
            return None
        total = grads[0]
        if len(grads) > 1:
            total = _core.add(grads[0], grads[1], out=self._out("dx", np.shape(grads[0])) if self.reuse_buffers
                              else None)
            for g in grads[2:]:
                total = _core.add(total, g, out=total)
        return total

    def get_config(self):
        return {"branches": [layer_spec(b) for b in self.branches]}

    @classmethod
    def from_config(cls, config):
        return cls(*[layer_from_spec(s) for s in config["branches"]])


def _sequential(layers):
    from .model import Sequential
    return Sequential(layers)
