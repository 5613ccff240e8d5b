"""Tests for unet_lib.viz.samples: image figures and saving (Agg backend, every figure closed).

Overlays and colours: test_overlay.py; curves and scores: test_charts.py.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

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


# --------------------------------------------------------------------------- sample grids


def test_plot_samples_axes_and_save(tmp_path):
    images, masks, probs = batch()
    path = tmp_path / "figs" / "samples.png"
    fig = viz.plot_samples(images, masks, probs, class_names=["bg", "a", "b"], n=3, save=path)
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == 3 * 4  # rows x (image, truth, prediction, errors)
    assert [ax.get_title() for ax in fig.axes[1:4]] == ["truth", "prediction", "errors"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["bg", "a", "b", "true positive", "false positive", "false negative"]
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


def test_plot_samples_rows_by_name_and_a_title():
    images, masks, probs = batch()
    stems = ["a", "b", "c", "d", "0123456789abcdef0123456789"]
    fig = viz.plot_samples(images, masks, probs, scores=[0.5, 0.2, 0.4, 0.9, 0.1], rank="worst",
                           n=2, names=stems, title="mean Dice 0.420")  # fmt: skip
    assert [fig.axes[4 * r].get_title() for r in range(2)] == [
        "0123456789a…6789  Dice 0.100",  # long stems keep their start and end
        "b  Dice 0.200",
    ]
    assert fig._suptitle.get_text() == "mean Dice 0.420"
    with pytest.raises(ValueError, match="2 names for 5 images"):
        viz.plot_samples(images, masks, names=["a", "b"])


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


def test_save_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "fig.png"
    path.write_bytes(b"old")
    viz.plot_per_class({"a": {"dice": 0.5, "iou": 0.3}}, save=path)
    assert_saved_png(path)
    fig = plt.figure()
    with pytest.raises(ValueError):
        viz.save_figure(fig, tmp_path / "fig.notaformat")
    assert sorted(os.listdir(tmp_path)) == ["fig.png"]  # failed save leaves no temp file


@pytest.mark.parametrize("module", ["samples", "palette", "charts", "figures"])
def test_no_tensorflow_or_keras_import(module):
    tree = ast.parse(open(Path(viz.__file__).with_name(f"{module}.py")).read())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not imported & {"tensorflow", "keras", "torch", "jax"}, imported


def test_split_out_names_still_importable_from_viz():
    # overlay, charts and figures were split out of viz.py, which re-exports their names
    from unet_lib.viz import charts, figures
    from unet_lib.viz import palette as overlay

    for module in (overlay, charts, figures):
        for name in module.__all__:
            assert getattr(viz, name) is getattr(module, name), name
    assert {"plot_samples", "plot_augmentations", "plot_history", "plot_per_class"} <= set(
        viz.__all__
    )


def test_the_face_and_overlays_import_no_matplotlib():
    # inference draws its overlays with viz.overlay: that must not pull in Matplotlib
    import subprocess
    import sys

    code = (
        "import sys; from unet_lib.viz import label_colors, overlay; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(viz.__file__).parents[2])
