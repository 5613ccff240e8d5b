"""BatchNorm: Keras's batch norm with a lean bfloat16 training path (any backend)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from unet_lib.model.batchnorm import BatchNorm

BF16 = "mixed_bfloat16"
LEAN = {"dtype": BF16, "lean": True}  # the fast path on every backend


def _offset_batch(seed=0, shape=(2, 16, 16, 8), mean=3.0, std=0.5):
    """A batch whose mean is large against its spread (the case where E[x^2] - E[x]^2
    cancels), rounded to bfloat16 so references see exactly what the layer sees."""
    x = np.random.default_rng(seed).normal(mean, std, shape).astype("float32")
    return np.asarray(ops.convert_to_numpy(ops.cast(ops.cast(x, "bfloat16"), "float32")))


def test_float32_is_keras_exactly():
    x = _offset_batch()
    ours, theirs = BatchNorm(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    ours.build(x.shape), theirs.build(x.shape)
    for training in (True, False):
        a = ops.convert_to_numpy(ours(x, training=training))
        b = ops.convert_to_numpy(theirs(x, training=training))
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.moving_variance.numpy(), theirs.moving_variance.numpy())


@pytest.mark.parametrize("first_image_offset", [0.0, 1.0])
def test_bfloat16_statistics_match_a_float64_reference(first_image_offset):
    # The shift comes from the first 1024 pixels (here the whole first image): with an
    # offset of 2 standard deviations there it is far from the batch mean.
    x = _offset_batch(shape=(4, 32, 32, 8))
    x[0] += first_image_offset
    layer = BatchNorm(**LEAN)
    layer.build(x.shape)
    reference_mean = x.astype(np.float64).mean(axis=(0, 1, 2))
    reference_var = x.astype(np.float64).var(axis=(0, 1, 2))
    mean, var = layer.batch_statistics(ops.cast(x, "bfloat16"))
    mean, var = ops.convert_to_numpy(mean), ops.convert_to_numpy(var)
    # bfloat16 keeps 8 significant bits (0.4 %); the shifted sums are rounded once. Without
    # the shift, E[x^2] = 9.25 would carry +-0.036 against a variance of 0.25 (15 %).
    np.testing.assert_allclose(mean, reference_mean, rtol=4e-3)
    np.testing.assert_allclose(var, reference_var, rtol=3e-2)


def test_bfloat16_training_output_and_moving_statistics():
    x = _offset_batch(seed=1)
    ours = BatchNorm(momentum=0.5, **LEAN)
    ours.build(x.shape)
    ours.gamma.assign(np.linspace(0.5, 2.0, 8).astype("float32"))
    ours.beta.assign(np.linspace(-1.0, 1.0, 8).astype("float32"))
    y = ours(ops.cast(x, "bfloat16"), training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
    mean = x.astype(np.float64).mean(axis=(0, 1, 2))
    var = x.astype(np.float64).var(axis=(0, 1, 2))
    gamma, beta = np.linspace(0.5, 2.0, 8), np.linspace(-1.0, 1.0, 8)
    expected = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta  # Keras's default epsilon
    # |expected| <= ~8 here; bfloat16 output rounding is 2^-8 relative (0.03 at 8).
    np.testing.assert_allclose(ops.convert_to_numpy(ops.cast(y, "float32")), expected, atol=0.1)
    # momentum 0.5 from the initial moving statistics (0 and 1)
    np.testing.assert_allclose(ours.moving_mean.numpy(), 0.5 * mean, rtol=5e-3)
    np.testing.assert_allclose(ours.moving_variance.numpy(), 0.5 + 0.5 * var, rtol=2e-2)
    # inference uses the moving statistics (Keras's path)
    y_inf = ops.convert_to_numpy(ops.cast(ours(ops.cast(x, "bfloat16"), training=False), "float32"))
    mm, mv = ours.moving_mean.numpy(), ours.moving_variance.numpy()
    np.testing.assert_allclose(y_inf, (x - mm) / np.sqrt(mv + 1e-3) * gamma + beta, atol=0.1)


def _conv_bn_model(norm, dtype, **norm_kwargs):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, dtype=dtype, name="conv")(inputs)
    x = norm(dtype=dtype, name="bn", **norm_kwargs)(x)
    x = keras.layers.Activation("relu", dtype=dtype)(x)
    outputs = keras.layers.Conv2D(1, 1, dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs)


def test_one_gradient_step_matches_keras_batch_norm():
    rng = np.random.default_rng(2)
    x = rng.normal(0.5, 0.2, (4, 8, 8, 3)).astype("float32")
    y = rng.normal(0.0, 1.0, (4, 8, 8, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    ours = _conv_bn_model(BatchNorm, BF16, lean=True)
    theirs = _conv_bn_model(keras.layers.BatchNormalization, "float32")
    theirs.set_weights(ours.get_weights())
    before = {w.path: ops.convert_to_numpy(w) for w in ours.weights}
    for model in (ours, theirs):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.train_on_batch(x, y)
    for a, b in zip(ours.weights, theirs.weights, strict=True):
        if not a.trainable:
            continue
        step_ours = ops.convert_to_numpy(a) - before[a.path]
        step_theirs = ops.convert_to_numpy(b) - before[a.path]
        assert np.linalg.norm(step_theirs) > 0, a.path
        # Against float32 Keras the bfloat16 step of the conv kernel (whose gradient goes
        # through the batch statistics) is 8.6 % off on TensorFlow, 10 % on JAX, 3.4 % on
        # torch; with the statistics' gradient cut (stop_gradient) it is 780 % off.
        error = np.linalg.norm(step_ours - step_theirs) / np.linalg.norm(step_theirs)
        assert error < 0.15, (a.path, error)


@pytest.mark.parametrize(
    "layer_kwargs, call_dtype, training, mask, lean",
    [
        (LEAN, "bfloat16", True, False, True),
        (LEAN, "bfloat16", False, False, False),  # inference: moving statistics
        (LEAN, "bfloat16", True, True, False),  # masked statistics
        ({**LEAN, "axis": 1}, "bfloat16", True, False, False),  # channels first
        ({"dtype": "mixed_float16", "lean": True}, "float16", True, False, False),  # overflow
        ({"lean": True}, "float32", True, False, False),
        ({"dtype": BF16, "lean": False}, "bfloat16", True, False, False),
    ],
)
def test_when_the_lean_path_is_taken(layer_kwargs, call_dtype, training, mask, lean):
    layer = BatchNorm(**layer_kwargs)
    x = ops.cast(_offset_batch(), call_dtype)
    assert layer._lean_path(x, training, ops.ones(x.shape[:-1]) if mask else None) is lean


def test_lean_by_default_only_where_measured():
    layer = BatchNorm(dtype=BF16)
    expected = keras.backend.backend() == "tensorflow"
    if expected:
        import tensorflow as tf

        expected = not tf.config.list_logical_devices("GPU")
    assert layer._lean_path(ops.cast(_offset_batch(), "bfloat16"), True, None) is expected
    with pytest.raises(ValueError, match="lean must be"):
        BatchNorm(lean="yes")


def test_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(3)
    model = _conv_bn_model(BatchNorm, "float32", lean=False, momentum=0.9)
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(3).random((2, 8, 8, 3)).astype("float32")
    model.fit(x, np.zeros((2, 8, 8, 1), "float32"), epochs=1, verbose=0)  # moving stats move
    path = tmp_path / "bn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.get_layer("bn")) is BatchNorm
    config = loaded.get_layer("bn").get_config()
    assert config == model.get_layer("bn").get_config()
    assert config["lean"] is False and config["momentum"] == 0.9
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )
