"""Tests for unet_lib.data.pipeline: shapes, determinism, patches, padding, cache, real data."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from unet_lib import IGNORE_LABEL  # noqa: E402
from unet_lib.data import pad_to_multiple_np, unpad_np  # noqa: E402
from unet_lib.data.augment import AugmentConfig, device_augment_fn  # noqa: E402
from unet_lib.data.pipeline import make_dataset, make_eval_dataset, pad_to_multiple  # noqa: E402


def _pairs(shapes, channels=1, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.random((*s, channels), dtype=np.float32) for s in shapes]
    masks = [rng.integers(0, classes, s).astype(np.int32) for s in shapes]
    return images, masks


def _collect(ds):
    return [tuple(t.numpy() for t in batch) for batch in ds]


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(), (4, 40, 40)),
        (dict(patch_size=24), (4, 24, 24)),
        (dict(patch_size=(16, 24), augment=AugmentConfig()), (4, 16, 24)),
        (dict(pad_multiple=16), (4, 48, 48)),
        (dict(patch_size=20, pad_multiple=8, augment=AugmentConfig(elastic=True)), (4, 24, 24)),
    ],
)
def test_shapes_and_dtypes(kwargs, shape):
    images, masks = _pairs([(40, 40)] * 6, channels=3)
    ds = make_dataset(images, masks, batch_size=4, **kwargs)
    batches = _collect(ds)
    assert [len(b[0]) for b in batches] == [4, 2]
    x, y = batches[0]
    assert x.shape == (*shape, 3) and x.dtype == np.float32
    assert y.shape == (*shape, 1) and y.dtype == np.int32
    assert ds.element_spec[1].dtype == tf.int32


def test_autotune_is_off_so_iterators_end_without_waiting():
    # With autotune on, destroying an iterator waits for the autotuner thread's next
    # wake-up (seconds to tens of seconds at 0 % CPU; benchmarks/README.md).
    images, masks = _pairs([(16, 16)] * 2)
    ds = make_dataset(images, masks, batch_size=2)
    assert ds.options().autotune.enabled is False
    assert make_eval_dataset(images, masks).options().autotune.enabled is False


def test_deterministic_with_a_seed():
    images, masks = _pairs([(48, 48)] * 10)

    def build():
        cfg = AugmentConfig(elastic=True, noise=True)
        return make_dataset(
            images, masks, batch_size=4, patch_size=32, augment=cfg, seed=7, deterministic=True
        )

    first, second = build(), build()
    runs = [[_collect(ds), _collect(ds)] for ds in (first, second)]  # two epochs each
    for epoch_a, epoch_b in zip(runs[0], runs[1], strict=True):
        for a, b in zip(epoch_a, epoch_b, strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(runs[0][0][0][0], runs[0][1][0][0])  # new epoch, new batches
    other = make_dataset(images, masks, batch_size=4, patch_size=32, seed=8, deterministic=True)
    assert not np.array_equal(_collect(other)[0][0], runs[0][0][0][0])


def test_patches_are_windows_of_the_images():
    images, masks = _pairs([(30, 36)] * 3)
    ds = make_dataset(images, masks, batch_size=3, patch_size=(12, 10), shuffle=False, seed=1)
    ((x, y),) = _collect(ds)
    offsets = set()
    for i in range(3):
        hits = [
            (r, c)
            for r in range(30 - 12 + 1)
            for c in range(36 - 10 + 1)
            if np.array_equal(images[i][r : r + 12, c : c + 10], x[i])
        ]
        assert len(hits) == 1, i
        r, c = hits[0]
        np.testing.assert_array_equal(masks[i][r : r + 12, c : c + 10], y[i, ..., 0])
        offsets.add(hits[0])
    assert len(offsets) > 1  # each element gets its own window


def test_patch_larger_than_image_pads_mask_with_ignore():
    images, masks = _pairs([(20, 20)] * 2)
    ((x, y),) = _collect(make_dataset(images, masks, batch_size=2, patch_size=32, shuffle=False))
    assert x.shape == (2, 32, 32, 1)
    assert ((y == IGNORE_LABEL).sum(axis=(1, 2, 3)) == 32 * 32 - 20 * 20).all()
    np.testing.assert_array_equal(y[0, 6:26, 6:26, 0], masks[0])


def test_pad_to_multiple_pads_the_mask_with_ignore():
    images, masks = _pairs([(45, 70)])
    ((x, y),) = _collect(make_dataset(images, masks, batch_size=1, pad_multiple=16, cache=False))
    # 45 -> 48 (1 above, 2 below), 70 -> 80 (5 left, 5 right)
    assert x.shape == (1, 48, 80, 1)
    np.testing.assert_array_equal(x[0, 1:46, 5:75], images[0])
    np.testing.assert_array_equal(y[0, 1:46, 5:75, 0], masks[0])
    assert (y == IGNORE_LABEL).sum() == 48 * 80 - 45 * 70
    np.testing.assert_array_equal(x[0, 0], x[0, 2])  # reflected image row


def test_cache_file(tmp_path):
    images, masks = _pairs([(24, 24)] * 5)
    path = tmp_path / "cache" / "train"
    ds = make_dataset(images, masks, batch_size=2, cache=str(path), seed=3)
    epochs = [_collect(ds), _collect(ds)]
    assert any(p.name.startswith("train") for p in path.parent.iterdir())
    key = lambda epoch: sorted(im.tobytes() for b in epoch for im in b[0])  # noqa: E731
    assert key(epochs[0]) == key(epochs[1]) == sorted(i.tobytes() for i in images)
    again = make_dataset(images, masks, batch_size=2, cache=str(path), seed=3)  # reads the file
    assert key(_collect(again)) == key(epochs[0])


def test_variable_sizes():
    images, masks = _pairs([(30, 50), (41, 22), (64, 64)], channels=3, classes=4)
    with pytest.raises(ValueError, match="patch_size"):
        make_dataset(images, masks, batch_size=2)
    ones = _collect(make_dataset(images, masks, batch_size=1, pad_multiple=8, shuffle=False))
    assert [b[0].shape[1:3] for b in ones] == [(32, 56), (48, 24), (64, 64)]
    patched = _collect(make_dataset(images, masks, batch_size=2, patch_size=32))
    assert [b[0].shape for b in patched] == [(2, 32, 32, 3), (1, 32, 32, 3)]
    assert set(np.unique(np.concatenate([b[1].ravel() for b in patched]))) <= {-1, 0, 1, 2, 3}


def test_eval_dataset_keeps_order_and_whole_images():
    images, masks = _pairs([(30, 50), (41, 22)])
    ds = make_eval_dataset(images, masks, pad_multiple=16)
    batches = _collect(ds)
    assert [b[0].shape for b in batches] == [(1, 32, 64, 1), (1, 48, 32, 1)]
    np.testing.assert_array_equal(batches[1][0][0, 3:44, 5:27], images[1])
    same = _collect(make_eval_dataset(*_pairs([(16, 16)] * 3)))
    assert [b[0].shape[0] for b in same] == [3]


def test_sample_weights():
    images, masks = _pairs([(32, 32)] * 4)
    maps = [m.astype(np.float32) + 1 for m in masks]  # weight = label + 1
    ds = make_dataset(
        images,
        masks,
        batch_size=4,
        patch_size=40,
        sample_weights=maps,
        augment=AugmentConfig(elastic=True),
    )
    x, y, w = next(iter(ds))
    assert w.shape == (4, 40, 40, 1) and w.dtype == tf.float32
    y, w = y.numpy(), w.numpy()
    np.testing.assert_array_equal(w[y >= 0], y[y >= 0] + 1)
    assert (w[y == IGNORE_LABEL] == 0).all()
    ds = make_dataset(images, masks, batch_size=4, sample_weights=[1.0, 2.0, 3.0, 4.0])
    assert next(iter(ds))[2].shape == (4,)


def test_augment_on_device_gives_plain_batches():
    images, masks = _pairs([(32, 32)] * 4)
    common = dict(batch_size=4, shuffle=False, seed=0)
    plain = _collect(make_dataset(images, masks, **common))
    device = make_dataset(images, masks, augment=AugmentConfig(), augment_on="device", **common)
    ((x, y),) = _collect(device)
    np.testing.assert_array_equal(x, plain[0][0])
    ax, ay = device_augment_fn(AugmentConfig(), seed=0)(x, y, tf.constant(1))
    assert ax.shape == x.shape and ay.shape == y.shape


def test_input_validation():
    images, masks = _pairs([(16, 16)] * 2)
    with pytest.raises(ValueError, match="masks"):
        make_dataset(images, masks[:1], batch_size=1)
    with pytest.raises(ValueError, match="do not match"):
        make_dataset(images, [np.zeros((8, 8), np.int32)] * 2, batch_size=1)
    with pytest.raises(ValueError, match="augment_on"):
        make_dataset(images, masks, batch_size=1, augment_on="gpu")
    with pytest.raises(ValueError, match="cache"):
        make_dataset(images, masks, batch_size=1, cache=3)


@pytest.mark.parametrize("shape", [(45, 70), (5, 3, 2), (2, 13, 9, 1)])
@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_pad_helpers_agree(shape, mode):
    array = np.random.default_rng(0).random(shape).astype(np.float32)
    padded, box = pad_to_multiple_np(array, 16, mode=mode, constant_value=-1)
    axis = 1 if array.ndim == 4 else 0
    assert padded.shape[axis] % 16 == 0 and padded.shape[axis + 1] % 16 == 0
    np.testing.assert_array_equal(unpad_np(padded, box), array)
    tf_padded = pad_to_multiple(array, 16, mode=mode, constant_value=-1).numpy()
    np.testing.assert_array_equal(tf_padded, padded)


def test_pad_to_multiple_np_example():
    padded, box = pad_to_multiple_np(np.zeros((360, 480, 1)), 16)
    assert padded.shape == (368, 480, 1) and box == (4, 0, 360, 480)


def test_dataset_folder(tmp_path):
    from unet_lib.data import make_synthetic_dataset

    path = make_synthetic_dataset(tmp_path / "syn", kind="multiclass", num_images=4, size=48)
    ds = make_dataset(path, batch_size=2, patch_size=32, augment=AugmentConfig())
    x, y = next(iter(ds))
    assert x.shape == (2, 32, 32, 3) and y.shape == (2, 32, 32, 1)
    assert set(np.unique(y.numpy())) <= {-1, 0, 1, 2, 3}


def test_folder_with_a_cache_file_streams_from_disk(tmp_path):
    """Data larger than memory: pairs are decoded one at a time into the cache file, and a
    second pass reads the cache alone (the source files can be gone)."""
    import shutil

    from unet_lib.data import load_dataset, make_synthetic_dataset

    path = make_synthetic_dataset(tmp_path / "syn", num_images=5, size=32, seed=2)
    in_memory = load_dataset(path)
    cache = tmp_path / "cache" / "train"
    ds = make_dataset(path, batch_size=5, shuffle=False, cache=str(cache))
    [(x, y)] = list(ds)  # the cache file is complete once a pass reaches the end
    np.testing.assert_array_equal(x.numpy(), np.stack(in_memory.images))
    np.testing.assert_array_equal(y.numpy()[..., 0], np.stack(in_memory.masks))
    assert list(cache.parent.glob("train*")), "no cache file written"
    shutil.rmtree(path / "images")  # from now on only the cache can serve the data
    x2, _ = next(iter(ds))
    np.testing.assert_array_equal(x2.numpy(), x.numpy())


REAL = {
    "isbi2012_membrane": dict(labels={"background": 255, "membrane": 0}, channels=None, k=2),
    "dsb2018_nuclei": dict(labels=None, channels=3, k=2),
    "vnc_multiclass": dict(
        labels={
            "membrane": [0, 32, 64, 96, 128],
            "glia": 159,
            "mitochondria": 191,
            "synapse": 223,
            "intracellular": 255,
        },
        channels=None,
        k=5,
    ),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(REAL))
def test_real_data(shared_data, tmp_path, name):
    from unet_lib.data import load_dataset

    spec = REAL[name]
    # a few pairs, linked into a small folder, keep the test fast (the loader has its own tests)
    source = shared_data / name
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for f in sorted((source / sub).iterdir())[:4]:
            (tmp_path / sub / f.name).symlink_to(f)
    data = load_dataset(tmp_path, labels=spec["labels"], channels=spec["channels"])
    assert data.mapping.num_classes == spec["k"]
    n = 4
    ds = make_dataset(
        data.images[:n],
        data.masks[:n],
        batch_size=2,
        patch_size=128,
        augment=AugmentConfig(),
        cache=False,
        pad_multiple=16,
    )
    channels = data.images[0].shape[-1]
    assert channels == (3 if name == "dsb2018_nuclei" else 1)
    for x, y in ds.take(2):
        assert x.shape == (2, 128, 128, channels) and y.shape == (2, 128, 128, 1)
        assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
        assert set(np.unique(y.numpy())) <= set(range(-1, spec["k"]))
    # evaluation: whole images, padded to the multiple
    x, y = next(iter(make_eval_dataset(data.images[:1], data.masks[:1], pad_multiple=16)))
    h, w = data.masks[0].shape
    assert x.shape[1:3] == (-(-h // 16) * 16, -(-w // 16) * 16)


def test_foreground_oversampling_centres_patches_on_rare_classes():
    image = np.zeros((64, 64, 1), np.float32)
    mask = np.zeros((64, 64), np.int32)
    mask[:, :32] = 1  # a common class on the left half
    mask[50, 60] = 2  # one pixel of a rare class
    rare_hits = {}
    for fraction in (0.0, 1.0):
        ds = make_dataset([image] * 200, [mask] * 200, batch_size=200, patch_size=16,
                          foreground_fraction=fraction, shuffle=False, seed=1)  # fmt: skip
        ((_, y),) = list(ds)
        rare_hits[fraction] = float(np.mean((y.numpy() == 2).any(axis=(1, 2, 3))))
        if fraction == 1.0:  # every patch holds some foreground
            assert (y.numpy() > 0).any(axis=(1, 2, 3)).all()
    # uniform windows (starts 0..48 per axis) hold the rare pixel when the row start is in
    # 35..48 and the column start in 45..48: 14 * 4 / 49**2 = 0.023. Oversampled: class 2
    # is drawn half the time, and windows around class 1 (columns < 32) never reach col 60.
    assert rare_hits[0.0] < 0.1
    assert 0.35 < rare_hits[1.0] < 0.65


def test_foreground_oversampling_needs_patches_and_a_valid_fraction():
    images, masks = _pairs([(16, 16)] * 2)
    with pytest.raises(ValueError, match="needs patch_size"):
        make_dataset(images, masks, batch_size=2, foreground_fraction=0.3)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        make_dataset(images, masks, batch_size=2, patch_size=8, foreground_fraction=2.0)
    # masks without foreground fall back to uniform windows
    empty = [np.zeros((16, 16), np.int32)] * 2
    (x, y), = list(make_dataset(images, empty, batch_size=2, patch_size=8,
                                foreground_fraction=1.0))  # fmt: skip
    assert x.shape == (2, 8, 8, 1) and not y.numpy().any()
