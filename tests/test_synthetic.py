"""Tests for unet_lib.data.synthetic: determinism, layout, difficulty, default locations."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from unet_lib.data import (
    default_data_dir,
    ensure_default_dataset,
    load_dataset,
    make_synthetic_dataset,
    synthetic,
    validate_dataset,
)


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def default_binary(tmp_path_factory):
    """The default binary set (48 x 128x128), generated once, with its generation time."""
    out = tmp_path_factory.mktemp("synth") / "binary"
    start = time.perf_counter()
    make_synthetic_dataset(out)
    return out, time.perf_counter() - start


def best_threshold_dice(images: np.ndarray, fg: np.ndarray) -> float:
    """Best foreground Dice of one global threshold, searching all 256 levels and both
    directions (foreground darker or brighter), pooled over all pixels."""
    levels = np.rint(images * 255).astype(np.int64).ravel()
    fg = fg.ravel()
    h_fg = np.bincount(levels[fg], minlength=256)
    h_bg = np.bincount(levels[~fg], minlength=256)
    best = 0.0
    for a, b in ((h_fg, h_bg), (h_fg[::-1], h_bg[::-1])):
        tp, fp = np.cumsum(a), np.cumsum(b)  # predict fg for levels <= t (or >= t)
        fn = fg.sum() - tp
        best = max(best, float(np.max(2 * tp / (2 * tp + fp + fn))))
    return best


def test_best_threshold_dice_reference():
    # dark foreground perfectly separated: Dice 1; identical levels: 2*2/(2*2+2+0) = 2/3
    assert best_threshold_dice(np.array([0.1, 0.1, 0.9, 0.9]), np.array([1, 1, 0, 0], bool)) == 1.0
    assert best_threshold_dice(
        np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 1, 0, 0], bool)
    ) == pytest.approx(2 / 3)


def test_default_binary_layout_speed_and_mapping(default_binary):
    out, seconds = default_binary
    assert seconds < 5.0, f"default set took {seconds:.1f} s"
    assert len(list((out / "images").glob("*.png"))) == 48
    spec = json.loads((out / "dataset.json").read_text())
    assert spec["labels"] == {"background": 255, "membrane": 0}  # ISBI-style inverted
    summary = validate_dataset(out)
    assert summary.num_pairs == 48 and summary.sizes == {(128, 128): 48}
    assert summary.channels == 1 and summary.mapping.is_binary
    assert 0.1 < summary.class_pixel_shares["membrane"] < 0.4


def test_default_binary_not_solvable_by_a_threshold(default_binary):
    data = load_dataset(default_binary[0])
    images = np.stack(data.images)[..., 0]
    membrane = np.stack(data.masks) == 1
    dice = best_threshold_dice(images, membrane)
    # measured about 0.65 for seed 0; a trained U-Net must do clearly better
    assert dice <= 0.75, dice
    assert dice > 0.3  # the membranes are visibly darker on average


def test_same_seed_byte_identical_different_seed_different(tmp_path):
    kwargs = {"num_images": 3, "size": 64}
    for kind in ("binary", "multiclass"):
        a = make_synthetic_dataset(tmp_path / f"{kind}_a", kind=kind, seed=5, **kwargs)
        b = make_synthetic_dataset(tmp_path / f"{kind}_b", kind=kind, seed=5, **kwargs)
        c = make_synthetic_dataset(tmp_path / f"{kind}_c", kind=kind, seed=6, **kwargs)
        ha, hb, hc = file_hashes(a), file_hashes(b), file_hashes(c)
        assert ha == hb
        differing = [k for k in ha if k.startswith(("images", "masks")) and ha[k] != hc[k]]
        assert len(differing) == 6  # every image and mask changes with the seed


def test_image_depends_only_on_seed_and_index(tmp_path):
    few = make_synthetic_dataset(tmp_path / "few", num_images=2, size=48, seed=1)
    more = make_synthetic_dataset(tmp_path / "more", num_images=4, size=48, seed=1)
    h_few, h_more = file_hashes(few), file_hashes(more)
    for name in ("images/0000.png", "images/0001.png", "masks/0001.png"):
        assert h_few[name] == h_more[name]


def test_multiclass_classes_overlaps_and_colour(tmp_path):
    out = make_synthetic_dataset(tmp_path / "mc", kind="multiclass", num_images=6, size=96)
    data = load_dataset(out)
    assert data.channels == 3
    assert data.mapping.class_names == ("background", "nucleus", "rod", "granule")
    masks = np.stack(data.masks)
    shares = np.bincount(masks.ravel(), minlength=4) / masks.size
    assert np.all(shares > 0.002), shares  # every class is present
    images = np.stack(data.images)
    assert images.dtype == np.float32 and 0 <= images.min() and images.max() <= 1
    # colour images, not grey copies
    assert np.abs(images[..., 0] - images[..., 2]).mean() > 0.02


def test_arguments_and_overwrite(tmp_path):
    out = make_synthetic_dataset(tmp_path / "d", num_images=1, size=32)
    with pytest.raises(FileExistsError, match="overwrite"):
        make_synthetic_dataset(out, num_images=1, size=32)
    make_synthetic_dataset(out, num_images=2, size=32, overwrite=True)
    assert len(list((out / "images").iterdir())) == 2
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="refusing"):
        make_synthetic_dataset(tmp_path / "user", overwrite=True)
    assert (tmp_path / "user" / "thesis.tex").exists()
    for bad in ({"kind": "rgb"}, {"num_images": 0}, {"size": 8}, {"seed": -1}):
        with pytest.raises(ValueError):
            make_synthetic_dataset(tmp_path / "bad", **bad)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp leftovers


def test_default_data_dir_repo_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("UNET_DATA_DIR", raising=False)
    repo = Path(synthetic.__file__).resolve().parents[2]
    assert (repo / "pyproject.toml").is_file()
    assert (
        default_data_dir() == repo / "data" / "generated" / f"binary_v{synthetic.GENERATOR_VERSION}"
    )
    assert default_data_dir("multiclass").name.startswith("multiclass")
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path))
    assert default_data_dir("binary").parent == tmp_path
    with pytest.raises(ValueError, match="kind"):
        default_data_dir("nope")


def test_ensure_default_dataset_generates_once(monkeypatch, tmp_path):
    calls = []
    real = synthetic.make_synthetic_dataset

    def small(out, **kwargs):  # keep the test fast: same code path, fewer images
        calls.append(out)
        return real(
            out,
            kind=kwargs["kind"],
            num_images=2,
            size=32,
            overwrite=kwargs.get("overwrite", False),
        )

    monkeypatch.setattr(synthetic, "make_synthetic_dataset", small)
    path = ensure_default_dataset("binary", root=tmp_path)
    assert path.parent == tmp_path and (path / "dataset.json").is_file()
    assert ensure_default_dataset("binary", root=tmp_path) == path
    assert len(calls) == 1
    # a leftover folder without dataset.json (e.g. created by hand) is regenerated
    (path / "dataset.json").unlink()
    ensure_default_dataset("binary", root=tmp_path)
    assert (path / "dataset.json").is_file() and len(calls) == 2
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path / "env"))
    assert ensure_default_dataset("multiclass").parent == tmp_path / "env"
