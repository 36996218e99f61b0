"""Training callbacks and the progress display of ``Sequential.fit`` (Keras's callback protocol).

``fit`` drives one ``CallbackList``, which forwards every hook to each callback in order:
the user's callbacks, then ``History``, then the progress display, so the last two see what
earlier callbacks add to the logs (e.g. ``learning_rate``). How ``fit`` wires it::

    cbs = CallbackList(callbacks, model=self, add_history=True, add_progress=True,
                       verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    self.stop_training = False
    cbs.on_train_begin()
    for epoch in range(epochs):                         # 0-based in every hook
        cbs.on_epoch_begin(epoch)
        for batch in range(steps_per_epoch):
            cbs.on_train_batch_begin(batch)
            ...                                         # one training step
            cbs.on_train_batch_end(batch, {"loss": mean_loss_so_far, "accuracy": ...})
            if self.stop_training:
                break
        logs = {"loss": ..., "accuracy": ...}           # the epoch's means
        logs.update(("val_" + k, v) for k, v in val_results.items())   # when validation ran
        cbs.on_epoch_end(epoch, logs)                   # callbacks may add keys to logs
        if self.stop_training:
            break
    cbs.on_train_end()
    return cbs.history

Logs are dicts of Python floats. Batch logs hold running means over the epoch so far; epoch
logs hold the epoch's ``loss``, metrics, and ``val_*`` when validation ran. Callbacks may
add keys to the dict they are given; the one dict is passed to every callback in turn.
"""
import csv
import inspect
import math
import numbers
import os
import sys
import time
import warnings

import numpy as np

__all__ = [
    "Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint",
    "LearningRateScheduler", "TerminateOnNaN", "CSVLogger", "ProgbarLogger",
    "TqdmProgbarLogger", "make_progress",
]


class Callback:
    """Base class: every hook of Keras's protocol, each a no-op.

    ``self.model`` is set by ``set_model`` and ``self.params`` (``epochs``, ``steps``,
    ``verbose``) by ``set_params`` before training begins. Epoch and batch indices are 0-based.
    """

    _progress = None  # the progress display of the CallbackList this callback is in, if any

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    # As in Keras, the training-batch hooks fall back to the older on_batch_* names.
    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def _print(self, text):
        """Print one message line to sys.stdout; a progress bar drawn with \\r is cleared first,
        so the message does not land in the middle of it."""
        if self._progress is not None:
            self._progress.write_message(text)
        else:
            print(text, file=sys.stdout, flush=True)


class CallbackList:
    """The callbacks of one ``fit`` (or ``evaluate``/``predict``) call, driven as one.

    callbacks:    None, one Callback, or an iterable of them; the caller's list is not modified.
    model:        given to every callback's ``set_model``.
    add_history:  append a ``History`` unless ``callbacks`` already holds one; ``.history``.
    add_progress: append ``make_progress(verbose)`` unless ``callbacks`` already holds a
                  progress display; ``.progress`` (None when verbose=0).
    verbose:      0, 1, 2, "auto" (1 when sys.stdout is a terminal, else 2) or "tqdm".
    epochs, steps, **params: with the resolved verbose, the dict given to ``set_params``.
    """

    def __init__(self, callbacks=None, *, model=None, add_history=False, add_progress=False,
                 verbose=0, epochs=None, steps=None, **params):
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if isinstance(cb, type) and issubclass(cb, Callback):
                raise TypeError(f"callbacks[{i}] is the class {cb.__name__}; pass an instance, "
                                f"e.g. {cb.__name__}()")
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks[{i}] must be a cnnkit.callbacks.Callback, "
                                f"got {type(cb).__name__}")
        verbose = _resolve_verbose(verbose)

        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        if self.history is None and add_history:
            self.history = History()
            self.callbacks.append(self.history)
        self.progress = next((cb for cb in self.callbacks if isinstance(cb, _ProgressCallback)),
                             None)
        if self.progress is None and add_progress:
            self.progress = make_progress(verbose)
            if self.progress is not None:
                self.callbacks.append(self.progress)

        self.model = model
        self.params = {"verbose": verbose, "epochs": epochs, "steps": steps, **params}
        for cb in self.callbacks:
            cb._progress = self.progress
            cb.set_params(self.params)
            if model is not None:
                cb.set_model(model)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def _call(self, hook, *args):
        logs = args[-1] if args[-1] is not None else {}
        for cb in self.callbacks:
            getattr(cb, hook)(*args[:-1], logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)

    on_batch_begin = on_train_batch_begin
    on_batch_end = on_train_batch_end


class History(Callback):
    """Records the epoch logs of one training run: ``.history`` maps each key (``loss``,
    ``accuracy``, ``val_loss``, ...) to a list with one float per epoch, ``.epoch`` lists the
    0-based epochs. ``fit`` returns it; both start empty at ``on_train_begin``."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))


# Metric names whose larger values are better; mode="auto" maximizes a monitor containing one.
_MAXIMIZED_METRICS = ("acc", "auc", "precision", "recall", "f1", "fmeasure", "iou")


def _resolve_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'mode must be "auto", "min" or "max", got {mode!r}')
    if mode != "auto":
        return mode
    name = monitor[len("val_"):] if monitor.startswith("val_") else monitor
    return "max" if any(m in name for m in _MAXIMIZED_METRICS) else "min"


def _available(logs):
    return ", ".join(logs) if logs else "none"


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving (Keras semantics).

    An epoch improves when the value beats the best so far by more than ``min_delta``
    (direction from ``mode``; "auto" maximizes accuracy-like names, minimizes the rest) and,
    when ``baseline`` is given, also beats the baseline by ``min_delta``. Training stops after
    ``patience`` consecutive epochs without improvement (patience 0 and 1 both stop at the first
    one, as in Keras). Epochs before ``start_from_epoch`` are ignored. With
    ``restore_best_weights`` the weights of the best epoch are kept (a copy of
    ``model.state_dict()``) and loaded back at the end of training, whether it stopped early or
    not. A missing ``monitor`` key warns and leaves training alone.

    After training: ``stopped_epoch`` (0-based, None when it did not stop), ``best``,
    ``best_epoch``.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0, verbose=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral):
            raise TypeError(f"EarlyStopping: patience must be an int, got {type(patience).__name__}")
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.patience = patience
        self.mode = _resolve_mode(monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.verbose = verbose
        self._reset()

    def _reset(self):
        self.wait = 0
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def _improves(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping monitors {self.monitor!r}, which is not in the epoch "
                          f"logs (available: {_available(logs)}); it cannot stop training.",
                          stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        current = float(current)
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = {k: np.array(v, copy=True)
                                     for k, v in self.model.state_dict().items()}
            # Progress counts only when the baseline is beaten too.
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
                return
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose > 0:
            self._print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                self._print("Restoring model weights from the end of the best epoch: "
                            f"{self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model with ``model.save(path)`` at the end of each epoch.

    ``filepath`` may hold format fields: ``{epoch:02d}`` (1-based, as Keras) and any epoch log
    key, e.g. ``"ckpt-{epoch:02d}-{val_loss:.4f}.cnnkit"``; missing folders are created. With
    ``save_best_only`` it saves only when ``monitor`` beats its best so far (``mode`` as in
    EarlyStopping); a missing ``monitor`` key warns and skips the save.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 verbose=0):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = _resolve_mode(monitor, mode)
        self.verbose = verbose
        self.best = math.inf if self.mode == "min" else -math.inf

    def _format_path(self, epoch, logs):
        try:
            return self.filepath.format(**{**logs, "epoch": epoch + 1})
        except (KeyError, IndexError) as e:
            raise KeyError(f"ModelCheckpoint cannot format filepath {self.filepath!r}: no value "
                           f"for {e}; available: epoch, {_available(logs)}") from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self._format_path(epoch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"ModelCheckpoint(save_best_only=True) monitors {self.monitor!r}, "
                              f"which is not in the epoch logs (available: {_available(logs)}); "
                              "not saving.", stacklevel=2)
                return
            current = float(current)
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                if self.verbose > 0:
                    self._print(f"Epoch {epoch + 1}: {self.monitor} did not improve from "
                                f"{self.best:.5f}")
                return
            if self.verbose > 0:
                self._print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} "
                            f"to {current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            self._print(f"Epoch {epoch + 1}: saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.model.save(path)


class LearningRateScheduler(Callback):
    """At each epoch's start set ``model.optimizer.learning_rate = schedule(epoch, lr)`` (epoch
    0-based, lr the current rate), or ``schedule(epoch)`` for a one-argument function; the rate
    in use is recorded as ``learning_rate`` in the epoch logs."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function of the epoch, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        self._takes_lr = _accepts_two_args(schedule)

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        if self._takes_lr:
            lr = self.schedule(epoch, float(optimizer.learning_rate))
        else:
            lr = self.schedule(epoch)
        if (isinstance(lr, bool) or not isinstance(lr, numbers.Real)
                or not math.isfinite(lr) or lr < 0):
            raise ValueError("LearningRateScheduler: schedule must return a finite number >= 0, "
                             f"got {lr!r} for epoch {epoch}")
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            self._print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                        f"{float(lr):g}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


def _accepts_two_args(fn):
    """Whether fn can be called as fn(epoch, lr); decided once, so a TypeError raised inside a
    two-argument schedule is not mistaken for the one-argument form (as a retry would)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: assume (epoch, lr)
        return True
    for args in ((0, 0.1), (0,)):
        try:
            signature.bind(*args)
            return len(args) == 2
        except TypeError:
            pass
    raise TypeError(f"LearningRateScheduler: schedule must take (epoch, lr) or (epoch), "
                    f"got a callable with signature {signature}")


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite, saying so."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            # 1-based, like the "Epoch 1/2" and "13/938" of the progress display.
            self._print(f"Batch {batch + 1} (epoch {self._epoch + 1}): the loss is {float(loss)}; "
                        "training stopped (TerminateOnNaN). Lower the learning rate or check the "
                        "inputs for NaN.")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file: ``epoch`` (0-based, as History.epoch), then the
    keys of the first epoch's logs in their order; a key missing later is written "NA". Each
    row is flushed. With ``append`` an existing file keeps its rows and its header's columns."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        self._keys = None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            if header:
                self._keys = header[1:] if header[0] == "epoch" else header
        self._file = open(self.filename, "a" if self.append else "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, delimiter=self.separator)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._keys is None:
            self._keys = list(logs)
            self._writer.writerow(["epoch", *self._keys])
        dropped = [k for k in logs if k not in self._keys]
        if dropped:
            warnings.warn(f"CSVLogger: {', '.join(dropped)} not in the columns of "
                          f"{self.filename} ({', '.join(self._keys)}); not written.", stacklevel=2)
        self._writer.writerow([epoch, *(logs.get(k, "NA") for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


# ---- progress display ------------------------------------------------------------------------

def _format_value(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.4e}"


def _format_logs(logs):
    return " - ".join(f"{k}: {_format_value(v)}" for k, v in (logs or {}).items())


def _format_duration(seconds):
    """'12s', '3:05', '1:02:05' (Keras's ETA format)."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if s >= 60:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s}s"


def _format_elapsed(seconds):
    return f"{seconds * 1e3:.0f}ms" if seconds < 1 else _format_duration(seconds)


def _format_step_time(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class _ProgressCallback(Callback):
    """A progress display; other callbacks' messages go through ``write_message``."""

    def __init__(self, file=None):
        super().__init__()
        self.file = file

    def _out(self):
        # Looked up at each write, so pytest's capsys and later redirection of sys.stdout work.
        return self.file if self.file is not None else sys.stdout

    def _epoch_title(self, epoch):
        epochs = self.params.get("epochs")
        return f"Epoch {epoch + 1}/{epochs}" if epochs else f"Epoch {epoch + 1}"

    def write_message(self, text):
        out = self._out()
        out.write(text + "\n")
        out.flush()


class ProgbarLogger(_ProgressCallback):
    """The built-in progress display, written to ``file`` (default: sys.stdout at write time).

    verbose=1: an ``Epoch 1/2`` line, then a bar redrawn in place with ``\\r``
    (``[=====>....] 312/938 - ETA: 12s - loss: 0.2345 - accuracy: 0.9312``) at most every
    ``interval`` seconds and on the last batch; at the epoch's end the bar is finished with the
    elapsed time, the time per step and the epoch logs (val_* too), and a newline.
    verbose=2: one line per epoch at its end (``Epoch 1/2 - 12s - loss: ...``), no ``\\r``.
    ``clock`` (seconds, monotonic) is replaceable for tests.
    """

    width = 30  # characters inside the bar's brackets

    def __init__(self, verbose=1, file=None, interval=0.1, clock=time.monotonic):
        if verbose not in (1, 2):
            raise ValueError(f"ProgbarLogger: verbose must be 1 or 2, got {verbose!r}")
        super().__init__(file)
        self.verbose = verbose
        self.interval = interval
        self._clock = clock
        self._line_width = 0     # length of the \r-line now on screen; 0 when none is open
        self._seen = 0
        self._epoch_start = self._last_batch_time = self._clock()
        self._last_draw = -math.inf

    def on_epoch_begin(self, epoch, logs=None):
        self._seen = 0
        self._epoch_start = self._last_batch_time = self._clock()
        self._last_draw = -math.inf
        if self.verbose == 1:
            self.write_message(self._epoch_title(epoch))

    def on_train_batch_end(self, batch, logs=None):
        self._seen = batch + 1
        self._last_batch_time = now = self._clock()
        if self.verbose != 1:
            return
        steps = self.params.get("steps")
        last = steps is not None and self._seen >= steps
        if last or now - self._last_draw >= self.interval:
            self._draw(self._bar_line(logs, now), end_line=False)
            self._last_draw = now

    def on_epoch_end(self, epoch, logs=None):
        now = self._clock()
        elapsed = _format_elapsed(now - self._epoch_start)
        metrics = _format_logs(logs)
        if self.verbose == 2:
            parts = (self._epoch_title(epoch), elapsed, metrics)
            self.write_message(" - ".join(filter(None, parts)))
            return
        steps = self.params.get("steps")
        head = self._bar_head(self._seen, self._seen if steps is None else steps)
        timing = elapsed
        if self._seen:
            per_step = (self._last_batch_time - self._epoch_start) / self._seen
            timing += " " + _format_step_time(per_step)
        self._draw(" - ".join(filter(None, (head, timing, metrics))), end_line=True)

    def on_train_end(self, logs=None):
        if self._line_width:  # training stopped without on_epoch_end: end the bar's line
            self._out().write("\n")
            self._line_width = 0

    def write_message(self, text):
        if self._line_width:  # erase the bar; the next update redraws it below the message
            self._out().write("\r" + " " * self._line_width + "\r")
            self._line_width = 0
        super().write_message(text)

    def _bar_head(self, seen, steps):
        if steps is None:
            return f"{seen}/Unknown"
        filled = min(self.width, self.width * seen // steps) if steps > 0 else self.width
        if seen < steps:
            bar = "=" * max(filled - 1, 0) + ">" + "." * (self.width - max(filled, 1))
        else:
            bar = "=" * self.width
        return f"[{bar}] {seen:{len(str(steps))}d}/{steps}"

    def _bar_line(self, logs, now):
        steps = self.params.get("steps")
        parts = [self._bar_head(self._seen, steps)]
        per_step = (now - self._epoch_start) / self._seen
        if steps is None:
            parts.append(f"{_format_elapsed(now - self._epoch_start)} "
                         f"{_format_step_time(per_step)}")
        else:
            parts.append("ETA: " + _format_duration(per_step * max(steps - self._seen, 0)))
        metrics = _format_logs(logs)
        if metrics:
            parts.append(metrics)
        return " - ".join(parts)

    def _draw(self, line, end_line):
        # Pad with spaces so a shorter line fully covers the previous one.
        pad = " " * max(self._line_width - len(line), 0)
        out = self._out()
        out.write("\r" + line + pad + ("\n" if end_line else ""))
        out.flush()
        self._line_width = 0 if end_line else len(line)


def _import_tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError as e:
        raise ImportError('verbose="tqdm" needs the optional tqdm package: pip install tqdm '
                          "(or use verbose=1 for cnnkit's built-in progress bar)") from e
    return tqdm


class TqdmProgbarLogger(_ProgressCallback):
    """A tqdm bar per epoch (``tqdm.auto``: a widget in notebooks), written to ``file``
    (default: sys.stdout at write time); the epoch logs end up in the bar's postfix. tqdm is
    imported when this is constructed; ImportError with an install hint when it is missing."""

    def __init__(self, file=None, **tqdm_kwargs):
        super().__init__(file)
        self._tqdm = _import_tqdm()
        self._tqdm_kwargs = tqdm_kwargs
        self._bar = None

    def on_epoch_begin(self, epoch, logs=None):
        kwargs = {"unit": "step", "leave": True, "dynamic_ncols": True, **self._tqdm_kwargs}
        self._bar = self._tqdm(total=self.params.get("steps"), desc=self._epoch_title(epoch),
                               file=self._out(), **kwargs)

    def on_train_batch_end(self, batch, logs=None):
        if logs:
            self._bar.set_postfix_str(_format_logs(logs), refresh=False)
        self._bar.update(batch + 1 - self._bar.n)  # tqdm throttles its own redraws

    def on_epoch_end(self, epoch, logs=None):
        self._bar.set_postfix_str(_format_logs(logs), refresh=False)
        self._bar.close()
        self._bar = None

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def write_message(self, text):
        self._tqdm.write(text, file=self._out())


def _resolve_verbose(verbose, file=None):
    """0, 1, 2 or "tqdm"; "auto" becomes 1 on a terminal, else 2 (logs get no \\r)."""
    if verbose == "auto":
        isatty = getattr(file if file is not None else sys.stdout, "isatty", None)
        return 1 if isatty is not None and isatty() else 2
    if verbose == "tqdm":
        return verbose
    if isinstance(verbose, (bool, numbers.Integral)) and int(verbose) in (0, 1, 2):
        return int(verbose)
    raise ValueError(f'verbose must be 0, 1, 2, "auto" or "tqdm", got {verbose!r}')


def make_progress(verbose, file=None):
    """The progress callback for a ``verbose`` value, or None for 0.

    0: None. 1: ProgbarLogger(1), a bar redrawn with \\r. 2: ProgbarLogger(2), one line per
    epoch. "auto": 1 when ``file`` (default sys.stdout) is a terminal, else 2. "tqdm":
    TqdmProgbarLogger (ImportError with an install hint when tqdm is missing).
    """
    verbose = _resolve_verbose(verbose, file)
    if verbose == 0:
        return None
    if verbose == "tqdm":
        return TqdmProgbarLogger(file=file)
    return ProgbarLogger(verbose, file=file)
