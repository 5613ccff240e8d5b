"""Tests for the dataset readers of unet_lib.data on the formats public datasets ship in:
multi-page TIFF stacks (ISBI 2012), palette PNG masks (Pascal VOC), RGB colour-coded masks
(CamVid, Cityscapes, LabelMeFacade) and the refusal to infer hundreds of classes.

Every file is written here (OpenCV or Pillow) with known values, and the decoded values are
checked against them.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unet_lib import IGNORE_LABEL
from unet_lib.cli.parser import main
from unet_lib.data import (
    DatasetError,
    LabelMapping,
    count_pages,
    find_pairs,
    infer_label_mapping,
    load_dataset,
    pack_rgb,
    read_image,
    read_labels,
    read_mask,
    validate_dataset,
)
from unet_lib.training.plan import looks_like_stack

# the Pascal VOC colour map's first entries (index -> RGB) and its border colour (index 255)
VOC = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 15: (192, 128, 128), 255: (224, 224, 192)}


def folders(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return root


def stack(n=5, h=4, w=6, dtype=np.uint8):
    """Page k of the images holds 10 k + pixel index; page k of the masks has k pixels 255."""
    images = [(10 * k + np.arange(h * w).reshape(h, w)).astype(dtype) for k in range(n)]
    masks = [
        np.where(np.arange(h * w).reshape(h, w) < k, 255, 0).astype(np.uint8) for k in range(n)
    ]
    return images, masks


def write_stack(path: Path, pages) -> None:
    assert cv2.imwritemulti(str(path), pages)


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR


def write_palette(path: Path, indices: np.ndarray, colours: dict) -> None:
    palette = np.zeros((256, 3), np.uint8)
    for i, c in colours.items():
        palette[i] = c
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(palette.ravel().tolist())
    image.save(path)


# --------------------------------------------------------------------------------------
# multi-page TIFF stacks
# --------------------------------------------------------------------------------------


def test_count_pages_from_tiff_headers(tmp_path):
    images, _ = stack(3)
    write_stack(tmp_path / "s.tif", images)
    cv2.imwrite(str(tmp_path / "one.tif"), images[0])
    cv2.imwrite(str(tmp_path / "one.png"), images[0])
    assert [count_pages(tmp_path / n) for n in ("s.tif", "one.tif", "one.png")] == [3, 1, 1]
    assert count_pages(tmp_path / "missing.tif") == 1  # reading it reports the problem
    # hand-made headers (nothing to decode, only the directory chain): big-endian classic TIFF,
    # directories at 8 and 14 (2-byte count 0, 4-byte next offset), the second ending the chain
    (tmp_path / "mm.tif").write_bytes(b"MM\x00\x2a" + struct.pack(">IHIHI", 8, 0, 14, 0, 0))
    assert count_pages(tmp_path / "mm.tif") == 2
    # a chain that loops back to its first directory counts each directory once
    (tmp_path / "loop.tif").write_bytes(b"II\x2a\x00" + struct.pack("<IHIHI", 8, 0, 14, 0, 8))
    assert count_pages(tmp_path / "loop.tif") == 2
    # BigTIFF: magic 43, offsets and counts 8 bytes; directories at 16, 32, 48
    big = b"II\x2b\x00" + struct.pack("<HHQ", 8, 0, 16)
    big += struct.pack("<QQ", 0, 32) + struct.pack("<QQ", 0, 48) + struct.pack("<QQ", 0, 0)
    (tmp_path / "big.tif").write_bytes(big)
    assert count_pages(tmp_path / "big.tif") == 3


def test_stack_pages_read_one_by_one_never_the_first_page_silently(tmp_path):
    images, masks = stack(4, dtype=np.uint16)
    write_stack(tmp_path / "vol.tif", images)
    write_stack(tmp_path / "lab.tif", masks)
    for k in (0, 3, 1):  # any order: page k is page k
        np.testing.assert_allclose(
            read_image(tmp_path / "vol.tif", page=k)[..., 0], images[k] / 65535.0, rtol=1e-6
        )
        assert read_mask(tmp_path / "lab.tif", page=k).tolist() == masks[k].tolist()
    for read in (read_image, read_mask):
        with pytest.raises(DatasetError, match=r"vol.tif: a stack of 4 pages; read one page"):
            read(tmp_path / "vol.tif")
    with pytest.raises(DatasetError, match=r"vol.tif: has 4 page\(s\), no page 4; pick 0..3"):
        read_image(tmp_path / "vol.tif", page=4)


def test_rewritten_stack_is_read_again_and_cut_headers_count_one(tmp_path):
    images, _ = stack(3)
    write_stack(tmp_path / "vol.tif", images)
    assert read_mask(tmp_path / "vol.tif", page=1).tolist() == images[1].tolist()
    # same path, other content (2 pages of 5 x 5): no stale bytes from the previous read
    write_stack(tmp_path / "vol.tif", [np.full((5, 5), 7, np.uint8), np.full((5, 5), 9, np.uint8)])
    assert read_mask(tmp_path / "vol.tif", page=1).tolist() == [[9] * 5] * 5
    (tmp_path / "cut.tif").write_bytes(b"II\x2a")  # shorter than a TIFF header
    assert count_pages(tmp_path / "cut.tif") == 1
    with pytest.raises(DatasetError, match="cut.tif: cannot be decoded"):
        read_image(tmp_path / "cut.tif")


def test_stack_dataset_one_pair_per_page(tmp_path, capsys):
    root = folders(tmp_path / "ds")
    images, masks = stack(5)
    write_stack(root / "images" / "vol.tif", images)
    write_stack(root / "masks" / "vol.tif", masks)
    pairs = find_pairs(root)
    stems = [f"vol_{k:03d}" for k in range(5)]
    assert [(p.stem, p.page) for p in pairs] == list(zip(stems, range(5), strict=True))
    assert looks_like_stack(stems)  # training/plan.py sees the numbered slices of a volume
    data = load_dataset(root)
    assert data.stems == stems
    for k in range(5):
        np.testing.assert_allclose(data.images[k][..., 0] * 255, images[k], atol=1e-4)
        assert data.masks[k].tolist() == (masks[k] // 255).tolist()  # {0, 255}: binary
    summary = validate_dataset(root)
    assert summary.num_pairs == 5 and summary.stacks == {"vol.tif": 5}
    # 5 pages x 24 pixels, 0+1+2+3+4 = 10 foreground pixels
    assert summary.class_pixel_shares["foreground"] == pytest.approx(10 / 120)
    assert main(["check", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pairs:    5" in out and "stacks:   vol.tif (5 pages)" in out


def test_isbi_layout_one_image_stack_and_one_mask_stack_named_differently(tmp_path):
    root = folders(tmp_path / "isbi")
    images, masks = stack(3)
    write_stack(root / "images" / "train-volume.tif", images)
    write_stack(root / "masks" / "train-labels.tif", masks)
    data = load_dataset(root, labels={"labels": {"background": 255, "membrane": 0}})
    assert data.stems == ["train-volume_000", "train-volume_001", "train-volume_002"]
    # membrane = 0 is class 1: page k has k pixels 255 (background, 0), the rest membrane
    assert [int(m.sum()) for m in data.masks] == [24, 23, 22]
    # two single images named differently are not paired
    root2 = folders(tmp_path / "singles")
    cv2.imwrite(str(root2 / "images" / "a.png"), images[0])
    cv2.imwrite(str(root2 / "masks" / "b.png"), masks[0])
    with pytest.raises(DatasetError, match="a.png: no mask"):
        validate_dataset(root2)


def test_stack_page_count_mismatch_is_one_error_naming_both_files(tmp_path):
    root = folders(tmp_path / "ds")
    images, masks = stack(5)
    write_stack(root / "images" / "vol.tif", images)
    write_stack(root / "masks" / "vol.tif", masks[:4])
    cv2.imwrite(str(root / "images" / "one.tif"), images[0])
    write_stack(root / "masks" / "one.tif", masks[:2])
    with pytest.raises(DatasetError) as e:
        validate_dataset(root)
    assert e.value.problems == [
        f"{root}/images/one.tif: 1 page(s) but its mask {root}/masks/one.tif has 2; give the "
        "image stack and the mask stack the same pages, one mask per image",
        f"{root}/images/vol.tif: 5 page(s) but its mask {root}/masks/vol.tif has 4; give the "
        "image stack and the mask stack the same pages, one mask per image",
    ]


def test_stack_page_stem_colliding_with_a_file_stem(tmp_path):
    root = folders(tmp_path / "ds")
    images, masks = stack(3)
    write_stack(root / "images" / "vol.tif", images)
    write_stack(root / "masks" / "vol.tif", masks)
    cv2.imwrite(str(root / "images" / "vol_001.png"), images[0])
    cv2.imwrite(str(root / "masks" / "vol_001.png"), masks[0])
    with pytest.raises(DatasetError) as e:
        find_pairs(root)
    # "vol" sorts before "vol_001": the stack's page 1 is kept, the single file reported
    assert e.value.problems == [
        f"{root}/images/vol_001.png: same stem 'vol_001' as {root}/images/vol.tif page 1; "
        "rename one file"
    ]


def test_stack_page_size_and_value_problems_name_the_page(tmp_path):
    root = folders(tmp_path / "ds")
    images, masks = stack(3)
    masks[2] = masks[2].copy()
    masks[2][0, 0] = 7  # a value outside {0, 255}
    write_stack(root / "images" / "vol.tif", images)
    write_stack(root / "masks" / "vol.tif", masks)
    with pytest.raises(DatasetError) as e:
        validate_dataset(root, labels={"labels": {"background": 0, "cell": 255}})
    (problem,) = e.value.problems
    assert problem.startswith(f"{root}/masks/vol.tif page 2: values {{7}} are not in the label")


# --------------------------------------------------------------------------------------
# palette PNG masks (Pascal VOC)
# --------------------------------------------------------------------------------------


def test_palette_png_mask_reads_indices_and_voc_border_maps_to_ignore(tmp_path):
    root = folders(tmp_path / "voc")
    indices = np.array([[0, 1, 255], [15, 1, 0], [2, 255, 15]], np.uint8)
    write_palette(root / "masks" / "a.png", indices, VOC)
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((3, 3, 3), np.uint8))
    raw = read_mask(root / "masks" / "a.png")
    assert raw.dtype == np.uint8 and raw.tolist() == indices.tolist()  # not the colours
    with pytest.raises(DatasetError) as e:  # VOC's values are no 0..K-1: dataset.json needed
        validate_dataset(root)
    assert "masks hold the values {0, 1, 2, 15, 255}" in e.value.problems[0]
    labels = {"labels": {"background": 0, "aeroplane": 1, "bicycle": 2, "person": 15}}
    (root / "dataset.json").write_text(json.dumps({**labels, "ignore_value": 255}))
    data = load_dataset(root)
    # 0 -> 0, 1 -> 1, 2 -> 2, 15 -> 3, 255 -> IGNORE_LABEL
    assert data.masks[0].tolist() == [[0, 1, -1], [3, 1, 0], [2, -1, 3]]
    summary = validate_dataset(root)
    assert summary.ignored_share == pytest.approx(2 / 9)  # two 255 pixels of nine
    assert summary.class_pixel_shares["aeroplane"] == pytest.approx(2 / 7)  # of 7 labelled


def test_palette_png_with_grey_palette_reads_grey_values_as_before(tmp_path):
    # a 1-bit palette PNG, black and white: its grey values 0 / 255, what a viewer shows and
    # what OpenCV read before palette support
    indices = np.array([[0, 1], [1, 1]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 255, 255])
    image.save(tmp_path / "bw.png", bits=1)
    assert read_mask(tmp_path / "bw.png").tolist() == [[0, 255], [255, 255]]
    assert infer_label_mapping({0, 255}).is_binary


def test_palette_png_under_a_colour_mapping_reads_its_colours(tmp_path):
    indices = np.array([[0, 1], [255, 2]], np.uint8)
    write_palette(tmp_path / "m.png", indices, VOC)
    mapping = LabelMapping.from_dict(
        {"labels": {"bg": [0, 0, 0], "red": [128, 0, 0], "green": [0, 128, 0]},
         "ignore_value": [224, 224, 192]}
    )  # fmt: skip
    assert read_labels(tmp_path / "m.png", mapping).tolist() == [[0, 1], [IGNORE_LABEL, 2]]


# --------------------------------------------------------------------------------------
# RGB colour-coded masks
# --------------------------------------------------------------------------------------

FACADE = {"various": [0, 0, 0], "building": [128, 0, 0], "sky": [0, 128, 128]}


def colour_dataset(root: Path, masks: dict[str, np.ndarray], labels: dict | None) -> Path:
    folders(root)
    for stem, rgb in masks.items():
        write_rgb(root / "masks" / f"{stem}.png", rgb)
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.zeros(rgb.shape[:2], np.uint8))
    if labels is not None:
        (root / "dataset.json").write_text(json.dumps(labels))
    return root


def facade_mask() -> np.ndarray:
    """2 x 3: sky on top, building below, one 'various' pixel."""
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0] = FACADE["sky"]
    rgb[1, :2] = FACADE["building"]
    return rgb


def test_pack_rgb_reference_values():
    # 128 * 65536 = 8388608; 128 * 256 + 128 = 32896; 255 * (65536 + 256 + 1) = 16777215
    rgb = np.array([[128, 0, 0], [0, 128, 128], [255, 255, 255]], np.uint8)
    assert pack_rgb(rgb).tolist() == [8388608, 32896, 16777215]


def test_rgb_masks_mapped_through_dataset_json_colours(tmp_path, capsys):
    root = colour_dataset(tmp_path / "facade", {"a": facade_mask()}, {"labels": FACADE})
    assert read_mask(root / "masks" / "a.png", colours=True).tolist() == [
        [32896] * 3,  # (0, 128, 128)
        [8388608, 8388608, 0],  # (128, 0, 0), (0, 0, 0)
    ]
    data = load_dataset(root)
    assert data.mapping.colours and data.mapping.num_classes == 3
    assert data.masks[0].tolist() == [[2, 2, 2], [1, 1, 0]]
    summary = validate_dataset(root)
    # shares of 6 pixels: various 1, building 2, sky 3
    assert summary.class_pixel_shares == pytest.approx(
        {"various": 1 / 6, "building": 2 / 6, "sky": 3 / 6}
    )
    assert main(["check", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "building   33.33 % of pixels  (mask colours (128, 0, 0))" in out


def test_unlisted_colours_reported_by_file_with_pixel_counts(tmp_path):
    a, b = facade_mask(), facade_mask()
    a[0, 0] = (1, 2, 3)
    b[0, :] = (9, 9, 9)  # three pixels
    b[1, 2] = (1, 2, 3)  # one pixel
    root = colour_dataset(tmp_path / "ds", {"a": a, "b": b}, {"labels": FACADE})
    with pytest.raises(DatasetError) as e:
        validate_dataset(root)
    tail = '; add each to a class in dataset.json as [R, G, B] (or set "ignore_value"), or fix '
    assert e.value.problems == [
        f"{root}/masks/a.png: colours (R, G, B) not in the label mapping: (1, 2, 3) 1 px"
        + tail
        + "the mask",
        f"{root}/masks/b.png: colours (R, G, B) not in the label mapping: (9, 9, 9) 3 px, "
        "(1, 2, 3) 1 px" + tail + "the mask",
    ]
    mapping = LabelMapping.from_dict({"labels": FACADE})
    with pytest.raises(DatasetError, match=r"b.png: colours .*\(9, 9, 9\) 3 px"):
        read_labels(root / "masks" / "b.png", mapping)


def test_rgb_masks_without_colour_mapping_one_line_with_the_json_to_write(tmp_path):
    root = colour_dataset(tmp_path / "ds", {"a": facade_mask(), "b": facade_mask()}, None)
    with pytest.raises(DatasetError) as e:
        validate_dataset(root)
    (problem,) = e.value.problems  # one line for both masks
    assert problem.startswith(f"{root}/masks/a.png: colour (RGB) mask (2 such masks, 3 colours)")
    # the suggested mapping holds the colours found, in packed order (0, 32896, 8388608)
    example = '{"labels": {"class_0": [0, 0, 0], "class_1": [0, 128, 128], "class_2": [128, 0, 0]}}'
    assert f"map the colours to classes in {root}/dataset.json, e.g. {example}" in problem
    # a grey mapping does not map colours either
    with pytest.raises(DatasetError, match="colour \\(RGB\\) mask"):
        validate_dataset(root, labels={"labels": {"a": 0, "b": 1}})
    with pytest.raises(DatasetError, match=r"a.png: colour mask; map its colours .*\[128, 0, 0\]"):
        read_mask(root / "masks" / "a.png")


def test_16bit_colour_mask_is_refused(tmp_path):
    rgb16 = np.zeros((2, 2, 3), np.uint16)
    rgb16[0, 0] = (1000, 0, 0)
    cv2.imwrite(str(tmp_path / "m16.png"), rgb16)
    for colours in (False, True):
        with pytest.raises(DatasetError, match="m16.png: uint16 colour mask; save it as 8-bit"):
            read_mask(tmp_path / "m16.png", colours=colours)


def test_grey_mask_under_colour_mapping_is_the_grey_colour(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.array([[0, 128]], np.uint8))
    mapping = LabelMapping.from_dict({"labels": {"black": [0, 0, 0], "grey": [128, 128, 128]}})
    assert read_labels(tmp_path / "g.png", mapping).tolist() == [[0, 1]]


# --------------------------------------------------------------------------------------
# the colour form of dataset.json
# --------------------------------------------------------------------------------------


def test_colour_mapping_forms_round_trip_and_decode():
    d = {
        "labels": {"void": [0, 0, 0], "road": [[128, 64, 128], [128, 64, 129]]},
        "ignore_value": [255, 255, 255],
    }
    m = LabelMapping.from_dict(d)
    assert m.colours and m.values == ((0,), (8405120, 8405121)) and m.ignore_value == 16777215
    assert m.to_dict() == d and LabelMapping.from_dict(m.to_dict()) == m
    rgb = np.array([[[0, 0, 0], [128, 64, 129], [255, 255, 255]]], np.uint8)
    labels = m.encode(rgb)  # RGB (H, W, 3) or packed (H, W)
    assert labels.tolist() == [[0, 1, IGNORE_LABEL]] == m.encode(pack_rgb(rgb)).tolist()
    # decode: each class's first colour, the ignore colour for -1
    assert m.decode(labels).tolist() == [[[0, 0, 0], [128, 64, 128], [255, 255, 255]]]


def test_flat_three_value_lists_that_are_valid_grey_values_stay_grey():
    # compatibility: before colours, this meant grey values 0, 1, 2 and 3, 4, 5
    grey = LabelMapping.from_dict({"labels": {"a": [0, 1, 2], "b": [3, 4, 5]}})
    assert not grey.colours and grey.values == ((0, 1, 2), (3, 4, 5))
    nested = LabelMapping.from_dict({"labels": {"a": [[0, 1, 2]], "b": [[3, 4, 5]]}})
    assert nested.colours and nested.values == ((0 * 65536 + 1 * 256 + 2,), (3 * 65536 + 1029,))
    # to_dict nests where a flat list would read as grey, so the mapping round-trips
    assert nested.to_dict() == {"labels": {"a": [[0, 1, 2]], "b": [[3, 4, 5]]}}
    assert LabelMapping.from_dict(nested.to_dict()) == nested


@pytest.mark.parametrize(
    "d, match",
    [
        ({"labels": {"a": [0, 0, 0], "b": [[0, 0, 0]]}}, r"colour \(0, 0, 0\) is given to both"),
        ({"labels": {"a": [0, 0, 0], "b": [9, 9, 9]}, "ignore_value": 5}, "ignore_value must"),
        (
            {"labels": {"a": [0, 0, 0], "b": [9, 9, 9]}, "ignore_value": [9, 9, 9]},
            r"ignore_value \(9, 9, 9\) is also the value of class 'b'",
        ),
    ],
)
def test_colour_mapping_errors(d, match):
    with pytest.raises(ValueError, match=match):
        LabelMapping.from_dict(d)


# --------------------------------------------------------------------------------------
# no more than 32 inferred classes
# --------------------------------------------------------------------------------------


def test_saved_image_as_mask_is_not_256_classes(tmp_path, capsys):
    root = folders(tmp_path / "ds")
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((16, 16), np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert main(["check", "--data", str(root)]) == 1
    err = capsys.readouterr().err
    assert "(256 values)" in err and "more than 32 classes are never inferred" in err
    assert f"write {root}/dataset.json saying which value is which class" in err
    assert "OK" not in err


def test_infer_up_to_32_classes():
    assert infer_label_mapping(set(range(32))).num_classes == 32
    with pytest.raises(DatasetError, match="more than 32 classes are never inferred"):
        infer_label_mapping(set(range(33)))


def test_real_isbi_slices_as_one_stack_read_like_the_png_files(shared_data, tmp_path):
    # ISBI 2012 as distributed: one train-volume.tif and one train-labels.tif
    folder = shared_data / "isbi2012_membrane"
    labels = {"labels": {"background": 255, "membrane": 0}}
    pngs = load_dataset(folder, labels=labels)
    root = folders(tmp_path / "isbi")
    order = [f"{k}" for k in range(len(pngs))]  # slices 0..23, in slice order
    for sub, name in (("images", "train-volume.tif"), ("masks", "train-labels.tif")):
        pages = [cv2.imread(str(folder / sub / f"{s}.png"), cv2.IMREAD_UNCHANGED) for s in order]
        write_stack(root / sub / name, pages)
    stacked = load_dataset(root, labels=labels)
    assert stacked.stems == [f"train-volume_{k:03d}" for k in range(len(pngs))]
    assert validate_dataset(root, labels=labels).stacks == {"train-volume.tif": len(pngs)}
    for k, stem in enumerate(order):
        i = pngs.stems.index(stem)
        np.testing.assert_array_equal(stacked.images[k], pngs.images[i])
        np.testing.assert_array_equal(stacked.masks[k], pngs.masks[i])


# --------------------------------------------------------------------------------------
# the readers behind the file pipeline, evaluation and prediction
# --------------------------------------------------------------------------------------


def test_file_pipeline_reads_stack_pages_and_colour_masks(tmp_path):
    from unet_lib.data import make_dataset

    root = folders(tmp_path / "stack")
    images, masks = stack(3)
    write_stack(root / "images" / "vol.tif", images)
    write_stack(root / "masks" / "vol.tif", masks)
    ds = make_dataset(str(root), batch_size=1, shuffle=False, cache=str(tmp_path / "c1"))
    got = [(x.numpy()[0, ..., 0], y.numpy()[0, ..., 0]) for x, y in ds]
    assert len(got) == 3  # one element per page, in page order
    for k, (x, y) in enumerate(got):
        np.testing.assert_allclose(x * 255, images[k], atol=1e-4)  # 8-bit / 255
        assert int(y.sum()) == k  # page k has k foreground pixels (255 -> class 1)
    colours = colour_dataset(tmp_path / "facade", {"a": facade_mask()}, {"labels": FACADE})
    ds = make_dataset(str(colours), batch_size=1, shuffle=False, cache=str(tmp_path / "c2"))
    ((_, y),) = list(ds)
    assert y.numpy()[0, ..., 0].tolist() == [[2, 2, 2], [1, 1, 0]]


def test_colour_predictions_saved_and_scored_in_colour(tmp_path):
    from unet_lib.evaluation import evaluate
    from unet_lib.inference import save_mask

    root = colour_dataset(tmp_path / "facade", {"a": facade_mask()}, {"labels": FACADE})
    mapping = load_dataset(root).mapping
    saved = save_mask(np.array([[2, 2, 2], [1, 1, 0]]), tmp_path / "pred" / "a.png", mapping)
    rgb = cv2.imread(str(saved))[..., ::-1]  # OpenCV reads BGR
    np.testing.assert_array_equal(rgb, facade_mask())  # the dataset's own colours
    report = evaluate(None, root, predictions=tmp_path / "pred")
    assert report["mean_iou"] == pytest.approx(1.0)  # a perfect prediction


def test_predict_folder_writes_one_mask_per_page(tmp_path):
    from unet_lib.inference import predict_folder
    from unet_lib.model import build_unet

    images, _ = stack(3, h=16, w=16)
    write_stack(tmp_path / "vol.tif", images)
    model = build_unet((None, None, 1), num_classes=1, depth=2, base_filters=2)
    written = predict_folder(model, tmp_path / "vol.tif", tmp_path / "out")
    assert [p.name for p in written] == ["vol_000.png", "vol_001.png", "vol_002.png"]
    assert all(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape == (16, 16) for p in written)
