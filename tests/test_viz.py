"""Tests for unet_lib.viz: overlays and figures (Agg backend, every figure closed)."""

from __future__ import annotations

import ast
import csv
import os

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unet_lib import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def square_mask(h=12, w=12, top=2, left=3, side=5, value=1):
    mask = np.zeros((h, w), np.int32)
    mask[top : top + side, left : left + side] = value
    return mask


def batch(n=5, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size, 1)).astype(np.float32)
    masks = np.zeros((n, size, size), np.int32)
    masks[:, 4:10, 4:10] = 1
    masks[:, 12:15, 1:4] = 2
    masks[:, 0, 0] = -1
    probs = rng.random((n, size, size, 3)).astype(np.float32)
    return images, masks, probs


def assert_saved_png(path):
    assert cv2.imread(str(path)) is not None
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temp file left behind


# --------------------------------------------------------------------------- colours, overlay


def test_label_colors():
    pal = viz.label_colors(3)
    assert pal.shape == (3, 3) and pal.dtype == np.uint8
    assert pal[0].tolist() == [0, 0, 0]  # background black
    assert pal[1].tolist() == [230, 159, 0]  # Okabe-Ito orange
    big = viz.label_colors(40)
    np.testing.assert_array_equal(big[:3], pal)  # fixed: a prefix of the longer palette
    assert len({tuple(c) for c in big}) == 40  # all distinct
    assert viz.label_colors(0).shape == (0, 3)


def test_overlay_tint_changes_only_labelled_pixels():
    image = np.full((12, 12, 1), 0.2, np.float32)  # grey 0.2 -> 51
    mask = square_mask()
    mask[11, 11] = -1
    out = viz.overlay(image, mask, alpha=0.45)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    background = mask == 0
    assert (out[background] == 51).all()  # untouched grey
    orange = np.array([230, 159, 0])
    expected = np.round(0.55 * 51 + 0.45 * orange)  # 131.55 -> 132, 99.6 -> 100, 28.05 -> 28
    assert (out[mask == 1] == expected).all()
    np.testing.assert_array_equal(out[11, 11], np.round(0.55 * 51 + 0.45 * 128))  # ignore grey
    out = viz.overlay(image, mask, ignore_color=None)
    assert (out[11, 11] == 51).all()


def test_overlay_outline_marks_only_the_boundary():
    image = np.full((12, 12), 0.5, np.float32)
    mask = square_mask()  # 5x5 square at rows 2..6, cols 3..7
    out = viz.overlay(image, mask[..., None], mode="outline")
    changed = (out != 128).any(-1)
    ring = np.zeros((12, 12), bool)
    ring[2:7, 3:8] = True
    ring[3:6, 4:7] = False  # the 3x3 interior stays
    np.testing.assert_array_equal(changed, ring)  # 16 boundary pixels
    assert (out[ring] == [230, 159, 0]).all()


def test_overlay_inputs_and_errors():
    rgb = np.zeros((8, 8, 3), np.uint8)
    assert viz.overlay(rgb, np.zeros((8, 8), np.int64)).shape == (8, 8, 3)
    two_channel = np.ones((8, 8, 2), np.float32)
    assert viz.overlay(two_channel, np.zeros((8, 8), int))[0, 0].tolist() == [255, 255, 0]
    custom = viz.overlay(rgb, np.ones((8, 8), int), colors=[[0, 0, 0], [1.0, 0, 0]], alpha=1)
    assert (custom == [255, 0, 0]).all()
    with pytest.raises(ValueError, match="shape"):
        viz.overlay(rgb, np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="mode"):
        viz.overlay(rgb, np.zeros((8, 8), int), mode="fill")
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(rgb, np.zeros((8, 8), int), alpha=1.5)
    with pytest.raises(ValueError, match="colors"):
        viz.overlay(rgb, np.full((8, 8), 2), colors=[[0, 0, 0], [255, 0, 0]])
    with pytest.raises(ValueError, match="integer"):
        viz.overlay(rgb, np.full((8, 8), 0.4))


# --------------------------------------------------------------------------- sample grids


def test_plot_samples_axes_and_save(tmp_path):
    images, masks, probs = batch()
    path = tmp_path / "figs" / "samples.png"
    fig = viz.plot_samples(images, masks, probs, class_names=["bg", "a", "b"], n=3, save=path)
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == 3 * 4  # rows x (image, truth, prediction, overlay)
    assert_saved_png(path)
    fig = viz.plot_samples(list(images), list(masks[..., None]), n=10, overlay_mode="outline")
    assert len(fig.axes) == 5 * 3  # n capped at N; no prediction column


@pytest.mark.parametrize(
    "rank, expected",
    [("worst", [4, 1, 0, 3]), ("best", [3, 0, 1, 4]), ("none", [0, 1, 2, 3])],
)
def test_plot_samples_ranking_follows_scores(rank, expected):
    images, masks, probs = batch()
    scores = [0.5, 0.2, np.nan, 0.9, 0.1]  # NaN goes last
    fig = viz.plot_samples(images, masks, probs, scores=scores, rank=rank, n=4)
    firsts = [fig.axes[4 * r].get_title() for r in range(4)]
    assert [int(t.split()[0][1:]) for t in firsts] == expected
    assert firsts[0].endswith(f"Dice {scores[expected[0]]:.3f}")


def test_plot_samples_errors():
    images, masks, probs = batch()
    with pytest.raises(ValueError, match="scores"):
        viz.plot_samples(images, masks, rank="worst")
    with pytest.raises(ValueError, match="one of each"):
        viz.plot_samples(images, masks[:3])
    with pytest.raises(ValueError, match="scores has"):
        viz.plot_samples(images, masks, scores=[1.0])
    with pytest.raises(ValueError, match="rank"):
        viz.plot_samples(images, masks, scores=[1.0] * 5, rank="median")


def test_plot_augmentations_and_prediction(tmp_path):
    images, masks, probs = batch(n=7)
    fig = viz.plot_augmentations(list(zip(images, masks, strict=True)), max_cols=3)
    assert len(fig.axes) == 14  # image + overlay per pair, unused grid cells removed
    fig = viz.plot_prediction(images[0], masks[0], save=tmp_path / "pred.png")
    assert len(fig.axes) == 2
    assert_saved_png(tmp_path / "pred.png")
    fig = viz.plot_prediction(images[0], probs[0], truth=masks[0], class_names=["a", "b", "c"])
    assert len(fig.axes) == 4  # image, overlay, confidence, colour bar
    fig = viz.plot_prediction(images[0], probs[0, ..., :1])  # binary probabilities
    assert len(fig.axes) == 4


# --------------------------------------------------------------------------- curves, scores


HISTORY = {
    "loss": [0.9, 0.5, 0.3],
    "dice": [0.2, 0.6, 0.7],
    "val_loss": [1.0, 0.6, 0.45],
    "val_dice": [0.1, 0.5, 0.65],
}


def test_plot_history_from_dict(tmp_path):
    fig = viz.plot_history(HISTORY, log_loss=True, save=tmp_path / "h.png")
    assert len(fig.axes) == 2
    loss_ax = fig.axes[0]
    assert loss_ax.get_title() == "loss" and loss_ax.get_yscale() == "log"
    np.testing.assert_array_equal(loss_ax.lines[0].get_xdata(), [1, 2, 3])  # epochs from 1
    np.testing.assert_array_equal(loss_ax.lines[1].get_ydata(), HISTORY["val_loss"])
    assert_saved_png(tmp_path / "h.png")
    fig = viz.plot_history(HISTORY, metrics=["val_dice"])
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "dice"
    with pytest.raises(ValueError, match="available"):
        viz.plot_history(HISTORY, metrics=["iou"])


def test_plot_history_from_csv_and_history_object(tmp_path):
    path = tmp_path / "history.csv"
    with open(path, "w", newline="") as fh:  # what keras.callbacks.CSVLogger writes
        writer = csv.writer(fh)
        writer.writerow(["epoch", "dice", "learning_rate", "loss", "val_dice", "val_loss"])
        for e in range(4):
            writer.writerow([e, 0.2 * e, 1e-3, 1 - 0.2 * e, 0.15 * e, 1.1 - 0.2 * e])
    fig = viz.plot_history(path, ncols=2)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "dice", "learning_rate"]
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [1, 2, 3, 4])

    class FakeHistory:  # the attributes of keras.callbacks.History used
        history = HISTORY
        epoch = [5, 6, 7]  # resumed training

    fig = viz.plot_history(FakeHistory())
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [6, 7, 8])
    with pytest.raises(FileNotFoundError):
        viz.plot_history(tmp_path / "missing.csv")
    with pytest.raises(TypeError):
        viz.plot_history([1, 2, 3])


def test_plot_per_class_nan_bars(tmp_path):
    per_class = {
        "background": {"dice": 0.98, "iou": 0.96},
        "cell": {"dice": float("nan"), "iou": float("nan")},
        "nucleus": {"dice": 0.8},  # iou missing -> NaN
    }
    fig = viz.plot_per_class(per_class, save=tmp_path / "pc.png")
    (ax,) = fig.axes
    assert len(ax.patches) == 3  # 6 bars minus 3 NaN
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 3
    assert "NaN" in ax.get_xlabel()
    assert_saved_png(tmp_path / "pc.png")
    fig = viz.plot_per_class({"a": {"dice": 0.5}}, metrics="dice")
    assert len(fig.axes[0].patches) == 1 and fig.axes[0].get_xlabel() == ""


def test_plot_confusion_matrix(tmp_path):
    matrix = [[50, 2, 0], [5, 43, 2], [0, 0, 0]]
    fig = viz.plot_confusion_matrix(matrix, ["bg", "a", "b"], save=tmp_path / "cm.png")
    assert len(fig.axes) == 2  # matrix and colour bar
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[:3] == ["0.96", "0.04", "0.00"]  # 50/52, 2/52, 0/52
    assert texts[-3:] == ["-", "-", "-"]  # empty truth row: NaN
    assert_saved_png(tmp_path / "cm.png")
    fig = viz.plot_confusion_matrix(matrix, None, normalize=False)
    assert [t.get_text() for t in fig.axes[0].texts][:2] == ["50", "2"]
    with pytest.raises(ValueError, match="class names"):
        viz.plot_confusion_matrix(matrix, ["bg", "a"])
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion_matrix([[1, 2, 3]], ["a"])


def test_save_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    viz.plot_per_class({"a": {"dice": 0.5, "iou": 0.3}}, save=path)
    assert_saved_png(path)
    fig = plt.figure()
    with pytest.raises(ValueError):
        viz.save_figure(fig, tmp_path / "fig.notaformat")
    assert sorted(os.listdir(tmp_path)) == ["fig.png"]  # failed save leaves no temp file


def test_no_tensorflow_or_keras_import():
    tree = ast.parse(open(viz.__file__).read())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not imported & {"tensorflow", "keras", "torch", "jax"}, imported
