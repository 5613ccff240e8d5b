"""The bundled nuclei sample: what it holds, and the manifest check that refuses a changed,
missing or stray file (each named) before anything trains on it."""

from __future__ import annotations

import re
import shutil

import pytest

from unet_lib.data import (
    SAMPLES,
    DatasetError,
    check_manifest,
    load_dataset,
    sample_dataset,
    validate_dataset,
)
from unet_lib.data.samples import MANIFEST


def test_the_nuclei_sample_is_107_rgb_tiles_with_binary_masks_in_under_12_mb():
    folder = sample_dataset("nuclei")
    summary = validate_dataset(folder)
    assert summary.num_pairs == 107 and summary.channels == 3
    assert tuple(summary.mapping.class_names) == ("background", "nucleus")
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) == 2 * 107 + 2  # images, masks, dataset.json, the manifest
    assert sum(p.stat().st_size for p in files) < 12e6
    data = load_dataset(folder)
    assert {image.shape for image in data.images} == {(256, 320, 3)}


def test_the_manifest_check_names_every_changed_missing_and_stray_file(tmp_path):
    copy = tmp_path / "nuclei"
    shutil.copytree(sample_dataset("nuclei", verify=False), copy)
    assert check_manifest(copy) == 2 * 107 + 1  # the manifest lists all but itself
    images = sorted((copy / "images").iterdir())
    images[0].write_bytes(images[0].read_bytes()[:-1])  # a truncated file
    images[1].unlink()
    shutil.copy(images[2], copy / "masks" / "extra.png")
    with pytest.raises(DatasetError) as caught:
        sample_dataset("nuclei", root=tmp_path)
    text = str(caught.value)
    assert f"differs from its {MANIFEST} in 3 file(s)" in text and "git checkout" in text
    assert f"images/{images[0].name}: changed" in text
    assert f"images/{images[1].name}: missing" in text
    assert f"masks/extra.png: not in {MANIFEST}" in text
    assert sample_dataset("nuclei", root=tmp_path, verify=False) == copy


def test_an_absent_sample_or_an_unknown_name_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="comes with a clone of the repository"):
        sample_dataset("nuclei", root=tmp_path)
    with pytest.raises(
        ValueError, match=re.escape(f"no bundled sample 'cells'; choose from {sorted(SAMPLES)}")
    ):
        sample_dataset("cells")
