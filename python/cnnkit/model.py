"""Sequential: a stack of layers with Keras's model lifecycle (compile, fit, evaluate,
predict, summary, save) over PyTorch-style layers and state_dict keys.

NumPy in, NumPy out. The arithmetic runs in the C++ core: layers, loss and optimizer each
call it once per step; the loop here only moves references. Layers inside a model reuse their
output and gradient arrays from step to step, and fit gathers each batch into one reused
array, so a training step allocates no large buffers.

Thread safety: a model's layers keep per-step state (reused output arrays, workspaces, what
backward needs, the training/evaluation mode that predict and fit switch), and the core
releases the GIL while it computes, so two threads inside one model would overwrite each
other's arrays. Every entry point (forward/__call__, backward, train_on_batch, fit, evaluate,
predict) therefore holds the model's own lock (re-entrant: callbacks may call predict): calls
on one model from several threads run one at a time and give exactly the serial results;
different models run concurrently. Each call already uses every core (OpenMP).
"""
import functools
import math
import operator
import threading
from collections.abc import Mapping

import numpy as np

from . import _random, callbacks as callbacks_module, losses, metrics as metrics_module, optim
from . import layers as layers_module
from .containers import Container, layer_from_spec, layer_spec, leaves, named_arrays
from .layers import Layer, MaxPool2d, ReLU

__all__ = ["Sequential"]


def _snake(name):
    out = []
    for i, c in enumerate(name):
        if c.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def _summary_rows(label, layer, input_shape, depth, rows):
    """summary() rows of a layer and, indented below it, those of everything inside it."""
    out = None if input_shape is None else tuple(layer.output_shape(input_shape))
    rows.append(("  " * depth + f"{label} ({type(layer).__name__})",
                 "?" if out is None else str((None,) + out), f"{layer.count_params():,}"))
    if isinstance(layer, Container):
        for child_label, child, child_in in layer._summary_inputs(input_shape):
            _summary_rows(child_label, child, child_in, depth + 1, rows)


def _exclusive(method):
    """Runs a Sequential method under the model's lock (see the module's docstring)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return run


def _batch_count(n, batch_size):
    return max(1, math.ceil(n / batch_size)) if n else 0


class Sequential(Container):
    """A linear stack of layers. ``input_shape`` (without the batch dimension) lets the model
    check the layers fit together and infer every output shape before seeing data; without it
    the shapes are inferred from the first batch.

    A Sequential is itself a layer: it nests inside another Sequential, a Residual or a
    Concat, where its children's state_dict keys get its name as prefix (PyTorch's "1.0.weight").
    """

    def __init__(self, layers=None, input_shape=None, name="sequential"):
        super().__init__()
        self.name = name
        self._stages = []  # what _forward runs: (layer, fused, builtin), see _plan_stages
        self.input_shape = None if input_shape is None else self._shape_arg(input_shape)
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.history = None
        self._param_key = None  # ids of the parameters the optimizer's state belongs to
        self._lock = threading.RLock()  # held by every entry point that runs the layers
        for layer in layers or []:
            self.add(layer)

    # --- structure --------------------------------------------------------------------------------

    @staticmethod
    def _shape_arg(shape):
        try:  # operator.index: 2.0 or "28" is a mistake, not a size
            shape = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise TypeError(f"input_shape must be a tuple of ints (without the batch), got {shape!r}") from None
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"input_shape must be non-empty positive sizes (without the batch), got {shape}")
        return shape

    @property
    def layers(self):
        return list(self._layers)

    @property
    def _layers(self):
        return [layer for _, layer in self._children]

    def add(self, layer):
        """Append a layer; with a known input shape, fails at once if it does not fit."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a cnnkit Layer, got {type(layer).__name__}")
        inside = list(leaves(self)) + self._layers
        if any(layer is l for l in inside) or any(l is mine for l in leaves(layer) for mine in inside):
            raise ValueError(f"layer {layer!r} is already in this model")
        self._adopt(str(len(self._children)), layer)
        try:
            if self.input_shape is not None:
                self.output_shapes()
        except ValueError as e:
            self._children.pop()
            raise ValueError(f"layer {len(self._children)} ({type(layer).__name__}) does not fit: {e}") from None
        if layer.name is None:
            base = _snake(type(layer).__name__)
            taken = {l.name for l in self._layers}
            layer.name = base if base not in taken else next(f"{base}_{i}" for i in range(1, 10**6)
                                                             if f"{base}_{i}" not in taken)
        self._stages = self._plan_stages()
        return self

    def _plan_stages(self):
        """The layers as _forward and _backward run them: (layer, False, builtin) for a layer
        on its own; (pool, True, True) for a ReLU followed by a 2-D MaxPool2d, which the pool
        runs in one pass with the same results bit for bit (relu(x) is never written, and its
        gradient costs nothing extra). builtin: a cnnkit layer class itself, whose output and
        gradient arrays the layers next to it may overwrite (see _forward); a subclass might
        keep them for itself."""
        stages, i = [], 0
        while i < len(self._layers):
            layer = self._layers[i]
            if (type(layer) is ReLU and i + 1 < len(self._layers)
                    and type(self._layers[i + 1]) is MaxPool2d):
                stages.append((self._layers[i + 1], True, True))
                i += 2
            else:
                stages.append((layer, False, type(layer).__module__ == layers_module.__name__))
                i += 1
        return stages

    def __len__(self):
        return len(self._children)

    def __getitem__(self, index):
        """The layer at index (a list for a slice), as torch.nn.Sequential."""
        layers = self._layers
        return layers[index]

    def __setitem__(self, index, layer):
        """Replace the layer at index (replacing a model's head for fine-tuning, say); the new
        layer must fit, as with add."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential: expected a cnnkit Layer, got {type(layer).__name__}")
        i = range(len(self._children))[index]
        old_name, old = self._children[i]
        if layer is old:
            return
        if any(layer is l for l in leaves(self)) or any(layer is l for l in self._layers):
            raise ValueError(f"layer {layer!r} is already in this model")
        self._children[i] = (old_name, layer)
        Container._structure_version += 1
        try:
            if self.input_shape is not None:
                self.output_shapes()
        except ValueError as e:
            self._children[i] = (old_name, old)
            raise ValueError(f"layer {i} ({type(layer).__name__}) does not fit: {e}") from None
        layer.reuse_buffers = True
        layer.training = self.training
        if layer.name is None:
            layer.name = old.name if old.name not in {l.name for l in self._layers if l is not layer} else None
            if layer.name is None:
                base = _snake(type(layer).__name__)
                taken = {l.name for l in self._layers}
                layer.name = next(f"{base}_{n}" for n in range(1, 10**6) if f"{base}_{n}" not in taken)
        self._stages = self._plan_stages()

    def pop(self):
        """Remove and return the last layer (Keras's Sequential.pop)."""
        if not self._children:
            raise IndexError("pop from an empty Sequential")
        _, layer = self._children.pop()
        Container._structure_version += 1
        self._stages = self._plan_stages()
        return layer

    def output_shapes(self):
        """Output shape of every layer (without the batch), from input_shape."""
        if self.input_shape is None:
            raise ValueError("the model's input shape is unknown: give input_shape=... or call it on data first")
        shapes, shape = [], self.input_shape
        for layer in self._layers:
            shape = tuple(layer.output_shape(shape))
            shapes.append(shape)
        return shapes

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = tuple(layer.output_shape(shape))
        return shape

    def _summary_inputs(self, input_shape):
        """(label, child, the child's input shape) for summary(): children run one after another."""
        rows, shape = [], input_shape
        for layer in self._layers:
            rows.append((layer.name, layer, shape))
            shape = None if shape is None else tuple(layer.output_shape(shape))
        return rows

    def _trainable(self):
        """(params, grads) of trainable layers, in layer then key order."""
        live = [layer for layer in leaves(self) if layer.trainable]
        return ([p for layer in live for p in layer.params.values()],
                [layer.grads[key] for layer in live for key in layer.params])

    def summary(self, print_fn=print):
        """Keras's table: layer (type), output shape with None for the batch, params; totals.
        A block (a Residual, a Concat, a nested Sequential) is followed by its children,
        indented, each with its own output shape and parameter count."""
        groups = []
        for label, layer, shape in self._summary_inputs(self.input_shape):
            rows = []
            _summary_rows(label, layer, shape, 0, rows)
            groups.append(rows)
        flat = [r for g in groups for r in g]
        w0 = max([28] + [len(r[0]) + 2 for r in flat])
        w1 = max([26] + [len(r[1]) + 2 for r in flat])
        width = w0 + w1 + 12
        trainable = sum(l.count_params() for l in leaves(self) if l.trainable)
        lines = [f'Model: "{self.name}"', "_" * width,
                 f" {'Layer (type)':<{w0 - 1}}{'Output Shape':<{w1}}{'Param #':>10}", "=" * width]
        for i, rows in enumerate(groups):
            lines += [f" {a:<{w0 - 1}}{b:<{w1}}{c:>10}" for a, b, c in rows]
            lines.append("_" * width if i < len(groups) - 1 else "=" * width)
        if not groups:
            lines.append("=" * width)
        lines += [f"Total params: {self.count_params():,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {self.count_params() - trainable:,}", "_" * width]
        text = "\n".join(lines)
        if print_fn is None:
            return text
        print_fn(text)

    # --- modes ----------------------------------------------------------------------------------

    def train(self, mode=True):
        """Training mode (Dropout active) or, with mode=False, evaluation mode."""
        self.training = bool(mode)
        for layer in self._layers:
            layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def _mode_leaves(self):
        """The layers inside whose forward depends on the mode (Dropout, batch norm, user
        layers), cached until a container anywhere changes its children."""
        cached = getattr(self, "_mode_leaves_cache", None)
        if cached is None or cached[0] != Container._structure_version:
            cached = (Container._structure_version, [l for l in leaves(self) if l._mode_dependent])
            self._mode_leaves_cache = cached
        return cached[1]

    class _Mode:
        """Runs a with-block in a mode (predict, evaluate: evaluation; fit: training): switches
        the mode-dependent layers that are not in it and afterwards gives each its own previous
        mode back, so a layer the user set on its own (a batch norm kept in evaluation mode
        while fine-tuning) keeps it. Layers whose forward ignores the mode are left alone: a
        LeNet-5 predict switches nothing."""

        def __init__(self, model, training):
            self.model, self.training = model, training

        def __enter__(self):
            model, mode = self.model, self.training
            self.before = model.training
            self.changed = [layer for layer in model._mode_leaves() if layer.training != mode]
            for layer in self.changed:
                layer.training = mode
            model.training = mode

        def __exit__(self, *exc):
            for layer in self.changed:
                layer.training = not self.training
            self.model.training = self.before

    # --- forward and backward -------------------------------------------------------------------

    def _check_input(self, x):
        if x is None:
            raise TypeError("expected a batch of inputs (an array), got None")
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"expected a batch of real numbers, got dtype {x.dtype}")
        if x.ndim < 1:
            raise ValueError("expected a batch of inputs, got a scalar")
        if self.input_shape is None:
            self.input_shape = self._shape_arg(x.shape[1:])
            self.output_shapes()
        elif tuple(x.shape[1:]) != self.input_shape:
            hint = ""
            if x.ndim == len(self.input_shape) + 1 and x.ndim >= 3 and \
                    tuple(x.shape[1:]) == self.input_shape[1:] + self.input_shape[:1]:
                hint = f"; it looks channels-last: use x.transpose(0, {x.ndim - 1}, {', '.join(map(str, range(1, x.ndim - 1)))})"
            raise ValueError(f"expected input of shape (N, {', '.join(map(str, self.input_shape))}), "
                             f"got shape {x.shape}{hint}")
        return x

    def _forward(self, x):
        # A layer may overwrite its input when that is the layer before's own output array and
        # that layer's backward does not read it (an activation after a conv, say).
        scratch = False
        for layer, fused, builtin in self._stages:
            if fused:
                x = layer._relu_forward(x)
            else:
                layer._input_is_scratch = scratch
                x = layer.forward(x)
            scratch = builtin and layer._owns_output(x)
        return x

    def _gradient_floor(self):
        """Index of the lowest stage holding trainable parameters (len(stages) if none)."""
        for k, (layer, _, _) in enumerate(self._stages):
            if any(leaf.trainable and leaf.params for leaf in leaves(layer)):
                return k
        return len(self._stages)

    def _backward(self, grad, input_grad):
        # When the input's gradient is not wanted, the stages below the lowest trainable one
        # need no backward at all (a frozen feature extractor; PyTorch's autograd stops there
        # too), and that stage computes no input gradient.
        stages = self._stages
        floor = 0 if input_grad else self._gradient_floor()
        for k in range(floor, len(stages)):
            wanted = k > floor or input_grad
            if stages[k][0].input_grad != wanted:
                stages[k][0].input_grad = wanted
        if floor == 0 and self._layers:
            self._layers[0].input_grad = input_grad
        # A layer may overwrite its grad_output when that is the layer above's own gradient
        # array (or that array passed through in place): nothing else reads it afterwards.
        scratch = False
        for layer, fused, builtin in reversed(stages[floor:]):
            layer._grad_is_scratch = scratch
            grad_in, grad = grad, layer._relu_backward(grad) if fused else layer.backward(grad)
            scratch = builtin and grad is not None and (layer._owns(grad) or (scratch and grad is grad_in))
        return grad if floor == 0 else None

    @_exclusive
    def forward(self, x):
        """The last layer's output for x (in the current mode), a fresh array. Inside another
        container (reuse_buffers set by it) the layers' own output array, as any layer's."""
        if self.reuse_buffers:
            return self._forward(x)
        return np.array(self._forward(self._check_input(x)), dtype=np.float32, copy=True)

    __call__ = forward

    @_exclusive
    def backward(self, grad_output):
        """Backpropagates grad_output through the layers after a forward; fills every layer's
        grads and returns the gradient w.r.t. the model's input (a fresh array; inside another
        container, the first layer's own array, or None when input_grad is off)."""
        if self.reuse_buffers:
            return self._backward(grad_output, self.input_grad)
        return np.array(self._backward(np.asarray(grad_output, np.float32), True), copy=True)

    # --- training ---------------------------------------------------------------------------------

    def compile(self, optimizer="sgd", loss="cross_entropy", metrics=None):
        """Choose the optimizer and loss (names or objects) and the metrics (e.g. ["accuracy"])."""
        self.optimizer = optim.get(optimizer)
        self._param_key = None
        self.loss = losses.get(loss)
        if metrics is not None and not isinstance(metrics, (str, list, tuple)):
            raise TypeError(f"compile: metrics must be a list of names or callables, got {type(metrics).__name__}")
        names = [] if metrics is None else ([metrics] if isinstance(metrics, str) else list(metrics))
        self.metrics = [(name if isinstance(name, str) else getattr(name, "__name__", "metric"),
                         metrics_module.get(name, self.loss)) for name in names]
        return self

    def _require_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"{what}: call model.compile(optimizer=..., loss=...) first")

    def _prepare(self, x, y, what):
        """x as float32 C-contiguous (one conversion) and y, with their lengths checked."""
        x = np.ascontiguousarray(self._check_input(x), dtype=np.float32)
        if y is None:
            raise ValueError(f"{what}: targets y are required")
        y = np.asarray(y)
        if y.ndim < 1 or len(y) != len(x):
            raise ValueError(f"{what}: x has {len(x)} samples but y has {len(y) if y.ndim else 'no'} "
                             f"(x shape {x.shape}, y shape {y.shape})")
        if y.dtype.kind == "f":
            y = np.ascontiguousarray(y, dtype=np.float32)
        elif y.dtype.kind in "iub":
            y = np.ascontiguousarray(y, dtype=np.int64)
        else:
            raise TypeError(f"{what}: y must hold numbers, got dtype {y.dtype}")
        return x, y

    def _step(self, xb, yb):
        """One training step on a batch; returns (loss, outputs)."""
        out = self._forward(xb)
        loss = self.loss(out, yb)
        self._backward(self.loss.backward(), False)
        params, grads = self._trainable()
        key = tuple(map(id, params))
        if key != self._param_key:
            # The trainable parameters changed (a layer frozen, unfrozen or replaced): the
            # optimizer's per-parameter state no longer fits, so it starts afresh with the same
            # settings -- what recompiling does in Keras.
            if self._param_key is not None:
                self.optimizer = type(self.optimizer).from_config(self.optimizer.get_config())
            self._param_key = key
        self.optimizer.step(params, grads)
        return loss, out

    @_exclusive
    def train_on_batch(self, x, y):
        """One optimisation step on (x, y); returns {"loss": ..., <metric>: ...}."""
        self._require_compiled("train_on_batch")
        x, y = self._prepare(x, y, "train_on_batch")
        with self._Mode(self, True):
            loss, out = self._step(x, y)
        logs = {"loss": loss}
        for name, fn in self.metrics:
            logs[name] = float(fn(out, y))
        return logs

    @_exclusive
    def fit(self, x, y, batch_size=32, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True):
        """Train for `epochs` passes over (x, y) in minibatches; returns the History.

        validation_split holds out that fraction of the samples (the last ones, as Keras);
        validation_data=(x_val, y_val) gives them explicitly. Shuffling uses cnnkit's generator.
        """
        self._require_compiled("fit")
        batch_size = self._positive_int(batch_size, "batch_size")
        epochs = self._positive_int(epochs, "epochs", minimum=0)
        x, y = self._prepare(x, y, "fit")
        if len(x) == 0:  # no step would run: a History of nothing hides the mistake
            raise ValueError(f"fit: no training samples (x has shape {x.shape})")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.integer, np.floating)):
            raise TypeError(f"fit: validation_split must be a number, got {type(validation_split).__name__}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("fit: validation_data must be (x_val, y_val)")
            val = self._prepare(*validation_data, "fit (validation_data)")
        elif validation_split > 0:
            cut = len(x) - int(len(x) * float(validation_split))
            if cut in (0, len(x)):
                raise ValueError(f"fit: validation_split={validation_split} leaves no training or no "
                                 f"validation samples out of {len(x)}")
            x, y, val = x[:cut], y[:cut], (x[cut:], y[cut:])
        else:
            val = None
        n = len(x)
        steps = _batch_count(n, batch_size)
        cbs = callbacks_module.CallbackList(callbacks, model=self, add_history=True, add_progress=True,
                                            verbose=verbose, epochs=epochs, steps=steps)
        # one reused array per batch input and target: the gather below writes into them
        xb_buf = np.empty((min(batch_size, n),) + x.shape[1:], np.float32)
        yb_buf = np.empty((min(batch_size, n),) + y.shape[1:], y.dtype)
        self.stop_training = False
        logs = {}
        cbs.on_train_begin()
        with self._Mode(self, True):
            for epoch in range(epochs):
                cbs.on_epoch_begin(epoch)
                order = _random.generator().permutation(n) if shuffle else np.arange(n)
                sums, seen = {}, 0
                for step in range(steps):
                    cbs.on_train_batch_begin(step)
                    idx = order[step * batch_size:(step + 1) * batch_size]
                    xb, yb = xb_buf[:len(idx)], yb_buf[:len(idx)]
                    # idx is in range by construction; with mode="raise" (the default) NumPy
                    # gathers into a temporary and copies it to out: 3x slower (12 us of a
                    # LeNet-5 step's 1.2 ms, more with the data out of cache)
                    np.take(x, idx, axis=0, out=xb, mode="clip")
                    np.take(y, idx, axis=0, out=yb, mode="clip")
                    loss, out = self._step(xb, yb)
                    batch = {"loss": loss}
                    for name, fn in self.metrics:
                        batch[name] = float(fn(out, yb))
                    seen += len(idx)
                    for k, v in batch.items():
                        sums[k] = sums.get(k, 0.0) + v * len(idx)
                    logs = {k: v / seen for k, v in sums.items()}
                    cbs.on_train_batch_end(step, dict(logs))
                    if self.stop_training:
                        break
                if val is not None and not self.stop_training:
                    with self._Mode(self, False):
                        results = self._evaluate(*val, batch_size)
                    logs.update({f"val_{k}": v for k, v in results.items()})
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        cbs.on_train_end(logs)
        self.history = cbs.history
        return self.history

    @staticmethod
    def _positive_int(value, name, minimum=1):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value}")
        return int(value)

    # --- inference --------------------------------------------------------------------------------

    def _evaluate(self, x, y, batch_size):
        sums, n = {}, len(x)
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = self._forward(xb)
            batch = {"loss": self.loss(out, yb)}
            for name, fn in self.metrics:
                batch[name] = float(fn(out, yb))
            for k, v in batch.items():
                sums[k] = sums.get(k, 0.0) + v * len(xb)
        return {k: v / n for k, v in sums.items()} if n else {"loss": float("nan")}

    @_exclusive
    def evaluate(self, x, y, batch_size=32, verbose=0):
        """Mean loss and metrics over (x, y), in evaluation mode: {"loss": ..., "accuracy": ...}."""
        if self.loss is None:
            raise RuntimeError("evaluate: call model.compile(loss=...) first")
        batch_size = self._positive_int(batch_size, "batch_size")
        x, y = self._prepare(x, y, "evaluate")
        with self._Mode(self, False):
            results = self._evaluate(x, y, batch_size)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in results.items()))
        return results

    @_exclusive
    def predict(self, x, batch_size=32, verbose=0):
        """The last layer's outputs for x, batch by batch, in evaluation mode (float32)."""
        batch_size = self._positive_int(batch_size, "batch_size")
        x = np.ascontiguousarray(self._check_input(x), dtype=np.float32)
        result = None
        with self._Mode(self, False):
            if 0 < len(x) <= batch_size:  # one batch: its output, copied, is the result
                return np.array(self._forward(x), dtype=np.float32, copy=True)
            for start in range(0, len(x), batch_size):
                out = self._forward(x[start:start + batch_size])
                if result is None:
                    result = np.empty((len(x),) + out.shape[1:], np.float32)
                result[start:start + len(out)] = out
        if result is None:  # empty input: shape from the layers
            result = np.empty((0,) + (self.output_shapes()[-1] if self._layers else self.input_shape), np.float32)
        return result

    # --- state ------------------------------------------------------------------------------------

    def state_dict(self):
        """{"<layer index>.<name>": copy of the array} in layer order, PyTorch's keys; blocks
        nest their children's keys ("4.block.0.weight")."""
        return {key: value.copy() for key, value in named_arrays(self)}

    def _state_arrays(self):
        """The live arrays behind state_dict's keys."""
        return dict(named_arrays(self))

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the layers by PyTorch's keys. Accepts NumPy arrays or anything
        array-like (a torch.nn.Sequential's state_dict loads unchanged). strict: the keys must
        match exactly. Shapes must always match. Nothing is changed when a check fails."""
        live = self._state_arrays()
        given = {}
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        for k, v in state_dict.items():
            if hasattr(v, "detach"):  # a torch tensor, without importing torch
                v = v.detach().cpu().numpy()
            given[str(k)] = np.asarray(v)
        missing = [k for k in live if k not in given]
        unexpected = [k for k in given if k not in live]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for k, v in given.items():
            if k in live and v.dtype.kind not in "fiub":  # a foreign value: its type, not its shape
                raise TypeError(f"load_state_dict: {k} has dtype {v.dtype}, expected numbers")
            if k in live and v.shape != live[k].shape:
                raise ValueError(f"load_state_dict: {k} has shape {v.shape}, the model expects {live[k].shape}")
        for k, v in given.items():
            if k in live:
                np.copyto(live[k], v, casting="unsafe")
        return {"missing_keys": missing, "unexpected_keys": unexpected}

    def get_config(self):
        return {"name": self.name, "input_shape": None if self.input_shape is None else list(self.input_shape),
                "layers": [layer_spec(l) for l in self._layers]}

    @classmethod
    def from_config(cls, config):
        model = cls(input_shape=config.get("input_shape"), name=config.get("name", "sequential"))
        for spec in config["layers"]:
            model.add(layer_from_spec(spec))
        return model

    def save(self, path):
        """Write architecture, weights and optimizer state to one file, atomically."""
        from .saving import save_model
        save_model(self, path)
