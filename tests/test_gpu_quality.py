"""benchmarks/gpu_quality.py: its NumPy patches mirror the library's augmentation (the warp
agrees with SciPy's reference resampling, image and mask stay aligned), its runs use the
library's own CPU and GPU plans for ISBI 2012, and (slow, real data) one tiny run works end
to end on whatever backend the tests use."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gpu_quality
from unet_lib.training.plan import DatasetFingerprint, plan_training

REPO = Path(__file__).resolve().parent.parent


def _smooth_pair(size=96, seed=0):
    from scipy import ndimage

    noise = np.random.default_rng(seed).random((size, size))
    image = ndimage.gaussian_filter(noise, 4)
    image = ((image - image.min()) / (image.max() - image.min())).astype(np.float32)
    return image, (image > 0.5).astype(np.int32)


@pytest.mark.parametrize("degrees, scale", [(0.0, 1.0), (10.0, 1.05), (-15.0, 0.9)])
def test_warp_matches_scipy_reference(degrees, scale):
    from scipy import ndimage

    pytest.importorskip("cv2")
    image, mask = _smooth_pair()
    a = math.radians(degrees)
    matrix = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / scale
    c = (image.shape[0] - 1) / 2
    offset = np.array([c, c]) - matrix @ np.array([c, c])
    got_image, got_mask = gpu_quality._warp(image, mask, matrix, offset)
    want_image = ndimage.affine_transform(image, matrix, offset, order=1, mode="mirror")
    want_mask = ndimage.affine_transform(mask, matrix, offset, order=0, mode="mirror")
    # OpenCV interpolates in fixed point (1/32 pixel): differences of a few 1e-3
    np.testing.assert_allclose(got_image, want_image, atol=5e-3)
    # nearest-neighbour ties at exactly half a pixel may round either way
    assert (got_mask == want_mask).mean() > 0.999


def test_patches_keep_image_and_mask_aligned():
    image, mask = _smooth_pair(size=128)
    gpu_quality._init_worker([image], [mask])
    xs, ys = gpu_quality.make_chunk((3, 20, 64))
    assert xs.shape == ys.shape == (20, 64, 64, 1)
    assert xs.dtype == np.float32 and 0 <= xs.min() and xs.max() <= 1
    assert set(np.unique(ys)) <= {0, 1}
    # mask = image > 0.5 before augmentation, and gamma / contrast / brightness are monotone
    # per patch: thresholding each patch at its own mask's share of pixels recovers the mask
    # except where bilinear and nearest resampling disagree along the edges
    agree = []
    for x, y in zip(xs[..., 0], ys[..., 0], strict=True):
        share = y.mean()
        if 0.1 < share < 0.9:
            agree.append(((x > np.quantile(x, 1 - share)) == (y == 1)).mean())
    assert agree and min(agree) > 0.95, agree
    shifted = [np.roll(x, 8, axis=1) for x in xs[..., 0]]
    assert np.mean([np.corrcoef(s.ravel(), y.ravel())[0, 1] for s, y in zip(
        shifted, ys[..., 0], strict=True)]) < np.mean(
        [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(xs[..., 0], ys[..., 0],
                                                                   strict=True)])  # fmt: skip


def test_runs_are_the_library_plans_for_isbi():
    # ISBI 2012's training block: 18 slices of 512 x 512, membrane ~22 % of the pixels
    fp = DatasetFingerprint(
        num_pairs=18, median_size=(512, 512), min_size=(512, 512), channels=1,
        intensity_mean=[0.5], intensity_std=[0.2], intensity_percentiles=[[0.0, 1.0]],
        class_names=["background", "membrane"], class_fractions=[0.78, 0.22],
        object_diameter={}, object_width={}, is_stack=True,
    )  # fmt: skip
    runs = {tag: (patch, batch, width) for tag, _, patch, batch, width in gpu_quality.RUNS}
    cpu = plan_training(fp, device_kind="CPU", time_budget_minutes=25).options
    gpu = plan_training(fp, device_kind="GPU", time_budget_minutes=25).options
    for tag in ("cpu_plan_1x", "cpu_plan_8x", "cpu_plan_24x"):
        assert runs[tag] == (cpu["patch_size"], cpu["batch_size"], cpu["base_filters"])
    # the GPU plan trains on whole slices (no patch): 512, batch min(16, 14 training slices)
    assert gpu["patch_size"] is None and runs["gpu_plan"] == (512, gpu["batch_size"], 32)
    assert cpu["depth"] == gpu["depth"] == 4


@pytest.mark.slow
@pytest.mark.shared_data
def test_one_tiny_run_end_to_end(shared_data, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_quality", "--tag", "tiny", "--steps", "10",
         "--chunk", "10", "--batch", "2", "--patch", "64", "--workers", "1",
         "--precision", "float32", "--data-root", str(shared_data), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_quality_tiny.json").read_text())
    assert result["steps"] == 10 and result["images_seen"] == 20
    for key in ("test_final", "test_best", "test_best_tta"):
        assert 0 <= result[key]["membrane_dice"] <= 1 and 0 <= result[key]["rand_error"] <= 1
    assert result["history"] and result["best_step"] == 10
