"""Tests for unet_lib.training: the run folder, resume, determinism, NaN, time budget,
the registries and the one learning-rate rule."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from unet_lib.data.synthetic import make_synthetic_dataset
from unet_lib.training.callbacks import (
    EarlyStop,
    RunCheckpoint,
    TrainingCurves,
    read_history,
    read_state,
)
from unet_lib.training.loop import TrainConfig, train
from unet_lib.viz import charts

# A model and data small enough for a few seconds per run on a 2-core CPU.
TINY = dict(depth=2, base_filters=4, batch_size=4, verbose=0)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "membranes", num_images=10, size=32, seed=3
    )


def _weights(model):
    return [np.asarray(w) for w in model.get_weights()]


def test_run_folder_holds_everything(tiny_data, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_data, run, epochs=2, **TINY)
    names = ("config.json", "history.csv", "best.keras", "last.keras", "state.json", "curves.png")
    for name in names:
        assert (run / name).is_file(), name
    assert not list(run.glob(".*tmp*")), "temporary files left behind"
    config = json.loads((run / "config.json").read_text())
    assert config["num_classes"] == 1 and config["channels"] == 1
    assert set(config["train_stems"]).isdisjoint(config["val_stems"])
    assert len(config["train_stems"]) + len(config["val_stems"]) == 10
    assert config["devices"]["strategy"] == "default"
    # the configuration rebuilds the model
    rebuilt = TrainConfig.from_dict(config)
    assert rebuilt.base_filters == 4
    with (run / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for key in ("loss", "dice", "iou", "val_loss", "val_dice", "val_iou", "learning_rate"):
        assert np.isfinite(float(rows[-1][key])), key
    state = read_state(run)
    assert state["finished"] and state["epochs_done"] == 2
    assert state["best_epoch"] in (1, 2)
    assert result.history["epoch"] == [1.0, 2.0]
    # curves.png, redrawn each epoch: its series are history.csv's epochs, its star best.keras'
    assert cv2.imread(str(run / "curves.png")) is not None
    curves = charts.history_curves(run / "history.csv", metrics=TrainingCurves.METRICS)
    assert list(curves.panels) == ["loss", "dice"]
    for name in ("loss", "dice"):
        for label in ("train", "val"):
            np.testing.assert_array_equal(curves.panels[name][label][0], [1, 2])
    assert (curves.best_epoch, curves.monitor) == (state["best_epoch"], "val_dice")
    loaded = keras.saving.load_model(run / "best.keras", safe_mode=True)
    x = np.zeros((1, 32, 32, 1), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), result.model.predict(x, verbose=0))


def test_finished_run_is_returned_not_retrained(tiny_data, tmp_path):
    run = tmp_path / "run"
    first = train(tiny_data, run, epochs=1, **TINY)
    stamp = (run / "last.keras").stat().st_mtime_ns
    again = train(tiny_data, run, epochs=1, **TINY)
    assert (run / "last.keras").stat().st_mtime_ns == stamp
    assert again.history == first.history


def test_other_settings_on_an_existing_run_are_refused(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_data, run, epochs=1, **TINY)
    with pytest.raises(ValueError, match="other settings.*base_filters"):
        train(tiny_data, run, epochs=1, **{**TINY, "base_filters": 8})
    # overwrite starts afresh
    result = train(tiny_data, run, epochs=1, overwrite=True, **{**TINY, "base_filters": 8})
    assert json.loads((run / "config.json").read_text())["base_filters"] == 8
    assert result.history["epoch"] == [1.0]


def test_deterministic_runs_are_identical(tiny_data, tmp_path):
    options = dict(epochs=2, seed=7, deterministic=True, **TINY)
    a = train(tiny_data, tmp_path / "a", **options)
    b = train(tiny_data, tmp_path / "b", **options)
    for key in ("loss", "val_loss", "dice", "val_dice"):
        assert a.history[key] == b.history[key], key
    for wa, wb in zip(_weights(a.model), _weights(b.model), strict=True):
        np.testing.assert_array_equal(wa, wb)


class _PoisonWeights(keras.callbacks.Callback):
    """Makes the loss NaN from the second epoch on."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.layers[1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_model(tiny_data, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"NaN at epoch 2.*last good model \(epoch 1\)"):
        train(tiny_data, run, epochs=3, callbacks=[_PoisonWeights()], **TINY)
    state = read_state(run)
    assert state["epochs_done"] == 1 and state["stopped_reason"] == "nan_loss"
    good = keras.saving.load_model(run / "last.keras", safe_mode=True)
    assert all(np.all(np.isfinite(w)) for w in _weights(good))
    assert read_history(run)["epoch"] == [1.0]


def test_time_budget_stops_cleanly(tiny_data, tmp_path):
    run = tmp_path / "run"
    start = time.perf_counter()
    result = train(tiny_data, run, time_budget_minutes=4 / 60, **TINY)
    assert time.perf_counter() - start < 60
    state = read_state(run)
    assert state["finished"] and state["stopped_reason"] == "time_budget"
    assert len(result.history["epoch"]) >= 1
    rates = result.history["learning_rate"]
    assert rates[-1] < 1e-3  # the cosine over the budget has decayed


def test_class_weights_and_weight_map_train(tiny_data, tmp_path):
    result = train(tiny_data, tmp_path / "cw", epochs=1, class_weights="balanced", **TINY)
    weights = result.config.class_weights
    assert len(weights) == 2 and weights[1] > weights[0]  # membranes are the rarer class
    result = train(tiny_data, tmp_path / "wm", epochs=1, weight_map=True, **TINY)
    assert np.isfinite(result.history["loss"][0])


def test_bad_options_fail_early(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="loss must be one of"):
        train(tiny_data, tmp_path / "x", loss="hinge")
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="one weight per class"):
        train(tiny_data, tmp_path / "y", epochs=1, class_weights=[1.0, 2.0, 3.0], **TINY)


_TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys
    from unet_lib.training.loop import train
    train(sys.argv[1], sys.argv[2], epochs=int(sys.argv[3]), depth=2, base_filters=4,
          batch_size=2, steps_per_epoch=int(sys.argv[4]), verbose=0)
    """
)


def test_killed_run_resumes_without_gaps(tiny_data, tmp_path):
    """SIGKILL the training process mid-epoch, rerun: the epochs continue, nothing is lost."""
    run = tmp_path / "run"
    script = tmp_path / "train.py"
    script.write_text(_TRAIN_SCRIPT)
    args = [sys.executable, str(script), str(tiny_data), str(run), "4", "40"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(args, env=env)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            state = read_state(run) if (run / "state.json").exists() else None
            if state and state["epochs_done"] >= 1:
                break
            if process.poll() is not None:
                pytest.fail("training ended before it could be interrupted")
            time.sleep(0.2)
        else:
            pytest.fail("no epoch finished in time")
        time.sleep(0.5)  # into the next epoch
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    interrupted_at = read_state(run)["epochs_done"]
    assert 1 <= interrupted_at < 4
    keras.saving.load_model(run / "last.keras", safe_mode=True)  # not corrupt

    result = train(
        tiny_data,
        run,
        epochs=4,
        depth=2,
        base_filters=4,
        batch_size=2,
        steps_per_epoch=40,
        verbose=0,
    )
    assert result.history["epoch"] == [1.0, 2.0, 3.0, 4.0]
    assert read_state(run)["finished"]
    assert np.all(np.isfinite(result.history["loss"]))


def test_resumed_run_reuses_the_stored_split(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_data, run, epochs=2, **TINY)
    stored = json.loads((run / "config.json").read_text())
    state_path = Path(run) / "state.json"
    state = json.loads(state_path.read_text())
    state.update(finished=False, epochs_done=1)  # as if killed during epoch 2
    state_path.write_text(json.dumps(state))
    result = train(tiny_data, run, epochs=2, seed=0, **TINY)
    assert result.config.val_stems == stored["val_stems"]
    assert result.history["epoch"] == [1.0, 2.0]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({}, (False, 0.5)),  # a run folder from before the choice
        ({"eval_tta": "auto", "eval_threshold": "auto"}, (False, 0.5)),  # no validation
        ({"eval_tta": True, "eval_threshold": 0.55}, (True, 0.55)),
        ({"eval_tta": False, "eval_threshold": 0.3}, (False, 0.3)),
    ],
)
def test_evaluation_settings_read_from_a_run_config(config, expected):
    from unet_lib.training import evaluation_settings

    assert evaluation_settings(config) == expected


def test_validation_set_padded_for_replicas_with_ignored_copies():
    from unet_lib import IGNORE_LABEL
    from unet_lib.training.datasets import even_for_replicas

    images = [np.full((4, 4, 1), i, np.uint8) for i in range(5)]
    masks = [np.full((4, 4), i % 2, np.int32) for i in range(5)]  # mapped label maps
    padded_images, padded_masks = even_for_replicas(images, masks, 2)
    assert len(padded_images) == len(padded_masks) == 6  # 5 -> the next multiple of 2
    assert padded_images[5] is images[0] and (padded_masks[5] == IGNORE_LABEL).all()
    assert even_for_replicas(images, masks, 1) == (images, masks)  # one device: as given
    assert even_for_replicas(images[:4], masks[:4], 2) == (images[:4], masks[:4])


def test_validation_images_of_different_sizes_refused_on_several_replicas():
    """They go one per batch, which two replicas cannot split (TensorFlow's AddN error for
    [1, ...] vs [0, ...], seen with 2 images of 32² and 48² on "cpu:2"): an even count too."""
    from unet_lib.training.datasets import even_for_replicas

    images = [np.zeros((32, 32, 1), np.uint8), np.zeros((48, 48, 1), np.uint8)]
    masks = [np.zeros((32, 32), np.uint8), np.zeros((48, 48), np.uint8)]
    with pytest.raises(ValueError, match="different sizes cannot be split over 2 replicas"):
        even_for_replicas(images, masks, 2)
    assert even_for_replicas(images, masks, 1) == (images, masks)


def test_paths_are_stored_as_text(tmp_path):
    config = TrainConfig(data=tmp_path / "train", val_data=tmp_path / "val")
    assert config.val_data == str(tmp_path / "val") and config.data == str(tmp_path / "train")
    json.dumps(config.to_dict())  # config.json: a Path here failed to serialise


def test_keras_objects_are_accepted_and_stored(tiny_data, tmp_path):
    from unet_lib.losses import DiceLoss

    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    result = train(tiny_data, tmp_path / "run", epochs=1, loss=DiceLoss(name="my_dice"),
                   optimizer="sgd", schedule=schedule, **TINY)  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["loss"]["config"]["name"] == "my_dice"  # the serialised Keras object
    assert config["schedule"]["class_name"] == "ExponentialDecay"
    assert result.model.optimizer.__class__.__name__ == "SGD"
    assert TrainConfig.from_dict(config).loss == config["loss"]  # config.json reads back
    with pytest.raises(ValueError, match="optimizer must be one of .* or a keras.optimizers"):
        TrainConfig(optimizer=3)


def test_one_learning_rate_rule_for_epochs_and_time_budgets():
    """The cosine rule with warm-up, read per step by an epoch run and per fraction of the
    time used by a budget: the same value at the same share of training."""
    from unet_lib.training import TimeBudget
    from unet_lib.training.registry import learning_rate

    config = TrainConfig(epochs=20, warmup_epochs=1)  # warm-up: 5 % of 20 epochs
    by_steps = learning_rate(config, steps_per_epoch=500)  # 10,000 steps, as TimeBudget
    budget = TimeBudget(60, config.learning_rate, warmup_fraction=0.05)
    for fraction in (0.0, 0.025, 0.05, 0.3, 0.75, 1.0):
        expected = float(keras.ops.convert_to_numpy(by_steps(fraction * 10_000)))
        assert budget.learning_rate_at(fraction) == pytest.approx(expected, rel=1e-6)
    assert budget.learning_rate_at(1.0) == pytest.approx(1e-5)  # 1 % of the peak at the end
    assert TimeBudget(60, 1e-3, schedule="constant").learning_rate_at(0.5) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="plateau.*cannot follow a time budget"):
        TrainConfig(schedule="plateau", time_budget_minutes=1)


class _NoModel:  # what RunCheckpoint / EarlyStop use of a model when nothing is written
    stop_training = False


def _drive(callbacks, scores):
    """Ends one epoch per score in ``scores`` (val_dice) on ``callbacks``; returns the epochs
    after which training was asked to stop."""
    model, stops = _NoModel(), []
    for c in callbacks:
        c.set_model(model)
    for epoch, score in enumerate(scores):
        for c in callbacks:
            c.on_epoch_end(epoch, {"loss": 0.5, "val_dice": score})
        if model.stop_training:
            stops.append(epoch + 1)
            model.stop_training = False
    return stops


def test_early_stop_counts_epochs_since_the_checkpoints_best(tmp_path):
    # val_dice 0.5 0.7 0.6 0.7 0.65: best 0.7 at epoch 2 (the second 0.7 is not better), so
    # epochs 3 and 4 are stale: patience 2 stops after epoch 4, patience 3 after epoch 5.
    scores = [0.5, 0.7, 0.6, 0.7, 0.65]
    for patience, stop in ((2, 4), (3, 5), (4, None)):
        checkpoint = RunCheckpoint(tmp_path, is_chief=False)  # not chief: writes nothing
        early = EarlyStop(checkpoint, patience)
        stops = _drive([checkpoint, early], scores)
        assert (stops[0] if stops else None) == stop, patience
        assert early.stopped == (stop is not None) and checkpoint.best_epoch == 2
    # NaN scores never count as better: stale from the start
    checkpoint = RunCheckpoint(tmp_path, is_chief=False)
    assert _drive([checkpoint, EarlyStop(checkpoint, 2)], [float("nan")] * 3) == [2, 3]
    # a resumed run keeps counting from state.json: 4 epochs done, best at 2
    resumed = {"epochs_done": 4, "best_epoch": 2, "best_score": 0.7}
    checkpoint = RunCheckpoint(tmp_path, is_chief=False, initial_state=resumed)
    assert EarlyStop(checkpoint, 2).due() and not EarlyStop(checkpoint, 3).due()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="early_stopping"):
            EarlyStop(checkpoint, bad)
        with pytest.raises(ValueError, match="early_stopping must be a whole number >= 1"):
            TrainConfig(early_stopping=bad)


def test_early_stopping_run_records_why(tiny_data, tmp_path, capsys):
    # A learning rate of 1e-12 leaves float32 weights unchanged (the step is below their
    # precision) and without batch norm nothing else changes: val_dice is the same every
    # epoch, never better than epoch 1's, so patience 1 stops after epoch 2 of 10.
    run = tmp_path / "run"
    options = {**TINY, "verbose": 2, "batch_norm": False, "deterministic": True}
    result = train(tiny_data, run, epochs=10, learning_rate=1e-12, early_stopping=1, **options)
    state = read_state(run)
    assert state["finished"] and state["stopped_reason"] == "early_stopping"
    assert state["epochs_done"] == 2 and state["best_epoch"] == 1
    assert result.history["epoch"] == [1.0, 2.0]
    assert "early stopping after epoch 2: val_dice has not improved for 1 epochs" in (
        capsys.readouterr().out
    )


def test_training_curves_warn_once_and_never_stop_training(tmp_path):
    history = {"epoch": [1.0], "loss": [0.5], "val_loss": [0.6], "val_dice": [0.4]}
    fake = types.SimpleNamespace(  # the RunCheckpoint attributes the curves read
        history=history, epochs_done=1, is_chief=True, monitor="val_dice", mode="max",
        run_dir=tmp_path,
    )  # fmt: skip
    curves = TrainingCurves(fake)
    curves.on_epoch_end(0)
    assert cv2.imread(str(tmp_path / "curves.png")) is not None  # loss, and Dice: val only
    (tmp_path / "file").write_text("not a folder")
    broken = TrainingCurves(fake, tmp_path / "file" / "curves.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for done in (1, 2, 3):
            fake.epochs_done = done
            broken.on_epoch_end(done - 1)  # raises nothing
    assert len(caught) == 1 and "could not draw" in str(caught[0].message)
    assert broken.failed
    fake.is_chief = False  # only the chief draws
    other = TrainingCurves(fake, tmp_path / "other.png")
    other.on_epoch_end(0)
    assert not (tmp_path / "other.png").exists()


def test_training_goes_on_without_matplotlib(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails: as not installed
    run = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="could not draw .*curves.png") as caught:
        train(tiny_data, run, epochs=2, **TINY)
    assert len([w for w in caught if "could not draw" in str(w.message)]) == 1  # once
    assert read_state(run)["epochs_done"] == 2 and not (run / "curves.png").exists()


def test_tensorboard_logs_are_written(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    run = tmp_path / "run"
    result = train(tiny_data, run, epochs=2, tensorboard=True, **TINY)
    assert list((run / "tensorboard" / "train").glob("events.out.tfevents.*"))
    for folder, key in (("train", "loss"), ("validation", "val_loss")):
        events = EventAccumulator(str(run / "tensorboard" / folder)).Reload()
        logged = events.Tensors("epoch_loss")  # one scalar per epoch, steps from 0
        assert [e.step for e in logged] == [0, 1]
        values = [float(make_ndarray(e.tensor_proto)) for e in logged]
        np.testing.assert_allclose(values, result.history[key], rtol=1e-6)


def test_missing_tensorboard_fails_before_training(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # find_spec: not installed
    run = tmp_path / "run"
    with pytest.raises(ModuleNotFoundError, match=r"--tensorboard .*pip install tensorboard"):
        train(tiny_data, run, epochs=1, tensorboard=True, **TINY)
    assert not run.exists()  # nothing started
