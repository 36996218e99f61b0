"""Callbacks and the progress display, driven by hand the way Sequential.fit drives them, on a
fake model: History, EarlyStopping, ModelCheckpoint, LearningRateScheduler, TerminateOnNaN,
CSVLogger, ProgbarLogger (verbose 1, 2, "auto") and the optional tqdm display."""
import csv
import io
import math
import re
import sys

import numpy as np
import pytest

from cnnkit import callbacks as C


class FakeOptimizer:
    def __init__(self, learning_rate=0.1):
        self.learning_rate = learning_rate


class FakeModel:
    """What the callbacks may use of a model. The weight is set to the epoch number during
    each epoch, so restored weights tell which epoch they came from."""

    def __init__(self):
        self.stop_training = False
        self.optimizer = FakeOptimizer()
        self.weights = {"0.weight": np.zeros((2, 3), np.float32), "0.bias": np.zeros(2, np.float32)}
        self.saved = []

    def state_dict(self):
        return self.weights  # the live arrays, as a real model's would be

    def load_state_dict(self, sd):
        for k, v in sd.items():
            self.weights[k][...] = v

    def save(self, path):
        self.saved.append(path)
        with open(path, "w") as f:
            f.write("model")


def fit(callbacks, epoch_logs, steps=3, verbose=0, batch_losses=None, steps_known=True):
    """Run the hooks as fit does: one epoch per dict of epoch logs; batch logs carry the running
    mean of ``batch_losses[epoch]`` (default: the epoch's loss on every batch). Returns
    (History, model, number of epochs run)."""
    model = FakeModel()
    cbs = C.CallbackList(callbacks, model=model, add_history=True, add_progress=True,
                         verbose=verbose, epochs=len(epoch_logs),
                         steps=steps if steps_known else None)
    model.stop_training = False
    cbs.on_train_begin()
    run = 0
    for epoch, logs in enumerate(epoch_logs):
        run += 1
        cbs.on_epoch_begin(epoch)
        losses = batch_losses[epoch] if batch_losses else [logs.get("loss", 1.0)] * steps
        for batch in range(steps):
            cbs.on_train_batch_begin(batch)
            model.weights["0.weight"][...] = epoch
            cbs.on_train_batch_end(batch, {"loss": float(np.mean(losses[:batch + 1]))})
            if model.stop_training:
                break
        cbs.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            break
    cbs.on_train_end()
    return cbs.history, model, run


def losses(*values, key="val_loss"):
    return [{"loss": 1.0, key: v} for v in values]


# ---- CallbackList and History -------------------------------------------------------------

def test_callback_list_calls_every_hook_in_order_with_params_and_model():
    seen = []

    class Recorder(C.Callback):
        def __getattribute__(self, name):
            if name.startswith("on_"):
                return lambda *args: seen.append((name, *args))
            return super().__getattribute__(name)

    rec = Recorder()
    model = FakeModel()
    cbs = C.CallbackList([rec], model=model, epochs=2, steps=5, verbose=0)
    assert rec.model is model and rec.params == {"verbose": 0, "epochs": 2, "steps": 5}
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    cbs.on_train_batch_end(4, {"loss": 0.5})
    cbs.on_test_batch_begin(0)
    cbs.on_predict_end()
    assert seen == [("on_train_begin", {}), ("on_epoch_begin", 0, {}),
                    ("on_train_batch_end", 4, {"loss": 0.5}), ("on_test_batch_begin", 0, {}),
                    ("on_predict_end", {})]


def test_base_callback_has_every_keras_hook_as_a_no_op():
    cb = C.Callback()
    for hook in ("train", "test", "predict"):
        getattr(cb, f"on_{hook}_begin")({})
        getattr(cb, f"on_{hook}_end")({})
        getattr(cb, f"on_{hook}_batch_begin")(0, {})
        getattr(cb, f"on_{hook}_batch_end")(0, {})
    cb.on_epoch_begin(0, {})
    cb.on_epoch_end(0, {})
    cb.on_batch_begin(0)
    cb.on_batch_end(0)


def test_callback_list_adds_history_and_progress_once_after_the_users_callbacks():
    mine = C.EarlyStopping()
    cbs = C.CallbackList([mine], add_history=True, add_progress=True, verbose=2)
    assert cbs.callbacks[0] is mine
    assert isinstance(cbs.history, C.History) and isinstance(cbs.progress, C.ProgbarLogger)
    assert list(cbs) == [mine, cbs.history, cbs.progress]
    own_history, own_bar = C.History(), C.ProgbarLogger(1)
    cbs = C.CallbackList([own_bar, own_history], add_history=True, add_progress=True, verbose=2)
    assert cbs.history is own_history and cbs.progress is own_bar and len(cbs) == 2
    assert C.CallbackList(None, add_progress=True, verbose=0).progress is None


def test_callback_list_rejects_a_class_or_a_non_callback_with_a_clear_message():
    with pytest.raises(TypeError, match=r"callbacks\[0\] is the class EarlyStopping; pass an "
                                        r"instance"):
        C.CallbackList([C.EarlyStopping])
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a cnnkit.callbacks.Callback, "
                                        r"got str"):
        C.CallbackList([C.History(), "csv"])
    with pytest.raises(ValueError, match=r'verbose must be 0, 1, 2, "auto" or "tqdm", got 3'):
        C.CallbackList(verbose=3)


def test_history_records_every_epoch_key_as_floats():
    logs = [{"loss": 0.9, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.4},
            {"loss": 0.6, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": np.float32(0.6)}]
    history, _, _ = fit([], logs)
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [0.9, 0.6], "accuracy": [0.5, 0.7],
                               "val_loss": [1.0, 0.8], "val_accuracy": [0.4, pytest.approx(0.6)]}
    assert all(type(v) is float for vs in history.history.values() for v in vs)


# ---- EarlyStopping --------------------------------------------------------------------------

@pytest.mark.parametrize("values, patience, stopped_epoch", [
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 2, 3),  # stops after 2 epochs without improvement
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 0, 2),  # patience 0 stops at the first one
    ([1.0, 0.9, 0.95, 0.8, 0.97], 2, None),     # an improvement resets the count
])
def test_early_stopping_min_mode_patience(values, patience, stopped_epoch):
    es = C.EarlyStopping(patience=patience)
    _, model, run = fit([es], losses(*values))
    assert es.stopped_epoch == stopped_epoch
    assert model.stop_training == (stopped_epoch is not None)
    assert run == (len(values) if stopped_epoch is None else stopped_epoch + 1)


@pytest.mark.parametrize("mode", ["auto", "max"])
def test_early_stopping_max_mode_and_auto_for_accuracy(mode):
    es = C.EarlyStopping(monitor="val_accuracy", patience=1, mode=mode)
    _, _, run = fit([es], losses(0.5, 0.6, 0.55, 0.9, key="val_accuracy"))
    assert es.mode == "max" and run == 3 and es.best == 0.6 and es.best_epoch == 1


def test_early_stopping_auto_mode_minimizes_losses():
    assert C.EarlyStopping(monitor="loss").mode == "min"
    assert C.EarlyStopping(monitor="val_mean_squared_error").mode == "min"
    assert C.EarlyStopping(monitor="accuracy").mode == "max"
    with pytest.raises(ValueError, match='mode must be "auto", "min" or "max"'):
        C.EarlyStopping(mode="lowest")


def test_early_stopping_min_delta_counts_small_gains_as_no_improvement():
    es = C.EarlyStopping(patience=2, min_delta=0.05)
    _, _, run = fit([es], losses(1.0, 0.97, 0.96, 0.5))
    assert run == 3 and es.best == 1.0  # 0.97 and 0.96 each beat the best by less than 0.05


def test_early_stopping_baseline_must_be_beaten_within_patience():
    es = C.EarlyStopping(patience=2, baseline=0.5)
    _, _, run = fit([es], losses(0.9, 0.8, 0.7, 0.4))
    assert run == 2  # improving, but never below the baseline
    es = C.EarlyStopping(patience=2, baseline=0.5)
    _, _, run = fit([es], losses(0.9, 0.45, 0.6, 0.44, 0.43))
    assert run == 5


def test_early_stopping_start_from_epoch_ignores_early_epochs():
    es = C.EarlyStopping(patience=1, start_from_epoch=2)
    _, _, run = fit([es], losses(1.0, 2.0, 3.0, 2.5, 2.6))
    assert es.stopped_epoch == 4 and es.best == 2.5  # epochs 0 and 1 never count


def test_early_stopping_restore_best_weights_restores_a_copy_at_the_end(capsys):
    es = C.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    _, model, run = fit([es], losses(1.0, 0.5, 0.7, 0.8, 0.9))
    assert run == 4 and es.best_epoch == 1
    # The live weight held 3 when training stopped; the copy kept at epoch 1 is restored.
    np.testing.assert_array_equal(model.weights["0.weight"], np.full((2, 3), 1.0))
    assert capsys.readouterr().out.splitlines() == [
        "Epoch 4: early stopping", "Restoring model weights from the end of the best epoch: 2."]


def test_early_stopping_restores_even_without_stopping():
    es = C.EarlyStopping(patience=5, restore_best_weights=True)
    _, model, run = fit([es], losses(1.0, 0.5, 0.7))
    assert run == 3
    np.testing.assert_array_equal(model.weights["0.weight"], np.full((2, 3), 1.0))


def test_early_stopping_warns_when_the_monitored_key_is_missing():
    es = C.EarlyStopping(patience=0)
    with pytest.warns(UserWarning, match=r"monitors 'val_loss', which is not in the epoch logs "
                                         r"\(available: loss, accuracy\)"):
        _, model, run = fit([es], [{"loss": 1.0, "accuracy": 0.1}, {"loss": 2.0, "accuracy": 0.1}])
    assert run == 2 and not model.stop_training


# ---- ModelCheckpoint -----------------------------------------------------------------------

def test_model_checkpoint_formats_epoch_one_based_and_log_keys(tmp_path):
    ckpt = C.ModelCheckpoint(tmp_path / "run" / "m-{epoch:02d}-{val_loss:.3f}.cnnkit")
    _, model, _ = fit([ckpt], losses(0.5, 0.25))
    assert model.saved == [str(tmp_path / "run" / "m-01-0.500.cnnkit"),
                           str(tmp_path / "run" / "m-02-0.250.cnnkit")]
    assert all((tmp_path / "run" / p).exists() for p in ("m-01-0.500.cnnkit", "m-02-0.250.cnnkit"))


def test_model_checkpoint_unknown_field_names_the_available_keys(tmp_path):
    ckpt = C.ModelCheckpoint(str(tmp_path / "m-{val_acc:.2f}"))
    with pytest.raises(KeyError, match=r"no value for 'val_acc'; available: epoch, loss, val_loss"):
        fit([ckpt], losses(0.5))


@pytest.mark.parametrize("monitor, values, saved_epochs", [
    ("val_loss", [0.5, 0.6, 0.4, 0.4], [1, 3]),
    ("val_accuracy", [0.5, 0.6, 0.4, 0.7], [1, 2, 4]),
])
def test_model_checkpoint_save_best_only(tmp_path, capsys, monitor, values, saved_epochs):
    ckpt = C.ModelCheckpoint(str(tmp_path / "best-{epoch}"), monitor=monitor,
                             save_best_only=True, verbose=1)
    _, model, _ = fit([ckpt], losses(*values, key=monitor))
    assert model.saved == [str(tmp_path / f"best-{e}") for e in saved_epochs]
    out = capsys.readouterr().out
    assert f"Epoch 1: {monitor} improved from" in out and "saving model to" in out
    assert f"Epoch {len(values) if monitor == 'val_loss' else 3}: {monitor} did not improve" in out


def test_model_checkpoint_save_best_only_warns_and_skips_without_the_key(tmp_path):
    ckpt = C.ModelCheckpoint(str(tmp_path / "m"), save_best_only=True)
    with pytest.warns(UserWarning, match="monitors 'val_loss'.*not saving"):
        _, model, _ = fit([ckpt], [{"loss": 1.0}])
    assert model.saved == []


# ---- LearningRateScheduler -----------------------------------------------------------------

def test_lr_scheduler_two_argument_schedule_sets_and_records_the_rate():
    sched = C.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch > 0 else lr)
    history, model, _ = fit([sched], losses(1.0, 0.9, 0.8))
    assert history.history["learning_rate"] == [0.1, 0.05, 0.025]
    assert model.optimizer.learning_rate == 0.025


def test_lr_scheduler_one_argument_schedule(capsys):
    def schedule(epoch):
        return [0.3, 0.2, 0.1][epoch]

    history, model, _ = fit([C.LearningRateScheduler(schedule, verbose=1)], losses(1, 1, 1))
    assert history.history["learning_rate"] == [0.3, 0.2, 0.1]
    assert "Epoch 3: LearningRateScheduler setting learning rate to 0.1." in capsys.readouterr().out


def test_lr_scheduler_errors_from_inside_the_schedule_are_not_hidden():
    def schedule(epoch, lr):
        raise TypeError("bug in my schedule")

    with pytest.raises(TypeError, match="bug in my schedule"):
        fit([C.LearningRateScheduler(schedule)], losses(1.0))
    with pytest.raises(ValueError, match="schedule must return a finite number >= 0, got nan"):
        fit([C.LearningRateScheduler(lambda e: math.nan)], losses(1.0))
    with pytest.raises(TypeError, match=r"schedule must take \(epoch, lr\) or \(epoch\)"):
        C.LearningRateScheduler(lambda: 0.1)


# ---- TerminateOnNaN ------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_terminate_on_nan_stops_at_the_bad_batch_and_says_so(capsys, bad):
    batch_losses = [[1.0, 0.9, 0.8, 0.7], [0.6, bad, 0.5, 0.4], [0.3] * 4]
    _, model, run = fit([C.TerminateOnNaN()], losses(1.0, 1.0, 1.0), steps=4,
                        batch_losses=batch_losses)
    assert model.stop_training and run == 2
    assert capsys.readouterr().out == (
        f"Batch 2 (epoch 2): the loss is {bad}; training stopped (TerminateOnNaN). "
        "Lower the learning rate or check the inputs for NaN.\n")


def test_terminate_on_nan_message_is_not_mixed_into_the_progress_bar(capsys):
    batch_losses = [[1.0, math.nan, 1.0]]
    fit([C.TerminateOnNaN()], losses(1.0), verbose=1, batch_losses=batch_losses)
    # the bar is erased with spaces, then the message gets a line of its own
    assert re.search(r"\r +\rBatch 2 \(epoch 1\): the loss is nan; [^\r]*\n",
                     capsys.readouterr().out)


# ---- CSVLogger -----------------------------------------------------------------------------

def read_csv(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_a_header_and_one_flushed_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    rows_seen = []

    class Peek(C.Callback):  # runs after CSVLogger: the row must already be on disk
        def on_epoch_end(self, epoch, logs=None):
            rows_seen.append(len(read_csv(path)))

    logs = [{"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75}, {"loss": 0.125, "accuracy": 0.5}]
    fit([C.CSVLogger(path), Peek()], logs)
    assert read_csv(path) == [["epoch", "loss", "accuracy", "val_loss"],
                              ["0", "0.5", "0.25", "0.75"], ["1", "0.125", "0.5", "NA"]]
    assert rows_seen == [2, 3]


def test_csv_logger_append_keeps_rows_and_header_and_overwrite_does_not(tmp_path):
    path = tmp_path / "log.csv"
    fit([C.CSVLogger(path, separator=";")], [{"loss": 0.5, "val_loss": 0.75}])
    fit([C.CSVLogger(path, separator=";", append=True)], [{"val_loss": 0.5, "loss": 0.25}] * 2)
    assert read_csv(path, ";") == [["epoch", "loss", "val_loss"], ["0", "0.5", "0.75"],
                                   ["0", "0.25", "0.5"], ["1", "0.25", "0.5"]]
    fit([C.CSVLogger(path, append=False)], [{"loss": 1.0}])
    assert read_csv(path) == [["epoch", "loss"], ["0", "1.0"]]
    fresh = tmp_path / "fresh.csv"
    fit([C.CSVLogger(fresh, append=True)], [{"loss": 1.0}])
    assert read_csv(fresh) == [["epoch", "loss"], ["0", "1.0"]]


# ---- progress display ----------------------------------------------------------------------

class FakeClock:
    def __init__(self, step):
        self.t, self.step = 1000.0, step

    def __call__(self):
        self.t += self.step
        return self.t


EPOCH_LOGS = [{"loss": 0.5, "accuracy": 0.75, "val_loss": 0.625, "val_accuracy": 0.7},
              {"loss": 0.25, "accuracy": 0.875, "val_loss": 0.5, "val_accuracy": 0.8}]


def test_verbose_2_prints_exactly_one_line_per_epoch_and_no_carriage_return(capsys):
    fit([C.ProgbarLogger(2, clock=FakeClock(0.25))], EPOCH_LOGS, steps=40)
    out = capsys.readouterr().out
    assert "\r" not in out
    # 40 batches of 0.25 s, one more clock step to the epoch's end: 10.25 s
    assert out.splitlines() == [
        "Epoch 1/2 - 10s - loss: 0.5000 - accuracy: 0.7500 - val_loss: 0.6250 - "
        "val_accuracy: 0.7000",
        "Epoch 2/2 - 10s - loss: 0.2500 - accuracy: 0.8750 - val_loss: 0.5000 - "
        "val_accuracy: 0.8000",
    ]


def test_verbose_1_redraws_with_carriage_returns_and_shows_eta_metrics_and_final_line(capsys):
    batch_losses = [[0.5] * 100, [0.25] * 100]
    fit([C.ProgbarLogger(1, clock=FakeClock(0.5))], EPOCH_LOGS, steps=100,
        batch_losses=batch_losses)
    out = capsys.readouterr().out
    lines = out.split("\n")
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and lines[4] == ""
    draws = lines[1].split("\r")[1:]
    assert len(draws) == 101  # every batch (0.5 s apart, interval 0.1 s), then the final line
    # After 10 of 100 batches at 0.5 s each: 3 of 30 bar cells, 90 steps (45 s) left.
    assert draws[9] == "[" + "==>" + "." * 27 + "]  10/100 - ETA: 45s - loss: 0.5000"
    assert draws[-1].rstrip() == (
        "[" + "=" * 30 + "] 100/100 - 50s 500ms/step - loss: 0.5000 - "
        "accuracy: 0.7500 - val_loss: 0.6250 - val_accuracy: 0.7000")
    # a redraw shorter than the line before it is padded to cover it
    assert all(len(b) >= len(a.rstrip()) for a, b in zip(draws, draws[1:]))
    assert "ETA: 0s - loss: 0.2500" in lines[3]


def test_verbose_1_is_throttled_to_one_redraw_per_interval(capsys):
    # 10,000 batches of 0.1 ms each: 1 s in all, so about 10 redraws plus the last batch's.
    fit([C.ProgbarLogger(1, clock=FakeClock(1e-4))], EPOCH_LOGS[:1], steps=10_000)
    out = capsys.readouterr().out
    redraws = out.count("\r")
    assert 10 <= redraws <= 14, redraws
    assert "10000/10000" in out and "ETA:" in out and "loss: " in out


def test_verbose_1_partial_bar_is_finished_when_training_stops_mid_epoch(capsys):
    _, _, run = fit([C.TerminateOnNaN(), C.ProgbarLogger(1, clock=FakeClock(0.5))],
                    EPOCH_LOGS, steps=10, batch_losses=[[1.0, 1.0, math.inf] + [1.0] * 7])
    out = capsys.readouterr().out
    assert run == 1 and out.endswith("\n")
    final = out.split("\r")[-1]
    bar = "[" + "=" * 8 + ">" + "." * 21 + "]"  # 3 of 10 steps: 9 of 30 cells
    assert final.startswith(bar + "  3/10 - 2s 500ms/step - loss: 0.5000")


def test_verbose_1_without_a_step_count_shows_seen_over_unknown(capsys):
    fit([C.ProgbarLogger(1, clock=FakeClock(0.5))], EPOCH_LOGS[:1], steps=3, steps_known=False)
    draws = capsys.readouterr().out.split("\r")[1:]
    assert draws[0] == "1/Unknown - 500ms 500ms/step - loss: 0.5000"
    assert draws[1] == "2/Unknown - 1s 500ms/step - loss: 0.5000   "  # padded over draw 0
    assert draws[-1].startswith("[" + "=" * 30 + "] 3/3 - 2s 500ms/step - loss: 0.5000")


def test_other_callbacks_messages_start_on_their_own_line_under_verbose_1(capsys, tmp_path):
    ckpt = C.ModelCheckpoint(str(tmp_path / "m"), verbose=1)
    fit([ckpt, C.ProgbarLogger(1, clock=FakeClock(0.5))], EPOCH_LOGS[:1], steps=4)
    out = capsys.readouterr().out
    # the bar is erased with spaces, the message printed, and the bar finished below it
    assert re.search(r"\r +\rEpoch 1: saving model to [^\r]*\n\r\[=+\] 4/4 - ", out)


@pytest.mark.parametrize("tty, expected", [(True, 1), (False, 2)])
def test_verbose_auto_is_1_on_a_terminal_else_2(monkeypatch, tty, expected):
    class Stdout(io.StringIO):
        def isatty(self):
            return tty

    monkeypatch.setattr(sys, "stdout", Stdout())
    cbs = C.CallbackList(add_progress=True, verbose="auto")
    assert cbs.progress.verbose == expected and cbs.params["verbose"] == expected
    assert C.make_progress("auto", file=Stdout()).verbose == expected


def test_verbose_auto_under_pytest_capture_is_2(capsys):
    fit([], EPOCH_LOGS, verbose="auto")
    out = capsys.readouterr().out
    assert "\r" not in out and len(out.splitlines()) == 2


def test_make_progress_values():
    assert C.make_progress(0) is None and C.make_progress(False) is None
    assert C.make_progress(True).verbose == 1 and C.make_progress(2).verbose == 2
    with pytest.raises(ValueError, match=r'verbose must be 0, 1, 2, "auto" or "tqdm", got \'yes\''):
        C.make_progress("yes")


def test_tqdm_missing_raises_import_error_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm...` raise ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match="pip install tqdm"):
        C.make_progress("tqdm")
    with pytest.raises(ImportError, match="pip install tqdm"):
        C.CallbackList(add_progress=True, verbose="tqdm")


def test_tqdm_display_shows_epochs_steps_and_logs(capsys):
    pytest.importorskip("tqdm")
    fit([Say()], EPOCH_LOGS, steps=50, verbose="tqdm")
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "50/50" in out
    assert "val_accuracy: 0.8000" in out
    assert "message from a callback\n" in out


class Say(C.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self._print("message from a callback")
