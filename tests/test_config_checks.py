"""Arguments checked at the door: every bad training option is one ValueError that names the
option and the fix, before any data is read or any file written."""

from __future__ import annotations

import pytest

from unet_lib.training import TrainConfig
from unet_lib.training.config import check_depth


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(steps_per_epoch=-3), "steps_per_epoch must be a whole number >= 1"),
        (dict(steps_per_epoch=0), "steps_per_epoch must be a whole number >= 1"),  # not "auto"
        (dict(patch_size=0), "patch_size must be a whole number >= 8"),
        (dict(patch_size=(64, 0)), "patch_size must be a whole number >= 8"),
        (dict(patch_size="64"), "patch_size must be"),
        (dict(epochs="3"), "epochs must be a whole number >= 1, got '3'"),
        (dict(batch_size=2.5), "batch_size must be a whole number"),
        (dict(depth=0), "depth must be a whole number >= 1"),
        (dict(num_classes=0), "num_classes must be a whole number >= 1"),
        # 64 / 2**10 = 0.0625 px: the largest depth leaving >= 2 px is log2(64 / 2) = 5
        (dict(depth=10, patch_size=64), "use --depth 5 or less"),
        (dict(depth=6, patch_size=(256, 64)), "use --depth 5 or less"),  # the short side
    ],
)
def test_bad_options_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**options)


def test_good_edges_pass():
    TrainConfig(depth=5, patch_size=64)  # 64 / 32 = 2 px: just fits
    TrainConfig(steps_per_epoch=None, num_classes=None, patch_size=None)
    TrainConfig(patch_size=[64, 96], depth=4)  # as config.json stores a pair


def test_check_depth_names_what_it_measured():
    with pytest.raises(ValueError, match=r"halves the smallest image \(16 px\) to 0.5 px"):
        check_depth(5, 16, "the smallest image")  # 16 / 32 = 0.5; log2(16 / 2) = 3
    check_depth(3, 16, "the smallest image")


def test_num_classes_and_depth_against_the_data(tmp_path):
    from unet_lib.data.synthetic import make_synthetic_dataset
    from unet_lib.training import train

    data = make_synthetic_dataset(tmp_path / "d", num_images=4, size=32, seed=0)
    with pytest.raises(ValueError, match=r"num_classes=3 but the data has 2 classes"):
        train(data, tmp_path / "r1", num_classes=3, epochs=1, verbose=0)
    # whole 32-px images and depth 5: 32 / 32 = 1 px < 2 (log2(32 / 2) = 4 fits)
    with pytest.raises(ValueError, match="use --depth 4 or less"):
        train(data, tmp_path / "r2", depth=5, auto_configure=False, epochs=1, verbose=0)
    assert not (tmp_path / "r2" / "config.json").exists()  # refused before anything written
