"""Tests for unet_lib.data.splits: deterministic train/val/test splits of stems."""

from __future__ import annotations

import pytest

from unet_lib.data.splits import split_dataset

STEMS = [f"slice_{i}" for i in range(20)]


def test_split_same_seed_same_split_and_order_independent():
    a = split_dataset(STEMS, val_fraction=0.25, seed=3)
    b = split_dataset(list(reversed(STEMS)), val_fraction=0.25, seed=3)
    assert a == b
    assert len(a["val"]) == 5 and len(a["train"]) == 15 and a["test"] == []
    assert set(a["train"]) | set(a["val"]) == set(STEMS)
    assert split_dataset(STEMS, val_fraction=0.25, seed=4) != a


def test_split_contiguous_blocks_at_the_end():
    s = split_dataset(STEMS, val_fraction=0.2, test_fraction=0.1, contiguous=True)
    # natural order: slice_2 before slice_10; [train | val | test]
    assert s["test"] == ["slice_18", "slice_19"]
    assert s["val"] == ["slice_14", "slice_15", "slice_16", "slice_17"]
    assert s["train"] == [f"slice_{i}" for i in range(14)]
    assert split_dataset(STEMS, contiguous=True, seed=1) == split_dataset(STEMS, contiguous=True)


def test_split_explicit_lists():
    s = split_dataset(STEMS, val_stems=["slice_3", "slice_1"], test_stems=["slice_0"])
    assert s["val"] == ["slice_1", "slice_3"] and s["test"] == ["slice_0"]
    assert len(s["train"]) == 17
    # an explicit val list with a test fraction drawn from the rest
    s = split_dataset(STEMS, val_stems=["slice_0"], test_fraction=0.1, seed=0)
    assert s["val"] == ["slice_0"] and len(s["test"]) == 2 and "slice_0" not in s["test"]
    with pytest.raises(ValueError, match="not in the dataset"):
        split_dataset(STEMS, val_stems=["nope"])
    with pytest.raises(ValueError, match="both"):
        split_dataset(STEMS, val_stems=["slice_1"], test_stems=["slice_1"])


def test_split_fractions_and_errors():
    s = split_dataset(STEMS, val_fraction=0.1, test_fraction=0.3, seed=0)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (12, 2, 6)
    assert split_dataset(["a", "b"], val_fraction=0.1)["val"] != []  # at least one
    assert split_dataset(STEMS, val_fraction=0.0)["train"] == STEMS
    with pytest.raises(ValueError, match="val_fraction"):
        split_dataset(STEMS, val_fraction=1.0)
    with pytest.raises(ValueError, match="no stems left"):
        split_dataset(["a"], val_fraction=0.2)
    with pytest.raises(ValueError, match="duplicate"):
        split_dataset(["a", "a", "b"])
