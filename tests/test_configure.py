"""Tests for unet_lib.training.plan: the fingerprint by hand, the planning rules, and train()
applying the plan to every option not given explicitly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from unet_lib.data.folder import LoadedDataset
from unet_lib.data.labels import LabelMapping
from unet_lib.training.plan import (
    DatasetFingerprint,
    describe_plan,
    fingerprint,
    looks_like_stack,
    plan_training,
)


def _dataset(images, masks, stems, names=("background", "cell")):
    mapping = LabelMapping.from_dict({n: i for i, n in enumerate(names)})
    channels = images[0].shape[-1]
    return LoadedDataset(list(images), list(masks), list(stems), mapping, channels)


def test_fingerprint_by_hand():
    # two 8x8 grey images: one all 0.25, one all 0.75 -> mean 0.5, std 0.25
    images = [np.full((8, 8, 1), 0.25, np.float32), np.full((8, 8, 1), 0.75, np.float32)]
    # image 1: one 4x4 square of class 1 (16 px); image 2: two 2x2 squares (4 px each)
    a = np.zeros((8, 8), np.int32)
    a[2:6, 2:6] = 1
    b = np.zeros((8, 8), np.int32)
    b[0:2, 0:2] = 1
    b[5:7, 5:7] = 1
    b[7, 7] = -1  # ignored: counts for no class
    fp = fingerprint(_dataset(images, [a, b], ["s1", "s2"]))
    assert fp.num_pairs == 2 and fp.channels == 1
    assert fp.median_size == (8, 8) and fp.min_size == (8, 8)
    assert fp.intensity_mean == [0.5] and fp.intensity_std == [0.25]
    # class 1: 16 + 8 = 24 of 127 labelled pixels
    assert fp.class_fractions == pytest.approx([103 / 127, 24 / 127], abs=1e-6)
    # areas 16, 4, 4 -> median 4 -> diameter sqrt(16 / pi)
    assert fp.object_diameter["cell"] == pytest.approx(math.sqrt(16 / math.pi), abs=0.01)
    # distance to the nearest background pixel: the 4x4 square has 12 pixels at 1 and 4 at
    # 2; each 2x2 square 4 pixels at 1 -> mean (12 + 8 + 8) / 24; width = twice that
    assert fp.object_width["cell"] == pytest.approx(2 * 28 / 24, abs=0.01)
    assert fp.is_stack is False  # two stems are not a stack
    json.dumps(fp.to_dict())  # JSON-ready for config.json


@pytest.mark.parametrize(
    "stems, expected",
    [
        ([str(i) for i in range(24)], True),
        ([f"{i:02d}" for i in range(20)], True),
        ([f"slice_{i:03d}" for i in (4, 5, 6, 7)], True),
        (["0", "1", "3"], False),  # a gap
        (["a1", "b2", "c3"], False),  # different prefixes
        (["00ae65c1", "0121d675", "01d44a26"], False),  # hashes
        (["0", "1"], False),  # too short to tell
    ],
)
def test_looks_like_stack(stems, expected):
    assert looks_like_stack(stems) is expected


def _fp(size=(512, 512), n=24, stack=True, fractions=(0.77, 0.23), channels=1):
    return DatasetFingerprint(
        num_pairs=n,
        median_size=size,
        min_size=size,
        channels=channels,
        intensity_mean=[0.5] * channels,
        intensity_std=[0.2] * channels,
        intensity_percentiles=[[0.0, 1.0]] * channels,
        class_names=[f"c{i}" for i in range(len(fractions))],
        class_fractions=list(fractions),
        object_diameter={},
        object_width={},
        is_stack=stack,
    )


@pytest.mark.parametrize(
    "fp, kwargs, expected",
    [
        # ISBI-like stack of 512^2 on a CPU: 256 patches, 4 x 256^2 per step, contiguous
        (_fp(), {}, dict(split="contiguous", patch_size=256, depth=4, batch_size=4)),
        # small images are taken whole; 128^2 -> 16 by pixels (the CPU cap)
        (_fp((128, 128)), {}, dict(patch_size=None, depth=4, batch_size=16)),
        # DSB-like 256 x 320 tiles, not a stack: whole images, 3.2 -> 3 per step
        (
            _fp((256, 320), n=107, stack=False),
            {},
            dict(split="random", patch_size=None, batch_size=3),
        ),
        # tiny images: the depth keeps an 8-pixel bottleneck (32 / 2**2)
        (_fp((32, 32), n=10), {}, dict(depth=2, batch_size=8)),  # 256 -> 16 -> 8 train images
        # a GPU takes 512 patches, 16 x 512^2 per step
        (_fp((1024, 1024)), dict(device_kind="GPU"), dict(patch_size=512, batch_size=16)),
        # short CPU budgets trade width for steps; bfloat16 only under a budget on BF16 CPUs
        (
            _fp(),
            dict(time_budget_minutes=1, bf16_cpu=True),
            dict(base_filters=16, precision="bfloat16"),
        ),  # fmt: skip
        (
            _fp(),
            dict(time_budget_minutes=25, bf16_cpu=False),
            dict(base_filters=32, precision="auto"),
        ),  # fmt: skip
        (_fp(), dict(bf16_cpu=True), dict(precision="auto")),
        # a class under 5 % with patches: a third of the patches centred on foreground
        (_fp(fractions=(0.9, 0.095, 0.005)), {}, dict(foreground_fraction=1 / 3)),
        (_fp(), {}, dict(foreground_fraction=0.0)),  # membranes at 23 %: uniform
        (_fp((128, 128), fractions=(0.99, 0.01)), {}, dict(foreground_fraction=0.0)),  # whole
    ],
)
def test_plan_rules(fp, kwargs, expected):
    plan = plan_training(fp, **kwargs)
    for key, value in expected.items():
        assert plan.options[key] == value, (key, plan.reasons[key])
    assert set(plan.reasons) == set(plan.options)


def test_steps_per_epoch_keep_validation_cheap():
    # 24 pairs -> 5 validation images of 512^2 = 1,310,720 px; a step is 4 x 256^2 px.
    # validation ~ a third of a step per pixel: 1,310,720 / (3 * 0.1 * 262,144) = 16.7 -> 17
    # and one pass over the 19 training images needs ceil(19 / 4) = 5 steps; max -> 17
    assert plan_training(_fp()).options["steps_per_epoch"] == 17


def test_rare_classes_are_named_in_the_reason():
    plan = plan_training(_fp(fractions=(0.9, 0.095, 0.005)))
    assert "rare: c2" in plan.reasons["loss"]
    text = describe_plan(plan, explicit={"batch_size"})
    assert "batch_size       given explicitly" in text
    assert "patch_size       = 256" in text


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from unet_lib.data.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "membranes", num_images=10, size=32, seed=3
    )


def test_train_derives_what_was_not_given(tiny_data, tmp_path):
    from unet_lib.training.loop import train

    result = train(tiny_data, tmp_path / "run", epochs=1, base_filters=4, batch_size=3,
                   eval_tta=False, verbose=0)  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    derived = config["plan"]["derived"]
    assert config["batch_size"] == 3 and "batch_size" not in derived  # explicit wins
    assert config["base_filters"] == 4 and "base_filters" not in derived
    assert config["depth"] == 2 and "depth" in derived  # 32 px images: 8 px bottleneck
    assert config["plan"]["fingerprint"]["median_size"] == [32, 32]
    assert result.model.count_params() > 0


def test_auto_configure_off_keeps_the_fixed_defaults(tiny_data, tmp_path):
    from unet_lib.training.loop import TrainConfig, train

    train(tiny_data, tmp_path / "run", epochs=1, base_filters=4, auto_configure=False,
          eval_tta=False, verbose=0)  # fmt: skip
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["depth"] == TrainConfig().depth and config["plan"] == {}
    assert config["eval_tta"] is False and config["eval_threshold"] == 0.5


def test_evaluation_settings_are_decided_on_validation(tiny_data, tmp_path):
    from unet_lib.training.loop import train

    result = train(tiny_data, tmp_path / "run", epochs=1, base_filters=4, verbose=0)
    assert result.config.eval_tta in (True, False)
    assert result.config.eval_threshold in [round(0.3 + 0.05 * i, 2) for i in range(9)]
    reason = result.config.plan["derived"]["evaluation"]
    assert "validation Dice" in reason and "threshold=" in reason
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["eval_tta"] == result.config.eval_tta
    assert stored["eval_threshold"] == result.config.eval_threshold


def test_validation_counts_and_dice_by_hand():
    from unet_lib.training.calibration import foreground_counts, mean_dice

    # binary: probabilities 0.2 0.4 0.6 0.8 against truth 0 1 1 -1 (the last ignored)
    p = np.array([[[0.2], [0.4], [0.6], [0.8]]], np.float32)
    m = np.array([[0, 1, 1, -1]])
    # threshold 0.5: predicted 0 0 1 (ignored pixel dropped) -> tp 1, fp 0, fn 1
    np.testing.assert_array_equal(foreground_counts(p, m, 0.5), [[1], [0], [1]])
    # threshold 0.3: predicted 0 1 1 -> tp 2: Dice 1
    assert mean_dice(foreground_counts(p, m, 0.3)) == 1.0
    assert mean_dice(foreground_counts(p, m, 0.5)) == pytest.approx(2 / 3)  # 2/(2+1)
    # three classes by argmax: truth 0 1 2 2, predicted 0 1 1 2
    p3 = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]][None]
    c = foreground_counts(p3, np.array([[0, 1, 2, 2]]), 0.5)
    np.testing.assert_array_equal(c, [[1, 1], [1, 0], [0, 1]])  # class 1: tp1 fp1; 2: tp1 fn1
    assert mean_dice(c) == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert mean_dice(np.zeros((3, 2), int)) == 0.0  # nothing anywhere


def test_bad_evaluation_options_fail_early():
    from unet_lib.training.loop import TrainConfig

    with pytest.raises(ValueError, match="eval_tta"):
        TrainConfig(eval_tta="yes")
    with pytest.raises(ValueError, match="eval_threshold"):
        TrainConfig(eval_threshold=1.5)


def test_given_options_feed_the_later_rules():
    # a given batch of 2 (instead of 4): 1,310,720 / (0.3 * 2 * 65,536) = 33.3 -> 34 steps
    plan = plan_training(_fp(), given={"batch_size": 2})
    assert plan.options["batch_size"] == 4  # the derived value is still listed
    assert plan.options["steps_per_epoch"] == 34
    # a given patch of 128: the batch follows it (262,144 / 128^2 = 16) and the depth rule
    # sees 128 (128 / 2**4 = 8: still depth 4); 64 would give depth 3 (64 / 2**3 = 8)
    plan = plan_training(_fp(), given={"patch_size": 128})
    assert plan.options["batch_size"] == 16 and plan.options["depth"] == 4
    assert plan_training(_fp(), given={"patch_size": 64}).options["depth"] == 3
