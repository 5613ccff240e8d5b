"""Tests for unet_lib.model.unet: shapes, parameter count, valid-size helpers, saving, training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from unet_lib.model import (
    build_unet,
    padded_size,
    valid_input_size,
    valid_output_size,
)


def _forward(model, height, width, channels, batch=2):
    x = np.random.default_rng(0).random((batch, height, width, channels), dtype=np.float32)
    return keras.ops.convert_to_numpy(model(x, training=False))


# (depth, base_filters, num_classes, padding, upsampling, batch_norm, input size)
SHAPE_CASES = [
    (1, 4, 1, "same", "transpose", False, 16),
    (2, 4, 3, "same", "bilinear", True, 32),
    (3, 2, 2, "same", "transpose", True, 24),
    (4, 2, 5, "same", "bilinear", False, 48),
    (1, 4, 1, "valid", "transpose", False, valid_input_size(8, depth=1)),
    (2, 4, 3, "valid", "bilinear", True, valid_input_size(8, depth=2)),
    (3, 2, 1, "valid", "transpose", False, valid_input_size(4, depth=3)),
]


@pytest.mark.parametrize(
    "depth,base_filters,num_classes,padding,upsampling,batch_norm,size", SHAPE_CASES
)
def test_output_shapes(depth, base_filters, num_classes, padding, upsampling, batch_norm, size):
    model = build_unet(
        (None, None, 2),
        num_classes,
        depth=depth,
        base_filters=base_filters,
        padding=padding,
        upsampling=upsampling,
        batch_norm=batch_norm,
    )
    expected = size if padding == "same" else valid_output_size(size, depth=depth)
    out = _forward(model, size, size, 2)
    assert out.shape == (2, expected, expected, num_classes)
    assert np.all(np.isfinite(out))


def test_non_square_input_and_fixed_shape():
    model = build_unet((32, 48, 1), 2, depth=3, base_filters=4)
    assert model.output_shape == (None, 32, 48, 2)
    assert _forward(model, 32, 48, 1).shape == (2, 32, 48, 2)


def test_paper_parameter_count():
    # The 2015 layout: 64..1024 filters, same padding, up-convolutions, no batch norm.
    assert build_unet((None, None, 1), 1).count_params() == 31_030_593
    assert build_unet((256, 256, 1), 1).count_params() == 31_030_593
    # Unpadded convolutions change no weight shapes, only sizes.
    valid = build_unet((572, 572, 1), 1, padding="valid")
    assert valid.count_params() == 31_030_593
    assert valid.output_shape == (None, 388, 388, 1)


def test_filters_grow_by_level():
    model = build_unet((None, None, 1), 1, depth=3, base_filters=8)
    assert model.get_layer("enc1_conv2").filters == 8
    assert model.get_layer("enc3_conv2").filters == 32
    assert model.get_layer("bottleneck_conv2").filters == 64
    assert model.get_layer("dec1_conv2").filters == 8


def test_valid_sizes_match_the_paper():
    assert valid_output_size(572) == 388
    assert valid_input_size(388) == 572
    assert valid_output_size(188) == 4  # the smallest valid input for depth 4
    assert padded_size(360, 4) == 368
    assert padded_size(256, 4) == 256


@pytest.mark.parametrize("depth,convs", [(1, 1), (2, 2), (3, 2), (4, 2), (2, 3)])
def test_valid_size_helpers_agree_with_brute_force(depth, convs):
    """Walk every input size through the layers by hand and compare with the helpers."""

    def brute_force(n):
        shrink = 2 * convs
        for _ in range(depth):
            n -= shrink
            if n <= 0 or n % 2:
                return None
            n //= 2
        n -= shrink
        for _ in range(depth):
            if n <= 0:
                return None
            n = 2 * n - shrink
        return n if n > 0 else None

    for n in range(1, 400):
        expected = brute_force(n)
        if expected is None:
            with pytest.raises(ValueError, match="padding='valid'"):
                valid_output_size(n, depth, convs)
        else:
            assert valid_output_size(n, depth, convs) == expected
    for out in range(1, 120):
        needed = valid_input_size(out, depth, convs)
        assert valid_output_size(needed, depth, convs) >= out
        # minimal: no smaller valid input reaches `out`
        smaller = [n for n in range(1, needed) if (brute_force(n) or 0) >= out]
        assert not smaller


def test_valid_model_shape_equals_helper_for_several_sizes():
    for out in (4, 20, 36):
        size = valid_input_size(out, depth=2)
        model = build_unet((size, size + 4 * 3, 1), 1, depth=2, base_filters=2, padding="valid")
        assert model.output_shape[1:3] == (
            valid_output_size(size, 2),
            valid_output_size(size + 12, 2),
        )


@pytest.mark.parametrize(
    "activation,check",
    [
        ("auto", lambda y: np.all((y >= 0) & (y <= 1))),
        (None, lambda y: y.min() < 0 or y.max() > 1),  # logits are unbounded
    ],
)
def test_output_activation_binary(activation, check):
    model = build_unet((16, 16, 1), 1, depth=2, base_filters=4, output_activation=activation)
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 1)).astype("float32") * 5
    assert check(keras.ops.convert_to_numpy(model(x)))


def test_softmax_for_several_classes_sums_to_one():
    model = build_unet((16, 16, 1), 4, depth=2, base_filters=4)
    y = _forward(model, 16, 16, 1)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-5)
    assert model.get_layer("head").get_config()["activation"] == "softmax"


def test_output_is_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_unet((16, 16, 1), 2, depth=2, base_filters=4, batch_norm=True)
        assert model.get_layer("enc1_conv1").compute_dtype == "bfloat16"
        assert model.output.dtype == "float32"
        assert _forward(model, 16, 16, 1).dtype == np.float32
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize(
    "options",
    [
        dict(padding="same", upsampling="transpose", batch_norm=False, dropout=0.0),
        dict(padding="same", upsampling="bilinear", batch_norm=True, dropout=0.3),
        dict(padding="valid", upsampling="transpose", batch_norm=True, dropout=0.0),
    ],
)
def test_keras_round_trip_gives_identical_outputs(tmp_path, options):
    size = 32 if options["padding"] == "same" else valid_input_size(8, depth=2)
    model = build_unet((None, None, 1), 3, depth=2, base_filters=4, **options)
    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).random((2, size, size, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(loaded(x))
    )
    assert not any(type(layer).__name__ == "Lambda" for layer in loaded.layers)


def test_one_training_step_lowers_the_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 1), dtype=np.float32)
    y = (x > 0.5).astype("float32")  # a learnable target
    # No batch norm: its moving averages would make evaluate() differ from the trained mode.
    model = build_unet((32, 32, 1), 1, depth=2, base_filters=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    before = model.evaluate(x, y, verbose=0)
    model.train_on_batch(x, y)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(input_shape=(360, 480, 1)), r"pad the image to 368"),
        (dict(input_shape=(64, 100, 1), depth=3), r"width 100 does not divide by 2\*\*depth = 8"),
        (dict(input_shape=(570, 570, 1), padding="valid"), r"use 556 or 572"),
        (dict(input_shape=(100, 100, 1), padding="valid"), r"smallest valid input is 188"),
        (dict(base_filters=0), r"base_filters must be a positive int"),
        (dict(depth=0), r"depth must be a positive int"),
        (dict(num_classes=0), r"num_classes must be a positive int"),
        (dict(convs_per_level=-1), r"convs_per_level must be a positive int"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(upsampling="nearest"), r"upsampling must be one of"),
        (dict(padding="reflect"), r"padding must be one of"),
        (dict(input_shape=(64, 64)), r"\(height, width, channels\)"),
        (dict(input_shape=(64, 64, 0)), r"channel count must be a positive int"),
    ],
)
def test_errors_say_how_to_fix(kwargs, message):
    kwargs = {"input_shape": (None, None, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        build_unet(num_classes=kwargs.pop("num_classes", 1), **kwargs)
