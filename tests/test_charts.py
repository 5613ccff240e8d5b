"""Tests for viz.charts: training curves, per-class bars, confusion matrix (Agg backend)."""

from __future__ import annotations

import csv
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
