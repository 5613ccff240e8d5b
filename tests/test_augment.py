"""Tests for unet_lib.data.augment: geometric invariants, label safety, seeds, identities."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from unet_lib import IGNORE_LABEL  # noqa: E402
from unet_lib.data.augment import (  # noqa: E402
    AugmentConfig,
    augment_pair,
    device_augment_fn,
    preview_augmentations,
    random_crop_pair,
)
from unet_lib.data.transforms import _cubic_matrix  # noqa: E402

NONE = AugmentConfig.none()


def _smooth_image(shape=(96, 96), sigma=5.0, seed=0) -> np.ndarray:
    """A smooth random field in [0, 1], (H, W, 1) float32."""
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma)
    field = (field - field.min()) / (field.max() - field.min())
    return field[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    """Image and its threshold: mask = image > 0.5, so geometry must keep them in step."""
    image = _smooth_image()
    return image, (image[..., 0] > 0.5).astype(np.int32)


@pytest.fixture(scope="module")
def labelled():
    """A 4-class label map with an ignored (-1) block."""
    image = _smooth_image((64, 80), seed=1)
    mask = np.minimum((image[..., 0] * 4).astype(np.int32), 3)
    mask[10:20, 30:50] = IGNORE_LABEL
    return image, mask


def _agreement(image, mask) -> float:
    image, mask = np.asarray(image)[..., 0], np.asarray(mask)
    valid = mask != IGNORE_LABEL
    return float(((image > 0.5) == (mask == 1))[valid].mean())


EXACT = {
    "flip": dataclasses.replace(NONE, flip=True),
    "rot90": dataclasses.replace(NONE, rotate90=True),
    "flip+rot90": dataclasses.replace(NONE, flip=True, rotate90=True),
}
INTERPOLATING = {
    "affine": dataclasses.replace(NONE, affine=True, rotation_degrees=30, scale_range=(0.8, 1.25)),
    "elastic": dataclasses.replace(NONE, elastic=True),
    "affine+elastic+ignore": dataclasses.replace(
        NONE, affine=True, elastic=True, rotation_degrees=30, mask_fill="ignore"
    ),
    "all geometric": dataclasses.replace(NONE, flip=True, rotate90=True, affine=True, elastic=True),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_transforms_keep_threshold(pair, name):
    image, mask = pair
    outputs = set()
    for seed in range(6):
        img, msk = augment_pair(image, mask, EXACT[name], seed=seed)
        assert img.shape == image.shape and msk.shape == mask.shape
        np.testing.assert_array_equal(msk.numpy(), (img.numpy()[..., 0] > 0.5).astype(np.int32))
        outputs.add(img.numpy().tobytes())
    assert len(outputs) > 1  # the transform did something


@pytest.mark.parametrize("name", list(INTERPOLATING))
def test_interpolating_transforms_keep_threshold(pair, name):
    # bilinear image vs nearest mask disagree only on a thin band along the 0.5 contour
    image, mask = pair
    for seed in range(3):
        img, msk = augment_pair(image, mask, INTERPOLATING[name], seed=seed)
        assert np.abs(img.numpy() - image).mean() > 0.01
        assert _agreement(img, msk) >= 0.98, (name, seed, _agreement(img, msk))


def test_random_crop_is_exact_and_pads_with_ignore(pair):
    image, mask = pair
    for seed in range(4):
        img, msk = random_crop_pair(image, mask, (40, 56), seed=seed)
        assert img.shape == (40, 56, 1) and msk.shape == (40, 56)
        np.testing.assert_array_equal(msk.numpy(), (img.numpy()[..., 0] > 0.5).astype(np.int32))
    # window larger than the image: centred, image reflected, mask -1 around it
    img, msk = random_crop_pair(image, mask, 120, seed=0)
    img, msk = img.numpy(), msk.numpy()
    assert img.shape == (120, 120, 1)
    np.testing.assert_array_equal(msk[12:108, 12:108], mask)  # (120 - 96) / 2 = 12
    np.testing.assert_array_equal(img[12:108, 12:108], image)
    assert (msk == IGNORE_LABEL).sum() == 120 * 120 - 96 * 96
    np.testing.assert_array_equal(img[11, 12:108], image[1])  # reflect-101: row -1 -> row 1


def test_labels_stay_in_the_original_set(labelled):
    image, mask = labelled
    cfg = AugmentConfig(elastic=True, rotation_degrees=40, scale_range=(0.7, 1.3))
    allowed = set(np.unique(mask)) | {IGNORE_LABEL}
    for seed in range(4):
        _, msk = augment_pair(image, mask, cfg, seed=seed)
        assert msk.dtype == tf.int32
        assert set(np.unique(msk.numpy())) <= allowed
        assert (msk.numpy() == IGNORE_LABEL).any()  # the ignored block survives


def test_ignore_pixels_preserved_by_exact_transforms(labelled):
    image, mask = labelled
    cfg = dataclasses.replace(NONE, flip=True, rotate90=True)
    for seed in range(4):
        _, msk = augment_pair(image, mask, cfg, seed=seed)
        assert (msk.numpy() == IGNORE_LABEL).sum() == (mask == IGNORE_LABEL).sum()
        np.testing.assert_array_equal(np.sort(msk.numpy(), None), np.sort(mask, None))


def test_mask_fill_ignore_marks_outside(pair):
    image, mask = pair
    # zoom out by 2: everything outside the central half comes from outside the image
    cfg = dataclasses.replace(NONE, affine=True, rotation_degrees=0, scale_range=(0.5, 0.5))
    _, reflected = augment_pair(image, mask, cfg, seed=0)
    _, ignored = augment_pair(image, mask, dataclasses.replace(cfg, mask_fill="ignore"), seed=0)
    assert (reflected.numpy() >= 0).all()
    frac = (ignored.numpy() == IGNORE_LABEL).mean()
    assert 0.7 < frac < 0.8  # 1 - (1/2)^2 = 0.75 up to rounding at the border


def test_affine_scale_matches_numpy_bilinear(pair):
    # scale 2 about the centre c = 47.5: output (y, x) samples the input at c + (p - c) / 2
    image, mask = pair
    cfg = dataclasses.replace(NONE, affine=True, rotation_degrees=0, scale_range=(2.0, 2.0))
    img, msk = augment_pair(image, mask, cfg, seed=0)
    c = (96 - 1) / 2
    src = c + (np.arange(96) - c) / 2
    y0 = np.floor(src).astype(int)
    f = src - y0
    y1 = np.minimum(y0 + 1, 95)
    im = image[..., 0]
    rows = im[y0] * (1 - f)[:, None] + im[y1] * f[:, None]
    ref = rows[:, y0] * (1 - f)[None] + rows[:, y1] * f[None]
    np.testing.assert_allclose(img.numpy()[..., 0], ref, atol=1e-5)
    near = np.round(src).astype(int)
    np.testing.assert_array_equal(msk.numpy(), mask[near][:, near])


def test_intensity_leaves_mask_untouched(labelled):
    image, mask = labelled
    cfg = dataclasses.replace(NONE, intensity=True, noise=True, brightness=0.5, contrast=0.5)
    for seed in range(4):
        img, msk = augment_pair(image, mask, cfg, seed=seed)
        np.testing.assert_array_equal(msk.numpy(), mask)
        assert 0.0 <= img.numpy().min() and img.numpy().max() <= 1.0
        assert not np.allclose(img.numpy(), image)


def test_seeds_are_deterministic(pair):
    image, mask = pair
    cfg = AugmentConfig(elastic=True, noise=True)
    a = augment_pair(image, mask, cfg, seed=5)
    b = augment_pair(image, mask, cfg, seed=tf.constant([5, 0]))
    c = augment_pair(image, mask, cfg, seed=6)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy())


ONE_SWITCH_OFF = {
    "flip": dict(flip=False),
    "rotate90": dict(rotate90=False),
    "affine": dict(affine=False, rotation_degrees=45.0, scale_range=(0.5, 2.0)),
    "elastic": dict(elastic=False, elastic_sigma=30.0),
    "intensity": dict(intensity=False, brightness=0.5, contrast=0.5, gamma=1.0),
    "noise": dict(noise=False, noise_std=0.3),
}


@pytest.mark.parametrize("name", list(ONE_SWITCH_OFF))
def test_switch_off_is_identity(labelled, name):
    # every other switch off as well, the strengths set high: nothing may change
    image, mask = labelled
    cfg = dataclasses.replace(NONE, **ONE_SWITCH_OFF[name])
    img, msk = augment_pair(image, mask, cfg, seed=3)
    np.testing.assert_array_equal(img.numpy(), image)
    np.testing.assert_array_equal(msk.numpy(), mask)


def test_zero_strength_affine_is_identity(labelled):
    image, mask = labelled
    cfg = dataclasses.replace(NONE, affine=True, rotation_degrees=0, scale_range=(1.0, 1.0))
    img, msk = augment_pair(image, mask, cfg, seed=3)
    np.testing.assert_allclose(img.numpy(), image, atol=1e-5)
    np.testing.assert_array_equal(msk.numpy(), mask)


def test_batch_draws_per_sample_and_keeps_shapes(pair):
    image, mask = pair
    images = np.stack([image] * 4)
    masks = np.stack([mask] * 4)[..., None]
    img, msk = augment_pair(images, masks, AugmentConfig(), seed=1)
    assert img.shape == images.shape and msk.shape == masks.shape
    assert len({img[i].numpy().tobytes() for i in range(4)}) == 4


def test_non_square_images_keep_their_shape():
    image = _smooth_image((48, 64))
    mask = (image[..., 0] > 0.5).astype(np.int32)
    cfg = dataclasses.replace(NONE, rotate90=True, flip=True)
    fn = tf.function(
        lambda x, y, s: augment_pair(x, y, cfg, s),
        input_signature=[
            tf.TensorSpec([None, None, 1]),
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([2], tf.int64),
        ],
    )
    seen = set()
    for seed in range(8):
        for img, msk in (augment_pair(image, mask, cfg, seed), fn(image, mask, [seed, 0])):
            assert img.shape == (48, 64, 1) and msk.shape == (48, 64)
            np.testing.assert_array_equal(msk.numpy(), img.numpy()[..., 0] > 0.5)
            seen.add(img.numpy().tobytes())
    assert len(seen) == 4  # identity, two flips, 180 degrees


def test_device_augment_fn_runs_under_xla(pair):
    image, mask = pair
    images = tf.constant(np.stack([image[:64, :64]] * 2))
    masks = tf.constant(np.stack([mask[:64, :64]] * 2)[..., None])
    fn = tf.function(device_augment_fn(AugmentConfig(elastic=True), seed=0), jit_compile=True)
    a_img, a_msk = fn(images, masks, tf.constant(3))
    b_img, _ = fn(images, masks, tf.constant(3))
    c_img, _ = fn(images, masks, tf.constant(4))
    assert a_img.shape == images.shape and a_msk.shape == masks.shape
    np.testing.assert_array_equal(a_img.numpy(), b_img.numpy())
    assert not np.array_equal(a_img.numpy(), c_img.numpy())
    assert set(np.unique(a_msk.numpy())) <= {0, 1}


def test_weights_move_with_the_mask(labelled):
    image, mask = labelled
    weights = (mask + 2).astype(np.float32)  # a weight map that encodes the label
    cfg = AugmentConfig(elastic=True, mask_fill="ignore", scale_range=(0.7, 0.8))
    _, msk, w = augment_pair(image, mask, cfg, seed=2, weights=weights)
    msk, w = msk.numpy(), w.numpy()
    inside = msk != IGNORE_LABEL
    np.testing.assert_array_equal(w[inside], msk[inside] + 2)
    # ignored pixels: the original block keeps its weight (-1 + 2), the outside gets 0
    assert set(np.unique(w[~inside])) == {0.0, 1.0}


def test_preview_returns_numpy_pairs(pair):
    image, mask = pair
    out = preview_augmentations(image, mask, AugmentConfig(), n=3, seed=0)
    assert len(out) == 3
    assert all(isinstance(i, np.ndarray) and i.shape == image.shape for i, _ in out)
    assert all(m.shape == mask.shape and m.dtype == np.int32 for _, m in out)


def test_elastic_upsampling_interpolates_the_grid():
    m = _cubic_matrix(21, 3).numpy()  # nodes at pixels 0, 10, 20
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(m[[0, 10, 20]], np.eye(3), atol=1e-6)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="mask_fill"):
        AugmentConfig(mask_fill="zero")
    with pytest.raises(ValueError, match="unknown"):
        AugmentConfig.from_dict({"flip": True, "shear": 3})
    cfg = AugmentConfig(elastic=True, scale_range=[0.8, 1.2])
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert AugmentConfig.none().is_identity and not AugmentConfig().is_identity
    defaults = AugmentConfig()
    assert defaults.flip and defaults.rotate90 and defaults.intensity and not defaults.elastic
