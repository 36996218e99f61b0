"""Optimizers with PyTorch's update rules: SGD (momentum, Nesterov, weight decay) and Adam.

An optimizer updates float32 parameter arrays in place from their gradients,
``opt.step(params, grads)``, with the same arrays in the same order on every call; the update
of each array is one fused pass in cnnkit's C++ core. Per-parameter state (momentum buffers,
Adam's moment estimates) is created at the first step and kept by position as plain float32
NumPy arrays, so ``state_dict()`` is a flat dict of arrays and numbers that ``np.savez`` can
store, for example ``{"step": 3, "learning_rate": 0.01, "state.0.momentum_buffer": array}``.

``learning_rate`` is a plain attribute that may be changed between steps (a learning-rate
schedule does); ``get_config()`` / ``from_config()`` round-trip the hyperparameters as JSON.
"""
import math
import numbers
import re
from collections.abc import Mapping

import numpy as np

from . import _core

__all__ = ["Optimizer", "SGD", "Adam", "get"]


def _number(value, owner, name):
    """A real number (not a bool) -> float, else TypeError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating,
                                                                       np.integer)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def _at_least_zero(value, owner, name):
    v = _number(value, owner, name)
    if not (v >= 0.0 and math.isfinite(v)):  # also rejects NaN
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return v


_STATE_KEY = re.compile(r"state\.(\d+)\.([A-Za-z_]+)\Z")


class Optimizer:
    """Base class: the step loop, per-parameter state and (de)serialisation.

    Subclasses name their per-parameter state arrays in ``_state_names`` and update one
    parameter in ``_update(i, param, grad, state, step)``, where ``state`` is the dict of that
    parameter's arrays (empty before its first step) and ``step`` counts this step (1-based).
    """

    _state_names = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate
        self.iterations = 0  # steps taken; "step" in state_dict
        self._state = []  # per parameter position: {name: float32 array}
        self._shapes = None  # the parameter shapes, once known (first step or load)

    # --- the learning rate: settable between steps, validated on assignment -----------------
    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _at_least_zero(value, type(self).__name__, "learning_rate")

    # --- stepping ---------------------------------------------------------------------------
    def step(self, params, grads):
        """Update each float32 array in params in place from the gradient at the same position
        of grads. Raises ValueError/TypeError, before changing anything, when the lists differ
        in length, a gradient's shape differs from its parameter's, a parameter is not a
        writable float32 C-contiguous array, or the shapes differ from earlier steps."""
        params, grads = list(params), list(grads)
        if self._shapes is not None and self._step_all(params, grads, self.iterations + 1):
            self.iterations += 1
            return
        owner = f"{type(self).__name__}.step"
        if len(params) != len(grads):
            raise ValueError(f"{owner}: got {len(params)} params but {len(grads)} grads")
        shapes = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray):
                raise TypeError(f"{owner}: params[{i}] must be a numpy array, got "
                                f"{type(p).__name__}")
            if p.dtype != np.float32:
                raise TypeError(f"{owner}: params[{i}] must have dtype float32, got {p.dtype}")
            if not (p.flags.c_contiguous and p.flags.writeable):
                raise ValueError(f"{owner}: params[{i}] must be a writable C-contiguous array")
            if g is None:
                raise TypeError(f"{owner}: grads[{i}] is None")
            if np.shape(g) != p.shape:
                raise ValueError(f"{owner}: grads[{i}] has shape {np.shape(g)} but params[{i}] "
                                 f"has shape {p.shape}")
            shapes.append(p.shape)
        if self._shapes is None:
            self._check_state_fits(shapes, owner)
            if not self._state:
                self._state = [{} for _ in shapes]
            self._shapes = shapes
        elif shapes != self._shapes:
            raise ValueError(f"{owner}: the parameters differ from those of earlier steps "
                             f"(shapes {shapes} vs {self._shapes}); pass the same arrays in the "
                             f"same order every call")
        step = self.iterations + 1
        for i, (p, g) in enumerate(zip(params, grads)):
            try:
                self._update(i, p, g, self._state[i], step)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{owner}: params[{i}]: {e}") from None
        self.iterations = step

    def _update(self, i, param, grad, state, step):  # pragma: no cover - abstract
        raise NotImplementedError

    def _step_all(self, params, grads, step):
        """Steps every parameter in one core call and returns True, when each has its state
        and every array is one the per-tensor path would take as it is (the core checks them
        all first: on False nothing has changed, and step() takes the per-tensor path, whose
        checks name what is wrong). Bit-identical to the per-tensor path."""
        return False

    def _check_state_fits(self, shapes, owner):
        """Loaded state (if any) must be for exactly these parameter shapes."""
        if not self._state:
            return
        if len(self._state) != len(shapes):
            raise ValueError(f"{owner}: the optimizer state is for {len(self._state)} parameters, "
                             f"got {len(shapes)}")
        for i, (st, shape) in enumerate(zip(self._state, shapes)):
            for name, a in st.items():
                if a.shape != shape:
                    raise ValueError(f"{owner}: state.{i}.{name} has shape {a.shape} but "
                                     f"params[{i}] has shape {shape}")

    # --- state ------------------------------------------------------------------------------
    def state_dict(self):
        """A flat dict: "step" (int), "learning_rate" (float) and a copy of each state array
        as "state.<position>.<name>"."""
        sd = {"step": self.iterations, "learning_rate": self.learning_rate}
        for i, st in enumerate(self._state):
            for name, a in st.items():
                sd[f"state.{i}.{name}"] = a.copy()
        return sd

    def load_state_dict(self, state_dict):
        """Restore what state_dict() returned (also as read back from an .npz, where numbers are
        0-d arrays). Validates everything before changing anything: ValueError names missing or
        unexpected keys and wrong shapes, dtypes or values."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: expected a dict, got {type(state_dict).__name__}")
        missing = [k for k in ("step", "learning_rate") if k not in state_dict]
        unexpected, entries = [], {}
        for key, value in state_dict.items():
            if key in ("step", "learning_rate"):
                continue
            m = _STATE_KEY.match(key) if isinstance(key, str) else None
            if m is None or m.group(2) not in self._state_names:
                unexpected.append(key)
            else:
                entries.setdefault(int(m.group(1)), {})[m.group(2)] = (key, value)
        if missing or unexpected:
            expected = ", ".join(f"state.<i>.{n}" for n in self._state_names) or "no state arrays"
            raise ValueError(f"{owner}: missing keys {missing}, unexpected keys {unexpected} "
                             f"(expected 'step', 'learning_rate' and {expected})")
        step = self._load_scalar(state_dict["step"], "step", owner, integer=True)
        lr = self._load_scalar(state_dict["learning_rate"], "learning_rate", owner, integer=False)
        if step < 0:
            raise ValueError(f"{owner}: step must be >= 0, got {step}")
        lr = _at_least_zero(lr, owner, "learning_rate")

        count = len(entries)
        if sorted(entries) != list(range(count)):
            raise ValueError(f"{owner}: state positions must be 0..{count - 1}, got "
                             f"{sorted(entries)}")
        if step == 0 and count:
            raise ValueError(f"{owner}: step is 0 but the state_dict holds state for {count} "
                             f"parameters")
        if step > 0 and self._state_names and not count and self._shapes != []:
            raise ValueError(f"{owner}: step is {step} but the state_dict holds no "
                             f"{'/'.join(self._state_names)} arrays")
        state = []
        for i in range(count):
            missing = [f"state.{i}.{n}" for n in self._state_names if n not in entries[i]]
            if missing:
                raise ValueError(f"{owner}: missing keys {missing}")
            st = {}
            for name, (key, value) in entries[i].items():
                a = np.asarray(value)
                if a.dtype.kind != "f":
                    raise ValueError(f"{owner}: {key} must be a floating-point array, got dtype "
                                     f"{a.dtype}")
                known = self._shapes is not None and i < len(self._shapes)
                if known and a.shape != self._shapes[i]:
                    raise ValueError(f"{owner}: {key} has shape {a.shape} but params[{i}] has "
                                     f"shape {self._shapes[i]}")
                st[name] = np.array(a, dtype=np.float32, order="C")  # a copy the optimizer owns
            shapes = {a.shape for a in st.values()}
            if len(shapes) > 1:
                raise ValueError(f"{owner}: the state arrays of position {i} differ in shape: "
                                 f"{sorted(shapes)}")
            state.append(st)
        if self._shapes is not None and count and count != len(self._shapes):
            raise ValueError(f"{owner}: the state_dict holds state for {count} parameters, but the "
                             f"optimizer updates {len(self._shapes)}")
        self.iterations, self.learning_rate, self._state = step, lr, state
        if self._shapes is not None and not state:
            self._state = [{} for _ in self._shapes]

    @staticmethod
    def _load_scalar(value, key, owner, integer):
        a = np.asarray(value)
        if a.shape != () or a.dtype.kind not in ("iu" if integer else "iuf"):
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{owner}: {key} must be {kind}, got {value!r}")
        return int(a) if integer else float(a)

    # --- configuration ----------------------------------------------------------------------
    def get_config(self):
        """The hyperparameters as a JSON-serialisable dict, with the optimizer's "name"."""
        return {"name": type(self).__name__, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config):
        """The optimizer that get_config() described. On Optimizer itself, "name" picks the
        class; on a subclass it must name that class (or be absent)."""
        if not isinstance(config, Mapping):
            raise TypeError(f"{cls.__name__}.from_config: expected a dict, got "
                            f"{type(config).__name__}")
        config = dict(config)
        name = config.pop("name", None)
        target = cls
        if name is not None:
            target = _lookup(name)
            if not issubclass(target, cls):
                raise ValueError(f"{cls.__name__}.from_config: config is for {name!r}")
        elif cls is Optimizer:
            raise ValueError(f"Optimizer.from_config: config has no 'name'; valid names: "
                             f"{_valid_names()}")
        allowed = set(target().get_config()) - {"name"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ValueError(f"{target.__name__}.from_config: unknown keys {unknown}; "
                             f"valid keys: {sorted(allowed)}")
        return target(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent as torch.optim.SGD with dampening 0:

        d = grad + weight_decay * p
        buf = d (first step), else momentum * buf + d          (momentum > 0)
        d = d + momentum * buf if nesterov else buf            (momentum > 0)
        p -= learning_rate * d
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate)
        self.momentum = _at_least_zero(momentum, "SGD", "momentum")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"SGD: nesterov must be a bool, got {type(nesterov).__name__}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError("SGD: nesterov momentum requires momentum > 0")
        self.weight_decay = _at_least_zero(weight_decay, "SGD", "weight_decay")
        self._state_names = ("momentum_buffer",) if self.momentum != 0.0 else ()

    def _update(self, i, param, grad, state, step):
        buf = state.get("momentum_buffer")
        first = buf is None
        if first and self.momentum != 0.0:
            # zeros, not empty: the C++ loop may load (and then ignore) buf on the first step
            buf = np.zeros(param.shape, np.float32)
        _core.sgd_step(param, buf, grad, self.learning_rate, self.momentum, self.nesterov,
                       self.weight_decay, first)
        if first and buf is not None:
            state["momentum_buffer"] = buf  # kept only once the step succeeded

    def _step_all(self, params, grads, step):
        bufs = None
        if self.momentum != 0.0:
            bufs = [st.get("momentum_buffer") for st in self._state]
        return _core.sgd_step_many(params, bufs, grads, self._shapes, self.learning_rate,
                                   self.momentum, self.nesterov, self.weight_decay, False)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam as torch.optim.Adam (weight decay is L2 added to the gradient, not AdamW):

        d = grad + weight_decay * p
        m = beta1 * m + (1 - beta1) * d;  v = beta2 * v + (1 - beta2) * d * d
        p -= learning_rate / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, learning_rate=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(learning_rate)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"Adam: betas must be a pair of numbers, got {betas!r}")
        b1, b2 = (_number(b, "Adam", "betas") for b in betas)
        for k, b in enumerate((b1, b2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Adam: betas[{k}] must be in [0, 1), got {b!r}")
        self.betas = (b1, b2)
        self.eps = _at_least_zero(eps, "Adam", "eps")
        self.weight_decay = _at_least_zero(weight_decay, "Adam", "weight_decay")

    def _update(self, i, param, grad, state, step):
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        first = m is None
        if first:
            m, v = np.zeros(param.shape, np.float32), np.zeros(param.shape, np.float32)
        _core.adam_step(param, m, v, grad, step, self.learning_rate, self.betas[0],
                        self.betas[1], self.eps, self.weight_decay)
        if first:
            state["exp_avg"], state["exp_avg_sq"] = m, v

    def _step_all(self, params, grads, step):
        m = [st.get("exp_avg") for st in self._state]
        v = [st.get("exp_avg_sq") for st in self._state]
        return _core.adam_step_many(params, m, v, grads, self._shapes, step, self.learning_rate,
                                    self.betas[0], self.betas[1], self.eps, self.weight_decay)

    def get_config(self):
        return {**super().get_config(), "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}


_OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def _valid_names():
    return ", ".join(repr(n) for n in _OPTIMIZERS)


def _lookup(name):
    if not isinstance(name, str) or name.lower() not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {_valid_names()}")
    return _OPTIMIZERS[name.lower()]


def get(identifier):
    """An Optimizer from a name ("sgd", "adam": default hyperparameters), an Optimizer (itself)
    or a get_config() dict."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, Mapping):
        return Optimizer.from_config(identifier)
    raise TypeError(f"optimizer must be a name ({_valid_names()}), an Optimizer or a config "
                    f"dict, got {type(identifier).__name__}")
