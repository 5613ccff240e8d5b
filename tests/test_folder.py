"""Tests for unet_lib.data.folder: pairing, validation, loading, dataset.json in a folder.

Unit tests of the parts split out of folder.py: test_labels.py, test_files.py (reading),
test_splits.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from unet_lib import IGNORE_LABEL
from unet_lib.data import (
    IMAGE_EXTENSIONS,
    DatasetError,
    find_pairs,
    load_dataset,
    load_label_mapping,
    read_image,
    read_mask,
    split_dataset,
    validate_dataset,
)

ISBI_LABELS = {"labels": {"background": 255, "membrane": 0}}
VNC_LABELS = {
    "labels": {
        "membrane": [0, 32, 64, 96, 128],
        "glia": 159,
        "mitochondria": 191,
        "synapse": 223,
        "intracellular": 255,
    }
}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def grey(h=8, w=8, value=100, dtype=np.uint8):
    return np.full((h, w), value, dtype)


def binary_mask(h=8, w=8, fg=255):
    m = np.zeros((h, w), np.uint8)
    m[: h // 2] = fg
    return m


def make_dataset(root: Path, pairs: dict, *, labels: dict | None = None) -> Path:
    """pairs: {"a.png": (image, "a.png", mask)}; image/mask None = file not written."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for image_name, (image, mask_name, mask) in pairs.items():
        if image is not None:
            assert cv2.imwrite(str(root / "images" / image_name), image)
        if mask is not None:
            assert cv2.imwrite(str(root / "masks" / mask_name), mask)
    if labels is not None:
        (root / "dataset.json").write_text(json.dumps(labels))
    return root


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def problems_of(exc_info) -> list[str]:
    return exc_info.value.problems


# --------------------------------------------------------------------------------------
# pairing
# --------------------------------------------------------------------------------------


def test_find_pairs_matches_by_stem_across_formats_and_sorts_naturally(tmp_path):
    ds = make_dataset(
        tmp_path,
        {
            "s10.tif": (grey(), "s10.png", binary_mask()),
            "s2.jpg": (grey(), "s2.png", binary_mask()),
            "s1.BMP": (grey(), "s1.png", binary_mask()),
        },
    )
    (ds / "images" / "notes.txt").write_text("ignored")
    (ds / "images" / ".hidden.png").write_bytes(b"ignored")
    pairs = find_pairs(ds)
    assert [p.stem for p in pairs] == ["s1", "s2", "s10"]  # natural order
    assert pairs[2].image_path.name == "s10.tif" and pairs[2].mask_path.name == "s10.png"
    assert ".tif" in IMAGE_EXTENSIONS and ".bmp" in IMAGE_EXTENSIONS


def test_find_pairs_lists_all_unpaired_files(tmp_path):
    ds = make_dataset(
        tmp_path,
        {
            "a.png": (grey(), "a.png", binary_mask()),
            "b.png": (grey(), "x.png", None),  # image without mask
            "c.png": (None, "c.png", binary_mask()),  # mask without image
        },
    )
    with pytest.raises(DatasetError) as e:
        find_pairs(ds)
    probs = problems_of(e)
    assert len(probs) == 2
    assert any("b.png" in p and "no mask" in p for p in probs)
    assert any("c.png" in p and "no image" in p for p in probs)


def test_duplicate_stems_reported(tmp_path):
    ds = make_dataset(tmp_path, {"a.png": (grey(), "a.png", binary_mask())})
    cv2.imwrite(str(ds / "images" / "a.tif"), grey())
    with pytest.raises(DatasetError) as e:
        find_pairs(ds)
    assert any("a.tif" in p and "same stem" in p for p in problems_of(e))


@pytest.mark.parametrize("missing", ["images", "masks"])
def test_missing_subfolder(tmp_path, missing):
    ds = make_dataset(tmp_path, {"a.png": (grey(), "a.png", binary_mask())})
    for f in (ds / missing).iterdir():
        f.unlink()
    (ds / missing).rmdir()
    with pytest.raises(DatasetError) as e:
        validate_dataset(ds)
    assert any(f"missing {missing}/ folder" in p and str(ds / missing) in p for p in problems_of(e))


def test_missing_both_subfolders_and_missing_dir(tmp_path):
    with pytest.raises(DatasetError) as e:
        validate_dataset(tmp_path)
    assert len(problems_of(e)) == 2
    with pytest.raises(DatasetError, match="not found"):
        validate_dataset(tmp_path / "nope")


def test_empty_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError) as e:
        validate_dataset(tmp_path)
    probs = problems_of(e)
    assert len(probs) == 2 and all("empty" in p for p in probs)
    assert "readme.txt" in probs[0]  # says which files were ignored


# --------------------------------------------------------------------------------------
# validation: everything reported together
# --------------------------------------------------------------------------------------


def test_validation_lists_every_problem_at_once(tmp_path):
    labels = {"labels": {"background": 0, "foreground": 255}}
    ds = make_dataset(
        tmp_path,
        {
            "ok.png": (grey(), "ok.png", binary_mask()),
            "ok2.png": (grey(), "ok2.png", binary_mask()),
            "ok3.png": (grey(), "ok3.png", binary_mask()),
            "lonely.png": (grey(), "lonely.png", None),
            "orphan.png": (None, "orphan.png", binary_mask()),
            "trunc.png": (grey(32, 32), "trunc.png", binary_mask(32, 32)),
            "trunc_jpeg.jpg": (grey(32, 32), "trunc_jpeg.png", binary_mask(32, 32)),
            "trunc_mask.png": (grey(), "trunc_mask.png", binary_mask()),
            "size.png": (grey(8, 8), "size.png", binary_mask(8, 9)),
            "values.png": (grey(), "values.png", binary_mask(fg=7)),
            "rgb.png": (np.zeros((8, 8, 3), np.uint8), "rgb.png", binary_mask()),
        },
        labels=labels,
    )
    truncate(ds / "images" / "trunc.png")
    truncate(ds / "images" / "trunc_jpeg.jpg")
    truncate(ds / "masks" / "trunc_mask.png")
    (ds / "images" / "garbage.png").write_bytes(b"not an image")
    cv2.imwrite(str(ds / "masks" / "garbage.png"), binary_mask())

    with pytest.raises(DatasetError) as e:
        validate_dataset(ds)
    probs = problems_of(e)
    expected = {
        "lonely.png": "no mask",
        "orphan.png": "no image",
        "trunc.png": "cannot be decoded",
        "trunc_jpeg.jpg": "truncated JPEG",
        "trunc_mask.png": "cannot be decoded",
        "garbage.png": "cannot be decoded",
        "size.png": "differs from its mask",
        "values.png": "{7}",
        "rgb.png": "3 channel(s)",
    }
    assert len(probs) == len(expected), "\n".join(probs)
    for name, what in expected.items():
        assert any(name in p and what in p for p in probs), (name, probs)
    # the message lists them one per line, after a header
    assert str(e.value).count("\n") == len(expected)
    # same problems from load_dataset
    with pytest.raises(DatasetError) as e2:
        load_dataset(ds)
    assert sorted(problems_of(e2)) == sorted(probs)


def test_mixed_channels_converted_when_asked(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 2] = 255  # BGR: pure red
    ds = make_dataset(
        tmp_path,
        {"g.png": (grey(value=51), "g.png", binary_mask()), "c.png": (rgb, "c.png", binary_mask())},
    )
    with pytest.raises(DatasetError, match="pass channels="):
        validate_dataset(ds)
    data3 = load_dataset(ds, channels=3)
    assert data3.channels == 3 and all(im.shape == (8, 8, 3) for im in data3.images)
    np.testing.assert_allclose(data3.images[1][0, 0], [0.2, 0.2, 0.2], atol=1e-6)  # g, repeated
    np.testing.assert_allclose(data3.images[0][0, 0], [1, 0, 0])  # c, RGB order
    data1 = load_dataset(ds, channels=1)
    assert data1.channels == 1 and data1.images[0].shape == (8, 8, 1)
    # luminance of pure red: 0.299
    np.testing.assert_allclose(data1.images[0][0, 0, 0], 0.299, atol=1e-3)
    summary = validate_dataset(ds, channels=3)
    assert summary.stored_channels == {1: 1, 3: 1} and "converted" in summary.format()
    with pytest.raises(ValueError, match="channels must be"):
        validate_dataset(ds, channels=2)


# --------------------------------------------------------------------------------------
# label mappings in dataset folders (unit tests: test_labels.py)
# --------------------------------------------------------------------------------------


def test_dataset_json_single_values_inverted_like_isbi(tmp_path):
    ds = make_dataset(tmp_path, {"a.png": (grey(), "a.png", binary_mask())}, labels=ISBI_LABELS)
    data = load_dataset(ds)
    assert data.mapping.class_names == ("background", "membrane")
    # mask 255 (top half) -> background 0, mask 0 -> membrane 1
    assert data.masks[0].dtype == np.int32
    assert data.masks[0][0, 0] == 0 and data.masks[0][-1, 0] == 1
    assert data.images[0].dtype == np.float32 and data.images[0].shape == (8, 8, 1)


def test_dataset_json_lists_and_ignore_value(tmp_path):
    mask = np.array([[0, 32, 159], [255, 11, 11]], np.uint8)
    labels = {"labels": {"membrane": [0, 32], "glia": 159, "cell": 255}, "ignore_value": 11}
    ds = make_dataset(tmp_path, {"a.png": (grey(2, 3), "a.png", mask)}, labels=labels)
    data = load_dataset(ds)
    assert data.masks[0].tolist() == [[0, 0, 1], [2, IGNORE_LABEL, IGNORE_LABEL]]
    summary = validate_dataset(ds)
    # 4 labelled pixels: membrane 2, glia 1, cell 1; 2 of 6 pixels ignored
    assert summary.class_pixel_shares == {"membrane": 0.5, "glia": 0.25, "cell": 0.25}
    assert summary.ignored_share == pytest.approx(2 / 6)
    assert summary.mapping_source == "dataset.json"
    text = str(summary)
    assert "ignored (mask value 11)" in text and "50.00 %" in text


def test_inferred_mapping_in_dataset(tmp_path):
    masks = {"a.png": np.array([[0, 1], [2, 2]], np.uint8), "b.png": np.zeros((2, 2), np.uint8)}
    ds = make_dataset(tmp_path, {k: (grey(2, 2), k, v) for k, v in masks.items()})
    data = load_dataset(ds)
    assert data.mapping.num_classes == 3 and data.masks[0].tolist() == [[0, 1], [2, 2]]
    assert validate_dataset(ds).mapping_source == "inferred"


def test_bad_values_without_json_error_shows_json(tmp_path):
    ds = make_dataset(tmp_path, {"a.png": (grey(), "a.png", binary_mask(fg=128))})
    with pytest.raises(DatasetError) as e:
        validate_dataset(ds)
    (p,) = problems_of(e)
    assert str(ds / "dataset.json") in p and "{0, 128}" in p
    assert '{"labels": {"background": 0, "foreground": 128}}' in p


def test_labels_argument_overrides_dataset_json(tmp_path):
    ds = make_dataset(
        tmp_path,
        {"a.png": (grey(), "a.png", binary_mask())},
        labels={"labels": {"bg": 0, "fg": 255}},
    )
    assert load_dataset(ds).masks[0][0, 0] == 1
    for labels in (ISBI_LABELS, json.dumps(ISBI_LABELS), {"background": 255, "membrane": 0}):
        data = load_dataset(ds, labels=labels)
        assert data.mapping.class_names == ("background", "membrane")
        assert data.masks[0][0, 0] == 0
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(ISBI_LABELS))
    assert load_label_mapping(ds, str(path)).class_names == ("background", "membrane")
    assert validate_dataset(ds, labels=path).mapping_source == "argument"


def test_malformed_dataset_json_named(tmp_path):
    ds = make_dataset(tmp_path, {"a.png": (grey(), "a.png", binary_mask())})
    (ds / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError) as e:
        validate_dataset(ds)
    assert str(ds / "dataset.json") in problems_of(e)[0] and "not valid JSON" in str(e.value)
    (ds / "dataset.json").write_text(json.dumps({"labels": {"a": 0, "b": 0}}))
    with pytest.raises(DatasetError, match="given to both"):
        validate_dataset(ds)
    (ds / "dataset.json").write_text(json.dumps({"labels": {"a": 0, "b": 255}, "ignore": 3}))
    with pytest.raises(DatasetError, match="unknown key"):
        validate_dataset(ds)
    with pytest.raises(DatasetError, match="labels file not found"):
        load_label_mapping(ds, "nope.json")


def test_loaded_dataset_select(tmp_path):
    ds = make_dataset(
        tmp_path, {f"{k}.png": (grey(value=k), f"{k}.png", binary_mask()) for k in (1, 2, 3)}
    )
    data = load_dataset(ds)
    sub = data.select(["3", "1"])
    assert sub.stems == ["3", "1"] and len(sub) == 2
    assert sub.images[0][0, 0, 0] == pytest.approx(3 / 255)


# --------------------------------------------------------------------------------------
# real data (skipped without UNET_SHARED_DATA)
# --------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_isbi2012_with_labels_argument(shared_data):
    folder = shared_data / "isbi2012_membrane"
    summary = validate_dataset(folder, labels=ISBI_LABELS)
    assert summary.num_pairs == 24 and summary.sizes == {(512, 512): 24}
    assert summary.channels == 1 and summary.mapping.class_names == ("background", "membrane")
    assert 0.15 < summary.class_pixel_shares["membrane"] < 0.3
    data = load_dataset(folder, labels=ISBI_LABELS)
    assert data.images[0].shape == (512, 512, 1) and data.images[0].dtype == np.float32
    assert set(np.unique(data.masks[0]).tolist()) == {0, 1}
    assert not (folder / "dataset.json").exists()  # nothing written into the shared folder
    split = split_dataset(data.stems, val_fraction=0.25, contiguous=True)
    # the last block of slices in natural order (plain string sorting would put "9" last)
    assert split["val"] == data.stems[-6:] == [str(i) for i in range(18, 24)]


@pytest.mark.shared_data
def test_real_dsb2018_rgba_inferred_binary(shared_data):
    folder = shared_data / "dsb2018_nuclei"
    summary = validate_dataset(folder)
    assert summary.channels == 3 and summary.stored_channels == {3: summary.num_pairs}
    assert summary.mapping.values == ((0,), (255,)) and summary.sizes == {(256, 320): 107}
    pairs = find_pairs(folder)[:3]
    img = read_image(pairs[0].image_path)
    assert img.shape == (256, 320, 3) and 0 <= img.min() and img.max() <= 1
    m = summary.mapping.encode(read_mask(pairs[0].mask_path), pairs[0].mask_path)
    assert set(np.unique(m).tolist()) <= {0, 1}


@pytest.mark.shared_data
def test_real_vnc_multiclass_five_classes(shared_data):
    folder = shared_data / "vnc_multiclass"
    with pytest.raises(DatasetError, match="dataset.json"):
        validate_dataset(folder)  # 9 grey values: needs a mapping
    summary = validate_dataset(folder, labels=VNC_LABELS)
    assert summary.num_pairs == 20 and summary.sizes == {(1024, 1024): 20}
    shares = summary.class_pixel_shares
    assert list(shares) == ["membrane", "glia", "mitochondria", "synapse", "intracellular"]
    assert shares["synapse"] < 0.02 and sum(shares.values()) == pytest.approx(1.0)
    pair = find_pairs(folder)[0]
    assert pair.image_path.suffix == ".tif"
    labels = summary.mapping.encode(read_mask(pair.mask_path), pair.mask_path)
    assert labels.shape == (1024, 1024) and set(np.unique(labels).tolist()) <= set(range(5))


def test_import_is_light_and_lazy_names_listed():
    # a fresh interpreter: importing the data layer must not import TensorFlow
    code = (
        "import sys, unet_lib.data as d; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; "
        "assert {'make_dataset', 'AugmentConfig', 'augment_pair', 'preview_augmentations'}"
        " <= set(dir(d)); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    import unet_lib.data

    with pytest.raises(AttributeError, match="no attribute"):
        unet_lib.data.not_a_name  # noqa: B018


def test_split_out_names_still_importable_from_folder():
    # labels, files and splits were split out of folder.py, which re-exports their names
    from unet_lib.data import files, folder, labels, splits

    for module in (files, labels, splits):
        for name in module.__all__:
            assert getattr(folder, name) is getattr(module, name), name
    assert set(folder.__all__) >= set(files.__all__) | set(labels.__all__) | set(splits.__all__)


def test_empty_classes_and_one_class_masks_are_warned_about(tmp_path, capsys):
    from unet_lib.cli import main

    labels = {"labels": {"background": 0, "membrane": 255, "glia": 128}}
    ds = make_dataset(tmp_path / "a", {"a.png": (grey(), "a.png", binary_mask())}, labels=labels)
    with pytest.warns(UserWarning, match="class 'glia' has no pixels in any mask"):
        summary = validate_dataset(ds)
    assert summary.warnings == [
        "class 'glia' has no pixels in any mask: the model cannot learn it; add examples or "
        "remove it from dataset.json"
    ]
    assert main(["check", "--data", str(ds)]) == 0  # still usable: a warning, not an error
    assert "warning: class 'glia' has no pixels" in capsys.readouterr().out
    # every mask all background: one line for the set
    blank = make_dataset(tmp_path / "b", {"a.png": (grey(), "a.png", np.zeros((8, 8), np.uint8))},
                         labels={"labels": {"background": 0, "cell": 255}})  # fmt: skip
    with pytest.warns(UserWarning, match="every mask holds only class 'background'"):
        load_dataset(blank)
    # a healthy binary set: no warning
    fine = make_dataset(tmp_path / "c", {"a.png": (grey(), "a.png", binary_mask())})
    assert validate_dataset(fine).warnings == []


def test_background_listed_second_is_warned_about(tmp_path):
    # {"membrane": 0, "background": 255}: valid, but Dice would score "background"
    labels = {"labels": {"membrane": 0, "background": 255}}
    ds = make_dataset(tmp_path, {"a.png": (grey(), "a.png", binary_mask())}, labels=labels)
    with pytest.warns(UserWarning, match="'background' is class 1, so Dice scores it"):
        summary = validate_dataset(ds)
    assert len(summary.warnings) == 1 and "list it first" in summary.warnings[0]
