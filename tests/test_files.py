"""Tests for unet_lib.data.files: reading images and masks (pairing: see test_folder.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from unet_lib.data.files import read_image, read_mask
from unet_lib.data.labels import DatasetError, LabelMapping


def binary_mask(h=8, w=8, fg=255):
    m = np.zeros((h, w), np.uint8)
    m[: h // 2] = fg
    return m


def test_read_16bit_image_and_mask(tmp_path):
    img = np.array([[0, 65535], [32768, 1000]], np.uint16)
    cv2.imwrite(str(tmp_path / "i.png"), img)
    cv2.imwrite(str(tmp_path / "i.tif"), img)
    for name in ("i.png", "i.tif"):
        out = read_image(tmp_path / name)
        assert out.dtype == np.float32 and out.shape == (2, 2, 1)
        np.testing.assert_allclose(out[..., 0], img / 65535.0, rtol=1e-6)
    mask = np.array([[1000, 2000], [2000, 1000]], np.uint16)
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    raw = read_mask(tmp_path / "m.png")
    assert raw.dtype == np.uint16 and raw.tolist() == mask.tolist()
    m = LabelMapping.from_dict({"labels": {"a": 1000, "b": 2000}})
    assert m.encode(raw).tolist() == [[0, 1], [1, 0]]
    assert m.decode(np.array([0, 1])).dtype == np.uint16


def test_read_rgba_drops_alpha_and_returns_rgb(tmp_path):
    bgra = np.zeros((2, 3, 4), np.uint8)
    bgra[..., 0] = 10  # B
    bgra[..., 1] = 20  # G
    bgra[..., 2] = 30  # R
    bgra[..., 3] = 128  # alpha
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    out = read_image(tmp_path / "a.png")
    assert out.shape == (2, 3, 3)
    np.testing.assert_allclose(out[0, 0] * 255, [30, 20, 10], atol=1e-4)
    assert read_image(tmp_path / "a.png", channels=1).shape == (2, 3, 1)


def test_read_8bit_scaling_and_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "a.bmp"), np.array([[0, 255, 51]], np.uint8))
    np.testing.assert_allclose(read_image(tmp_path / "a.bmp")[0, :, 0], [0, 1, 0.2], atol=1e-7)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty.png: empty file"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(DatasetError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_colour_masks(tmp_path):
    same = np.repeat(binary_mask()[..., None], 3, axis=2)
    cv2.imwrite(str(tmp_path / "grey_as_rgb.png"), same)
    assert read_mask(tmp_path / "grey_as_rgb.png").shape == (8, 8)
    colour = same.copy()
    colour[0, 0] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(DatasetError, match="colour.png: colour mask"):
        read_mask(tmp_path / "colour.png")
