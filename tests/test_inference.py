"""Tests for unet_lib.inference: whole-image and tiled prediction, blending, TTA, saving."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

from unet_lib import inference as inf
from unet_lib import viz
from unet_lib.data.folder import LabelMapping
from unet_lib.model.unet import build_unet


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _image(h, w, seed=0, smooth=0.0):
    img = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    if smooth:
        img = cv2.GaussianBlur(img, (0, 0), smooth)
        img = (img - img.min()) / (img.max() - img.min())
    return img


def _pointwise(kernel, bias, activation=None):
    """1x1-conv model with known weights: output(x) = activation(x @ kernel + bias) per pixel."""
    kernel = np.asarray(kernel, np.float32)
    conv = keras.layers.Conv2D(kernel.shape[1], 1, activation=activation)
    model = keras.Sequential([keras.Input((None, None, kernel.shape[0])), conv])
    conv.set_weights([kernel[None, None], np.asarray(bias, np.float32)])
    return model


@pytest.fixture(scope="module")
def same_unet():
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 1), 1, depth=2, base_filters=4)


@pytest.fixture(scope="module")
def valid_unet():
    keras.utils.set_random_seed(1)
    return build_unet((None, None, 1), 3, depth=2, base_filters=2, padding="valid")


@pytest.fixture(scope="module")
def softmax3():
    # logits = [x, -x, 0.5 x + 0.1] per pixel, then softmax over 3 classes
    return _pointwise([[1.0, -1.0, 0.5]], [0.0, 0.0, 0.1], activation="softmax")


# ----------------------------------------------------------------------------- whole image
def test_whole_image_odd_size_equals_padded_model_output(same_unet):
    img = _image(37, 53)
    pred = inf.predict(same_unet, img)
    assert pred.probabilities.shape == (37, 53, 1) and pred.probabilities.dtype == np.float32
    assert pred.labels.shape == (37, 53) and pred.labels.dtype == np.int32
    padded = np.pad(img, ((0, 3), (0, 3)), mode="reflect")  # to 40 x 56, multiples of 2**2
    expected = _np(same_unet(padded[None, ..., None], training=False))[0, :37, :53]
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-6)


def test_whole_image_valid_model_keeps_the_input_size(valid_unet):
    img = _image(37, 53)
    probs = inf.predict_probabilities(valid_unet, img)
    assert probs.shape == (37, 53, 3)
    # margin 20 per side; valid inputs are 44 + 4k: 37 + 40 = 77 -> 80, 53 + 40 = 93 -> 96
    padded = np.pad(img, ((20, 23), (20, 23)), mode="reflect")
    expected = _np(valid_unet(padded[None, ..., None], training=False))[0, :37, :53]
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_uint8_image_is_scaled_like_float(same_unet):
    img8 = (np.random.default_rng(3).random((20, 24)) * 255).astype(np.uint8)
    a = inf.predict_probabilities(same_unet, img8, tile_size=16)
    b = inf.predict_probabilities(same_unet, img8.astype(np.float32) / 255, tile_size=16)
    np.testing.assert_allclose(a, b, atol=1e-6)


# ----------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("tile_size", [12, 20, 32, (12, 28), 128])
def test_tiled_equals_whole_image_for_valid_model(valid_unet, tile_size):
    img = _image(70, 83)  # not a multiple of any tile
    whole = inf.predict_probabilities(valid_unet, img)
    tiled = inf.predict_probabilities(valid_unet, img, tile_size=tile_size, batch_size=5)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_tiled_pointwise_model_equals_whole_image(softmax3, blend, overlap):
    # A pointwise model has no tile borders, so any error is in blending / normalisation.
    img = _image(45, 61)
    tiled = inf.predict(softmax3, img, tile_size=16, overlap=overlap, blend=blend)
    whole = inf.predict(softmax3, img)
    np.testing.assert_allclose(tiled.probabilities, whole.probabilities, atol=1e-6)
    np.testing.assert_array_equal(tiled.labels, whole.labels)


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_constant_model_gives_the_constant_everywhere(blend):
    model = _pointwise([[0.0]], [0.7])  # output = 0 * x + 0.7
    probs = inf.predict_probabilities(model, _image(50, 37), tile_size=16, blend=blend)
    np.testing.assert_allclose(probs, 0.7, atol=1e-6)


def test_tiled_same_unet_matches_whole_image_in_the_interior(same_unet):
    # Tiles see mirrored context at the image border while the whole-image pass sees the
    # convolutions' zero padding, so only pixels farther than the receptive-field radius
    # (~25 px for depth 2) from the border are comparable. There, tile edges are the only
    # error: Gaussian blending with overlap 0.5 must be close, and much closer than plain
    # side-by-side tiles (overlap 0: seams).
    img = _image(150, 170, smooth=2.0)
    whole = inf.predict_probabilities(same_unet, img)

    def interior_error(**kw):
        tiled = inf.predict_probabilities(same_unet, img, tile_size=64, **kw)
        return np.abs(tiled - whole)[25:-25, 25:-25].max()

    blended, seams = interior_error(overlap=0.5), interior_error(overlap=0.0)
    assert blended < 0.02
    assert blended < 0.25 * seams


def test_fixed_input_model_is_tiled_automatically():
    keras.utils.set_random_seed(2)
    model = build_unet((32, 32, 1), 1, depth=2, base_filters=2)
    img = _image(50, 70)
    auto = inf.predict_probabilities(model, img)
    assert auto.shape == (50, 70, 1)
    np.testing.assert_allclose(auto, inf.predict_probabilities(model, img, tile_size=32))
    with pytest.raises(ValueError, match=r"tile_size=\(32, 32\)"):
        inf.predict(model, img, tile_size=64)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize(("depth", "convs"), [(1, 1), (2, 2), (3, 3)])
def test_unet_geometry_from_the_size_rules_equals_probing(padding, depth, convs):
    from unet_lib.inference import geometry

    up = "bilinear" if depth == 3 else "transpose"
    model = build_unet((None, None, 1), 2, depth=depth, base_filters=2, convs_per_level=convs,
                       padding=padding, upsampling=up)  # fmt: skip
    assert geometry.unet_structure(model) == (depth, convs, padding)

    def rename(layer):  # the same network under other layer names: a "foreign" model
        return layer.__class__.from_config({**layer.get_config(), "name": f"x_{layer.name}"})

    foreign = keras.models.clone_model(model, clone_function=rename)
    assert geometry.unet_structure(foreign) is None  # so it is probed
    assert geometry.model_geometry(foreign) == geometry.model_geometry(model)
    assert geometry.unet_structure(_pointwise([[1.0]], [0.0])) is None


def test_verbose_prints_progress_and_default_is_silent(softmax3, capsys):
    inf.predict(softmax3, _image(40, 40), tile_size=16)
    assert capsys.readouterr().out == ""
    inf.predict(softmax3, _image(40, 40), tile_size=16, verbose=True)
    assert "tiles" in capsys.readouterr().out


@pytest.mark.parametrize("tta", [False, True])
def test_predict_batch_matches_predict(same_unet, tta):
    images = [_image(20, 28, 1), _image(33, 17, 2), _image(20, 28, 3)]  # 1 and 3 share calls
    preds = inf.predict_batch(same_unet, images, batch_size=2, tta=tta)
    for image, pred in zip(images, preds, strict=True):
        single = inf.predict(same_unet, image, tta=tta)
        np.testing.assert_allclose(pred.probabilities, single.probabilities, atol=1e-6)
        np.testing.assert_array_equal(pred.labels, single.labels)
    with pytest.raises(TypeError):
        inf.predict_batch(same_unet, images, tile=16)


# ----------------------------------------------------------------------------- windows
def test_windows():
    g = inf.gaussian_window(16)
    assert g.shape == (16, 16) and g.dtype == np.float32
    assert g.max() == 1.0 and g.min() > 0
    np.testing.assert_allclose(g, g.T)
    np.testing.assert_allclose(g, g[::-1, ::-1])
    assert inf.gaussian_window((4, 6)).shape == (4, 6)
    # 1-D tent on 4 pixels: 1 - |2 (x + 0.5) / 4 - 1| = .25, .75, .75, .25, scaled to max 1
    row = np.array([1 / 3, 1, 1, 1 / 3], np.float32)
    np.testing.assert_allclose(inf.linear_window(4), np.outer(row, row), rtol=1e-6)


# ----------------------------------------------------------------------------- TTA
def test_tta_transforms_invert_and_are_distinct():
    assert [t.name for t in inf.tta_transforms(False)] == ["identity"]
    assert len(inf.tta_transforms(True)) == 8
    assert [t.name for t in inf.tta_transforms(4)][1:] == ["flip_lr", "flip_ud", "rot180"]
    x = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    seen = set()
    for t in inf.tta_transforms(True):
        np.testing.assert_array_equal(t.invert(t.apply(x)), x)
        seen.add(t.apply(x).tobytes())
    assert len(seen) == 8


@pytest.mark.parametrize("tile_size", [None, 16, (16, 32)])
def test_tta_of_an_equivariant_model_changes_nothing(softmax3, tile_size):
    img = _image(30, 30)
    plain = inf.predict_probabilities(softmax3, img, tile_size=tile_size)
    tta = inf.predict_probabilities(softmax3, img, tile_size=tile_size, tta=True)
    assert tta.shape == (30, 30, 3)
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_full_tta_makes_a_unet_equivariant(same_unet):
    # TTA(g x) = mean_h h^-1 f(h g x) = g mean_h (hg)^-1 f(hg x) = g TTA(x) for g in the group
    # (square image, size a multiple of 2**depth, so no padding breaks the symmetry).
    img = _image(32, 32, seed=5)
    base = inf.predict_probabilities(same_unet, img, tta=True)
    plain = inf.predict_probabilities(same_unet, img)
    for t in inf.tta_transforms(True)[1:5:3]:  # flip_lr, rot90
        moved = inf.predict_probabilities(same_unet, t.apply(img, axes=(0, 1)), tta=True)
        np.testing.assert_allclose(moved, t.apply(base), atol=1e-5)
        # ... while a single pass is not equivariant (so the check has teeth)
        single = inf.predict_probabilities(same_unet, t.apply(img, axes=(0, 1)))
        assert not np.allclose(single, t.apply(plain), atol=1e-5)


def test_tta_of_a_symmetric_image_is_symmetric(same_unet):
    a = _image(32, 32, seed=6)[..., None]
    sym = sum(t.apply(a) for t in inf.tta_transforms(True)) / 8  # invariant under the group
    probs = inf.predict_probabilities(same_unet, sym, tta=True)
    for t in inf.tta_transforms(True):
        np.testing.assert_allclose(t.apply(probs), probs, atol=1e-5)


# ----------------------------------------------------------------------------- labels
def test_binary_labels_use_the_threshold():
    identity = _pointwise([[1.0]], [0.0])  # probability = pixel value
    img = _image(9, 11)
    for threshold in (0.5, 0.8):
        pred = inf.predict(identity, img, threshold=threshold)
        np.testing.assert_array_equal(pred.labels, (img >= threshold).astype(np.int32))


def test_multiclass_labels_are_the_argmax(softmax3):
    img = _image(9, 11)
    pred = inf.predict(softmax3, img)
    logits = np.stack([img, -img, 0.5 * img + 0.1], axis=-1)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(pred.probabilities, expected, atol=1e-6)
    np.testing.assert_array_equal(pred.labels, expected.argmax(-1))


def test_from_logits_applies_the_sigmoid():
    logits_model = _pointwise([[4.0]], [-2.0])
    img = _image(8, 8)
    probs = inf.predict_probabilities(logits_model, img, from_logits=True)
    np.testing.assert_allclose(probs[..., 0], 1 / (1 + np.exp(-(4 * img - 2))), atol=1e-6)


# ----------------------------------------------------------------------------- saving
def _read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_save_mask_with_mapping_round_trips_to_the_grey_values(tmp_path):
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.int32)
    mapping = LabelMapping(("background", "cell", "nucleus"), ((0,), (128,), (255, 254)))
    path = inf.save_mask(labels, tmp_path / "sub" / "m.png", mapping)
    np.testing.assert_array_equal(_read(path), [[0, 128, 255], [255, 128, 0]])
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.png"]  # no temp file left
    inverted = LabelMapping(("background", "membrane"), ((255,), (0,)))
    path = inf.save_mask(labels[:, :2].clip(0, 1), tmp_path / "b.png", inverted)
    np.testing.assert_array_equal(_read(path), [[255, 0], [0, 0]])


def test_save_mask_without_mapping(tmp_path):
    binary = np.array([[0, 1]], np.int32)
    np.testing.assert_array_equal(_read(inf.save_mask(binary, tmp_path / "a.png")), [[0, 255]])
    multi = np.array([[0, 1, 2]], np.int32)
    np.testing.assert_array_equal(_read(inf.save_mask(multi, tmp_path / "c.png")), [[0, 1, 2]])
    out = inf.save_mask(binary, tmp_path / "d.png", binary=False)  # a multi-class map
    np.testing.assert_array_equal(_read(out), [[0, 1]])


def test_overlay_is_rgb_uint8_of_the_image_size(tmp_path):
    img = np.full((10, 12), 0.5, np.float32)
    labels = np.zeros((10, 12), np.int32)
    labels[2:5, 3:6] = 1
    path = inf.save_overlay(img, labels, tmp_path / "o.png", alpha=0.5)
    rgb = cv2.cvtColor(_read(path), cv2.COLOR_BGR2RGB)
    assert rgb.shape == (10, 12, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (128, 128, 128)  # background untinted
    # the viz palette (class 1 orange): 0.5 * 128 + 0.5 * (230, 159, 0), rounded half to even
    assert tuple(rgb[3, 4]) == (179, 144, 64)
    np.testing.assert_array_equal(rgb, viz.overlay(img, labels, alpha=0.5))  # one overlay
    red = inf.overlay_image(img, labels, alpha=0.5, colors=[(255, 0, 0)])  # classes 1, 2, ...
    assert tuple(red[3, 4]) == (192, 64, 64)
    assert inf.overlay_image(np.zeros((4, 5, 3)), np.zeros((4, 5), int)).shape == (4, 5, 3)


def test_predict_folder_writes_masks_and_overlays(tmp_path, same_unet):
    src = tmp_path / "images"
    src.mkdir()
    for name, (h, w) in {"a.png": (20, 30), "b.tif": (17, 25)}.items():
        cv2.imwrite(str(src / name), (_image(h, w) * 255).astype(np.uint8))
    (src / "notes.txt").write_text("ignored")
    mapping = {"labels": {"background": 0, "membrane": 200}}
    paths = inf.predict_folder(same_unet, src, tmp_path / "out", mapping=mapping, overlay=True)
    assert [p.name for p in paths] == ["a.png", "a_overlay.png", "b.png", "b_overlay.png"]
    mask = _read(paths[0])
    assert mask.shape == (20, 30) and set(np.unique(mask)) <= {0, 200}
    assert _read(paths[3]).shape == (17, 25, 3)
    one = inf.predict_folder(same_unet, src / "a.png", tmp_path / "single")
    assert set(np.unique(_read(one[0]))) <= {0, 255}
    with pytest.raises(ValueError, match="overwrite input images"):
        inf.predict_folder(same_unet, src, src)
    with pytest.raises(ValueError, match="multiple of 4"):
        inf.predict_folder(same_unet, src, tmp_path / "bad", tile_size=30)
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tile_size": 30}, "multiple of 4.*use 28 or 32"),
        ({"tile_size": 12, "multiple": 8}, "multiple of 8.*use 8 or 16"),
        ({"tile_size": 0}, "positive int"),
        ({"overlap": 1.0}, r"overlap must be in \[0, 1\)"),
        ({"blend": "cosine"}, "blend must be one of"),
        ({"tta": 9}, "tta must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"threshold": 1.5}, "threshold"),
        ({"multiple": 0}, "multiple"),
    ],
)
def test_argument_errors(same_unet, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inf.predict(same_unet, _image(16, 16), **kwargs)


def test_image_errors(same_unet):
    with pytest.raises(ValueError, match="3 channels but the model takes 1"):
        inf.predict(same_unet, np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\)"):
        inf.predict(same_unet, np.zeros((2, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="integer"):
        inf.save_mask(np.zeros((4, 4), np.float32), "x.png")


# ----------------------------------------------------------------------------- precision
@pytest.fixture(scope="module")
def bn_unet():
    """A small U-Net with batch norm whose statistics are not the identity."""
    keras.utils.set_random_seed(4)
    model = build_unet((None, None, 1), 1, depth=2, base_filters=8, batch_norm=True)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.1, n).astype(np.float32))
    return model


def test_precision_errors(same_unet):
    with pytest.raises(ValueError, match="precision must be one of"):
        inf.predict(same_unet, _image(16, 16), precision="float16")
    with pytest.raises(ValueError, match="precision must be one of"):
        inf.predict_batch(same_unet, [_image(16, 16)] * 2, precision="fp8")


def test_float32_folded_batch_norm_equals_the_model(bn_unet):
    from unet_lib.inference.engine import fold_plan, inference_copy

    assert len(fold_plan(bn_unet)) == 10  # every conv -> BN pair (2 per level, 5 levels)
    copy = inference_copy(bn_unet, "float32")
    assert not any(isinstance(lay, keras.layers.BatchNormalization) for lay in copy.layers)
    img = _image(40, 56, smooth=1.0)
    expected = _np(bn_unet(img[None, ..., None], training=False))[0]
    np.testing.assert_allclose(_np(copy(img[None, ..., None]))[0], expected, atol=1e-5)
    np.testing.assert_allclose(inf.predict_probabilities(bn_unet, img), expected, atol=1e-5)


def test_bfloat16_path_keeps_the_labels(bn_unet):
    img = _image(64, 80, seed=5, smooth=1.5)
    f32 = inf.predict(bn_unet, img, precision="float32")
    bf16 = inf.predict(bn_unet, img, precision="bfloat16")
    assert bf16.probabilities.dtype == np.float32 and bf16.labels.shape == (64, 80)
    assert 0 < np.abs(bf16.probabilities - f32.probabilities).max() < 0.05  # really bfloat16
    assert np.mean(bf16.labels == f32.labels) >= 0.99
    # the tiled bfloat16 path against the same tiling in float32 (tiling itself moves an
    # untrained net's near-0.5 pixels, which is not what this test is about)
    tiled = inf.predict(bn_unet, img, precision="bfloat16", tile_size=32, overlap=0.25)
    tiled32 = inf.predict(bn_unet, img, precision="float32", tile_size=32, overlap=0.25)
    assert np.mean(tiled.labels == tiled32.labels) >= 0.99


def test_bfloat16_copy_keeps_a_float32_head(bn_unet):
    from unet_lib.inference.engine import inference_copy

    copy = inference_copy(bn_unet, "bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in copy.layers}
    assert policies["head"] == policies["head_conv"] == "float32"  # 1x1 conv + sigmoid
    assert policies["enc1_conv1"] == "float32"  # the stem reads the 1-channel input
    assert policies["enc1_conv2"] == policies["dec1_conv2"] == "mixed_bfloat16"


def test_bfloat16_copy_keeps_the_intensity_scaling_and_its_stem_in_float32():
    from unet_lib.inference.engine import inference_copy
    from unet_lib.model import build_unet

    model = build_unet((None, None, 1), 1, depth=2, base_filters=4, batch_norm=True,
                       intensity_scaling=[(0.0, 0.0625)])  # fmt: skip
    copy = inference_copy(model, "bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in copy.layers}
    assert policies["intensity_scaling"] == policies["enc1_conv1"] == "float32"
    assert policies["enc1_conv2"] == "mixed_bfloat16"
    x = np.random.default_rng(0).uniform(0, 0.0625, (1, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.05)


def test_cached_copy_follows_weight_changes(bn_unet):
    img = _image(32, 32, seed=6)
    model = keras.models.clone_model(bn_unet)
    model.set_weights(bn_unet.get_weights())
    before = inf.predict_probabilities(model, img, precision="float32")
    bias = model.get_layer("head_conv").bias
    bias.assign(bias - 50.0)  # sigmoid(logit - 50): everything ~0
    after = inf.predict_probabilities(model, img, precision="float32")
    assert before.max() > 0.01 and after.max() < 1e-6


def test_auto_precision_follows_the_cpu(monkeypatch):
    from unet_lib import runtime
    from unet_lib.inference import engine as inference_model

    for flags, expected in (({"avx512_bf16", "avx2"}, "bfloat16"), ({"avx2"}, "float32")):
        monkeypatch.setattr(runtime, "read_cpu_flags", lambda flags=flags: flags)
        inference_model.default_precision.cache_clear()
        has_gpu = "accelerator" in inference_model.default_precision()[1]
        # bfloat16 inference was measured on TensorFlow only; other backends keep float32
        other_backend = keras.backend.backend() != "tensorflow"
        want = "float32" if has_gpu or other_backend else expected
        assert inference_model.resolve_precision("auto") == want
    inference_model.default_precision.cache_clear()


def test_subclassed_model_is_not_copied():
    from unet_lib.inference.engine import Runner, inference_copy

    class Halve(keras.Model):
        def call(self, x):
            return x * 0.5

    model = Halve()
    x = np.ones((1, 4, 4, 1), np.float32)
    model(x)
    assert inference_copy(model, "bfloat16") is None
    np.testing.assert_allclose(Runner(model, "float32")(model, x), 0.5 * x)
    with pytest.raises(ValueError, match="functional or Sequential"):
        Runner(model, "bfloat16")
