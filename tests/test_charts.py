"""Tests for viz.charts: training curves, per-class bars, confusion matrix (Agg backend)."""

from __future__ import annotations

import csv
import math
import os

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unet_lib.viz import charts  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def assert_saved_png(path):
    assert cv2.imread(str(path)) is not None
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left behind


HISTORY = {
    "loss": [0.9, 0.5, 0.3],
    "dice": [0.2, 0.6, 0.7],
    "val_loss": [1.0, 0.6, 0.45],
    "val_dice": [0.1, 0.5, 0.65],
}


def test_plot_history_from_dict(tmp_path):
    fig = charts.plot_history(HISTORY, log_loss=True, save=tmp_path / "h.png")
    assert len(fig.axes) == 2
    loss_ax = fig.axes[0]
    assert loss_ax.get_title() == "loss" and loss_ax.get_yscale() == "log"
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])  # epochs from 1
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), HISTORY["val_loss"])
    assert_saved_png(tmp_path / "h.png")
    fig = charts.plot_history(HISTORY, metrics=["val_dice"])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "dice"
    with pytest.raises(ValueError, match="available"):
        charts.plot_history(HISTORY, metrics=["iou"])


def test_plot_history_from_csv_and_history_object(tmp_path):
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as fh:  # what keras.callbacks.CSVLogger writes
        writer = csv.writer(fh)
        writer.writerow(["epoch", "dice", "learning_rate", "loss", "val_dice", "val_loss"])
        for e in range(4):
            writer.writerow([e, 0.2 * e, 1e-3, 1 - 0.2 * e, 0.15 * e, 1.1 - 0.2 * e])
    fig = charts.plot_history(path, ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "dice", "learning_rate"]
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [1, 2, 3, 4])

    class FakeHistory:  # the attributes of keras.callbacks.History used
        history = HISTORY
        epoch = [5, 6, 7]  # resumed training

    fig = charts.plot_history(FakeHistory())
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [6, 7, 8])
    with pytest.raises(FileNotFoundError):
        charts.plot_history(tmp_path / "missing.csv")
    with pytest.raises(TypeError):
        charts.plot_history([1, 2, 3])


def test_plot_per_class_nan_bars(tmp_path):
    per_class = {
        "background": {"dice": 0.98, "iou": 0.96},
        "cell": {"dice": float("nan"), "iou": float("nan")},
        "nucleus": {"dice": 0.8},  # iou missing -> NaN
    }
    fig = charts.plot_per_class(per_class, save=tmp_path / "pc.png")
    (ax,) = fig.axes
    assert len(ax.patches) == 3  # 6 bars minus 3 NaN
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 3
    assert "NaN" in ax.get_xlabel()
    assert_saved_png(tmp_path / "pc.png")
    fig = charts.plot_per_class({"a": {"dice": 0.5}}, metrics="dice")
    assert len(fig.axes[0].patches) == 1 and fig.axes[0].get_xlabel() == ""


def test_plot_confusion_matrix(tmp_path):
    matrix = [[50, 2, 0], [5, 43, 2], [0, 0, 0]]
    fig = charts.plot_confusion_matrix(matrix, ["bg", "a", "b"], save=tmp_path / "cm.png")
    assert len(fig.axes) == 2  # matrix and colour bar
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["0.96", "0.04", "0.00"]  # 50/52, 2/52, 0/52
    assert texts[-3:] == ["-", "-", "-"]  # empty truth row: NaN
    assert_saved_png(tmp_path / "cm.png")
    fig = charts.plot_confusion_matrix(matrix, None, normalize=False)
    assert [t.get_text() for t in fig.axes[0].texts][:2] == ["50", "2"]
    with pytest.raises(ValueError, match="class names"):
        charts.plot_confusion_matrix(matrix, ["bg", "a"])
    with pytest.raises(ValueError, match="square"):
        charts.plot_confusion_matrix([[1, 2, 3]], ["a"])


# Lowest val_loss at epoch 2 (0.40), highest val_dice at epoch 3 (0.65): best.keras is epoch 3.
SPLIT_BEST = {
    "epoch": [1.0, 2.0, 3.0],  # RUN/history.csv and TrainResult.history count from 1
    "loss": [0.9, 0.5, 0.3],
    "dice": [0.2, 0.6, 0.7],
    "val_loss": [1.0, 0.40, 0.45],
    "val_dice": [0.1, 0.5, 0.65],
}


def _stars(ax):
    return [line for line in ax.lines if line.get_marker() == "*"]


def test_history_csv_epochs_are_not_shifted(tmp_path):
    path = tmp_path / "history.csv"  # as RunCheckpoint writes it: epochs from 1
    path.write_text("epoch,dice,loss,val_dice,val_loss\n1,0.2,0.9,0.1,1.0\n2,0.6,0.5,0.5,0.4\n")
    curves = charts.history_curves(path)
    np.testing.assert_array_equal(curves.panels["loss"]["train"][0], [1, 2])
    np.testing.assert_array_equal(curves.panels["dice"]["val"], [[1, 2], [0.1, 0.5]])
    fig = charts.plot_history(path)
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [1, 2])
    # a dict from a resumed run (epochs 4, 5) keeps its numbers; no epoch column: from 1
    resumed = charts.history_curves({"epoch": [4, 5], "loss": [0.3, 0.2]})
    np.testing.assert_array_equal(resumed.panels["loss"]["train"][0], [4, 5])
    plain = charts.history_curves({"loss": [0.3, 0.2, 0.1]})
    np.testing.assert_array_equal(plain.panels["loss"]["train"][0], [1, 2, 3])


def test_best_epoch_is_the_checkpoints_choice_not_the_lowest_loss():
    curves = charts.history_curves(SPLIT_BEST)
    assert (curves.best_epoch, curves.monitor) == (3, "val_dice")
    fig = charts.plot_history(SPLIT_BEST)
    loss_ax, dice_ax = fig.axes
    # one star per panel, on the validation line at epoch 3: val_loss 0.45, val_dice 0.65
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in _stars(loss_ax)] == [(3, 0.45)]
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in _stars(dice_ax)] == [(3, 0.65)]
    assert "best val_dice" in [t.get_text() for t in loss_ax.get_legend().get_texts()]
    # the plotted lines are the series history_curves builds
    for ax, name in ((loss_ax, "loss"), (dice_ax, "dice")):
        for line, label in zip(ax.lines[:2], ("train", "val"), strict=True):
            x, y = curves.panels[name][label]
            np.testing.assert_array_equal(line.get_xdata(), x)
            np.testing.assert_array_equal(line.get_ydata(), y)
    by_loss = charts.history_curves(SPLIT_BEST, monitor="val_loss", mode="min")
    assert by_loss.best_epoch == 2  # argmin [1.0, 0.40, 0.45]
    assert not _stars(charts.plot_history(SPLIT_BEST, monitor=None).axes[0])


@pytest.mark.parametrize(
    ("history", "best", "monitor"),
    [
        ({"val_dice": [0.5, 0.7, 0.7]}, 2, "val_dice"),  # a tie keeps the first (strict >)
        ({"val_dice": [math.nan, 0.3, math.nan]}, 2, "val_dice"),  # NaN never wins
        ({"val_dice": [math.nan, math.nan]}, None, "val_dice"),  # no finite score: no best
        ({"loss": [0.5, 0.4], "dice": [0.3, 0.2]}, 1, "dice"),  # no validation: dice
        ({"loss": [0.5, 0.4]}, None, None),  # no Dice at all
        ({"epoch": [0, 1, 2], "val_dice": [0.1, 0.9, 0.2]}, 2, "val_dice"),  # CSVLogger, +1
    ],
)
def test_best_epoch_edge_cases(history, best, monitor):
    curves = charts.history_curves(history)
    assert (curves.best_epoch, curves.monitor) == (best, monitor)


def test_best_star_on_the_train_line_without_validation():
    fig = charts.plot_history({"loss": [0.5, 0.4], "dice": [0.3, 0.2]})
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in _stars(fig.axes[1])] == [(1, 0.3)]
    assert [(s.get_xdata()[0], s.get_ydata()[0]) for s in _stars(fig.axes[0])] == [(1, 0.5)]
    with pytest.raises(ValueError, match="mode"):
        charts.history_curves(HISTORY, mode="highest")
