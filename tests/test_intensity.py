"""Intensity scaling derived from the fingerprint: 12-bit data stored in 16-bit files (values
in [0, 4095] of 65535, so [0, 0.0625] once read) are stretched by the model's first layer and
augmented in the same units, while data that fill their stored range (every shared set) keep
exactly the path they had."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from unet_lib.data import AugmentConfig, load_dataset
from unet_lib.data.synthetic import make_synthetic_dataset
from unet_lib.data.transforms import augment_batch
from unet_lib.model import build_unet, intensity_scaling, load_model, save_model
from unet_lib.training import TrainConfig, train
from unet_lib.training.plan import DIM_RANGE, fingerprint, plan_training


@pytest.fixture(scope="module")
def eight_and_twelve_bit(tmp_path_factory):
    """The same synthetic pairs as 8-bit PNGs and as 12-bit values (v * 16) in 16-bit PNGs."""
    root = tmp_path_factory.mktemp("bits")
    eight = make_synthetic_dataset(root / "eight", num_images=8, size=48, seed=5)
    twelve = root / "twelve"
    shutil.copytree(eight, twelve)
    for path in sorted((twelve / "images").iterdir()):
        v = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert v.dtype == np.uint8
        cv2.imwrite(str(path), v.astype(np.uint16) * 16)  # 255 * 16 = 4080 <= 4095
    return eight, twelve


def test_layer_maps_each_channel_window_to_unit_range():
    layer = intensity_scaling([(0.0, 0.0625), (0.2, 0.6)], 2)
    x = np.array([[[[0.03125, 0.4], [0.0625, 0.2]]]], np.float32)  # (1, 1, 2, 2)
    # channel 0: 0.03125 / 0.0625 = 0.5, 0.0625 / 0.0625 = 1; channel 1: (0.4-0.2)/0.4 = 0.5, 0
    np.testing.assert_allclose(np.asarray(layer(x)), [[[[0.5, 0.5], [1.0, 0.0]]]], atol=1e-6)
    assert layer.dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("window", [[(0.0, 0.1)], [(0.5, 0.5), (0, 1)], [(0.3, 0.1), (0, 1)]])
def test_layer_refuses_a_window_per_channel_that_is_not_one(window):
    with pytest.raises(ValueError, match=r"one \(low, high\) pair per channel \(2\)"):
        intensity_scaling(window, 2)


def test_model_with_scaling_equals_the_plain_model_on_stretched_input(tmp_path):
    window = [(0.001, 0.05)]
    scaled = build_unet((None, None, 1), 1, depth=2, base_filters=4, intensity_scaling=window)
    plain = build_unet((None, None, 1), 1, depth=2, base_filters=4)
    assert scaled.layers[1].name == "intensity_scaling"  # right after the input
    plain.set_weights(scaled.get_weights())  # Rescaling has no weights: the lists line up
    x = np.random.default_rng(0).uniform(0, 0.0625, (2, 16, 16, 1)).astype("float32")
    stretched = (x - 0.001) / (0.05 - 0.001)
    np.testing.assert_allclose(scaled.predict(x, verbose=0), plain.predict(stretched, verbose=0),
                               atol=1e-5)  # fmt: skip
    # the .keras file (loaded with safe_mode) keeps the scaling
    again = load_model(save_model(scaled, tmp_path / "m.keras"), compile=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), scaled.predict(x, verbose=0), atol=1e-6)


def test_fingerprint_plans_scaling_for_twelve_bit_and_none_for_eight_bit(eight_and_twelve_bit):
    eight, twelve = eight_and_twelve_bit
    fp8, fp12 = fingerprint(load_dataset(eight)), fingerprint(load_dataset(twelve))
    plan8, plan12 = plan_training(fp8), plan_training(fp12)
    assert plan8.options["intensity_scaling"] is None
    assert "as stored" in plan8.reasons["intensity_scaling"]
    (low, high), = plan12.options["intensity_scaling"]  # fmt: skip
    assert high < DIM_RANGE and "stored range" in plan12.reasons["intensity_scaling"]
    # the 12-bit window is the 8-bit one scaled by 16 * 255 / 65535 (= 0.06225)
    (low8, high8), = fp8.intensity_percentiles  # fmt: skip
    ratio = 16 * 255 / 65535
    assert math.isclose(low, low8 * ratio, abs_tol=2e-5)
    assert math.isclose(high, high8 * ratio, abs_tol=2e-5)
    # through the window, a 12-bit image reaches the values its 8-bit twin has through the
    # same window counted in 8-bit units: the network sees the same numbers
    img8 = load_dataset(eight).images[0]
    img12 = load_dataset(twelve).images[0]
    layer = intensity_scaling([(low, high)], 1)
    stretched8 = (img8 - low8) / (high8 - low8)
    np.testing.assert_allclose(np.asarray(layer(img12[None]))[0], stretched8, atol=2e-3)


def test_the_shared_sets_fingerprints_keep_their_intensities():
    # percentiles 0.5 / 99.5 recorded in the quality runs' config.json (docs/design.md)
    recorded = {"isbi": [[0.094, 0.831]], "vnc": [[0.027, 0.886]],
                "dsb": [[0.255, 0.867], [0.031, 0.875], [0.498, 0.898]],
                "facade": [[0.012, 1.0], [0.024, 1.0], [0.008, 1.0]]}  # fmt: skip
    for name, percentiles in recorded.items():
        fp = fingerprint_like(percentiles)
        assert plan_training(fp).options["intensity_scaling"] is None, name


def fingerprint_like(percentiles):
    from unet_lib.training.plan import DatasetFingerprint

    c = len(percentiles)
    return DatasetFingerprint(
        num_pairs=30, median_size=(512, 512), min_size=(512, 512), channels=c,
        intensity_mean=[0.5] * c, intensity_std=[0.2] * c, intensity_percentiles=percentiles,
        class_names=["background", "cell"], class_fractions=[0.7, 0.3], object_diameter={},
        object_width={}, is_stack=False, layout_rows=0.0, layout_columns=0.0,
    )  # fmt: skip


def test_constant_dim_channel_is_left_as_stored():
    plan = plan_training(fingerprint_like([[0.01, 0.01]]))
    assert plan.options["intensity_scaling"] is None
    assert "constant" in plan.reasons["intensity_scaling"]


def _old_intensity(image, config, seed):
    """The intensity transform before windows existed, copied as the reference."""
    batch = tf.shape(image)[0]
    s_int, s_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    x = tf.clip_by_value(image, 0.0, 1.0)
    if config.intensity:
        u = 2 * tf.random.stateless_uniform([3, batch, 1, 1, 1], s_int) - 1
        x = x ** tf.exp(u[0] * math.log1p(config.gamma))
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * (1 + u[1] * config.contrast) + mean + u[2] * config.brightness
    if config.noise:
        x = x + tf.random.stateless_normal(tf.shape(x), s_noise) * config.noise_std
    return tf.clip_by_value(x, 0.0, 1.0)


def _intensity_only(**kwargs):
    off = dict(flip=False, rotate90=False, affine=False, elastic=False)
    return AugmentConfig(intensity=True, noise=True, **off, **kwargs)


def test_without_a_window_the_intensity_changes_are_exactly_the_old_ones():
    config = _intensity_only()
    x = tf.constant(np.random.default_rng(1).uniform(-0.1, 1.1, (3, 12, 12, 2)), tf.float32)
    mask = tf.zeros((3, 12, 12, 1), tf.int32)
    seed = tf.constant([7, 3], tf.int64)
    new, _, _ = augment_batch(x, mask, None, config, seed)
    s_intensity = tf.unstack(tf.random.experimental.stateless_split(seed, 3))[2]
    np.testing.assert_array_equal(new.numpy(), _old_intensity(x, config, s_intensity).numpy())


def test_window_applies_the_eight_bit_changes_in_window_units():
    # a dim image inside its window: augmenting it with the window equals stretching it,
    # augmenting as 8-bit data, and squeezing it back
    window = ((0.002, 0.05),)
    lo, width = 0.002, 0.048
    rng = np.random.default_rng(2)
    stretched = rng.uniform(0.3, 0.6, (2, 10, 10, 1)).astype("float32")  # stays inside [0, 1]
    dim = stretched * width + lo
    mask, seed = tf.zeros((2, 10, 10, 1), tf.int32), tf.constant([1, 2], tf.int64)
    windowed, _, _ = augment_batch(dim, mask, None, _intensity_only(intensity_window=window), seed)
    plain, _, _ = augment_batch(stretched, mask, None, _intensity_only(), seed)
    np.testing.assert_allclose(windowed.numpy(), plain.numpy() * width + lo, atol=1e-6)
    # the stored range still bounds the result: nothing above 1 or below 0
    bright = np.full((1, 4, 4, 1), 0.99, np.float32)
    strong = _intensity_only(intensity_window=window, brightness=0.5)
    out, _, _ = augment_batch(bright, mask[:1, :4, :4], None, strong, seed)
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1.0


def test_intensity_window_round_trips_and_is_checked():
    config = AugmentConfig(intensity_window=[[0, 0.0625]])
    assert config.intensity_window == ((0.0, 0.0625),)
    assert AugmentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="intensity_window"):
        AugmentConfig(intensity_window=[[0.2, 0.1]])


def test_run_config_passes_the_window_to_the_augmentation():
    config = TrainConfig(intensity_scaling=[[0.0, 0.0625]])
    assert config.augment_config().intensity_window == ((0.0, 0.0625),)
    off = TrainConfig(intensity_scaling=[[0.0, 0.0625]], augment=False)
    assert off.augment_config() is None
    assert TrainConfig().augment_config().intensity_window is None


def test_twelve_bit_run_stores_the_scaling_and_its_model_applies_it(eight_and_twelve_bit, tmp_path):
    _, twelve = eight_and_twelve_bit
    run = tmp_path / "run"
    result = train(twelve, run, epochs=1, depth=2, base_filters=4, batch_size=4, verbose=0)
    config = json.loads((run / "config.json").read_text())
    (low, high), = config["intensity_scaling"]  # fmt: skip
    assert 0 <= low < high < DIM_RANGE
    assert "intensity_scaling" in config["plan"]["derived"]
    for name in ("best.keras", "last.keras"):
        model = load_model(run / name, compile=False)
        layer = model.get_layer("intensity_scaling")
        np.testing.assert_allclose(layer.scale, [1 / (high - low)], rtol=1e-6)
    # the portable best.keras opens in plain Keras with the scaling as a standard layer
    plain = keras.saving.load_model(run / "best.keras", compile=False, safe_mode=True)
    assert isinstance(plain.get_layer("intensity_scaling"), keras.layers.Rescaling)
    x = load_dataset(twelve).images[0][None, :32, :32]
    np.testing.assert_allclose(plain.predict(x, verbose=0), result.model.predict(x, verbose=0),
                               atol=1e-5)  # fmt: skip
