"""Inference benchmarks: library prediction against plain ``model.predict``, whole image
against overlap tiles, megapixels/s and peak resident memory per image size.

Speed (in this process, interleaved rounds, medians): ``unet_lib.predict`` with
``precision="auto"`` (bfloat16 on a CPU with AVX-512 BF16) against a plain Keras user's
``model.predict`` in float32 on the same (padded) image, and the labels of both compared
pixel by pixel. Memory (a fresh Python per size, :func:`memory_worker`): the peak resident
set above the level reached after loading the model and one small warm-up prediction, with
the input image (uint8) made before that level is taken, so it does not count.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_common import MiB, emit, interleaved, median, memory_status, reset_peak_rss
from benchmarks.flops import count_flops

# 512² tiles, the library's default tile batch (4): 2 per call measured 20 % slower at 1024²
TILED = {"tile_size": 512, "overlap": 0.0625, "batch_size": 4}
REFERENCE_EPOCHS = 20


def reference_model_path() -> Path:
    """A trained model for the inference checks (label agreement needs real, confident
    predictions): ``unet_lib.train`` defaults in float32 on the built-in data, seed 0,
    20 epochs (validation Dice about 0.85). Trained once (a few minutes) and cached beside
    the built-in data (git-ignored)."""
    import keras

    import unet_lib
    from unet_lib import save_model
    from unet_lib.data import default_data_dir

    path = default_data_dir("binary").parent / f"bench_unet_f32_e{REFERENCE_EPOCHS}.keras"
    if not path.is_file():
        with tempfile.TemporaryDirectory(prefix="unet_bench_ref_") as tmp:
            result = unet_lib.train(
                unet_lib.data.ensure_default_dataset(), tmp, verbose=0, seed=0,
                epochs=REFERENCE_EPOCHS, precision="float32",
            )  # fmt: skip
            keras.mixed_precision.set_global_policy("float32")
            save_model(result.model, path)
    return path


def small_model_path(base_filters: int = 8) -> Path:
    """An untrained ``base_filters``-wide U-Net (depth 4, batch norm) for memory checks that
    must be quick: tiled prediction's memory is the output buffers plus one batch of tile
    activations, whatever the weights. Saved once beside the built-in data (git-ignored)."""
    import keras

    from unet_lib import build_unet, save_model
    from unet_lib.data import default_data_dir

    path = default_data_dir("binary").parent / f"bench_unet_f{base_filters}_untrained.keras"
    if not path.is_file():
        keras.mixed_precision.set_global_policy("float32")
        keras.utils.set_random_seed(0)
        model = build_unet((None, None, 1), 1, base_filters=base_filters, batch_norm=True)
        save_model(model, path)
    return path


def test_image(size: int, seed: int = 0) -> np.ndarray:
    """A uint8 ``size x size`` EM-like image: a mosaic of the built-in data's images.

    Mirrored copies of 128 x 128 images, so a trained membrane model sees its own kind of
    texture (and label agreement means something), at any size.
    """
    from unet_lib.data import ensure_default_dataset, load_dataset

    data = load_dataset(ensure_default_dataset())
    tiles = [np.rint(img[..., 0] * 255).astype(np.uint8) for img in data.images]
    rng = np.random.default_rng(seed)
    n = len(tiles)
    t = tiles[0].shape[0]
    reps = -(-size // t)
    rows = []
    for i in range(reps):
        row = []
        for j in range(reps):
            tile = tiles[int(rng.integers(n))]
            tile = tile[::-1] if (i + j) % 2 else tile
            row.append(tile if j % 2 == 0 else tile[:, ::-1])
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:size, :size])


def forward_gflop_per_mpix(model) -> float:
    """Forward GFLOP (matmul) per megapixel of ``model`` (counted at 256 x 256)."""
    return count_flops(model, (1, 256, 256, model.input_shape[-1])).matmul / 1e9 / (256 * 256 / 1e6)


def speed(model, sizes, *, rounds: int, report, peak32: float, with_float32=True) -> dict:
    """Whole-image and tiled ``predict`` vs plain ``model.predict``; fills the report.

    ``with_float32=False`` leaves out ``unet_lib.predict`` in float32 (a figure, no target).
    """
    import unet_lib
    from unet_lib import predict

    gflop_mpix = forward_gflop_per_mpix(model)
    rows = report.table(
        "Inference speed (interleaved medians, same image; float32 baseline = plain model.predict)",
        ["image", "path", "precision", "s", "MP/s", "x plain", "GFLOP/s", "% f32 peak",
         "labels = plain"],
    )  # fmt: skip
    results = {}
    for size in sizes:
        image = test_image(size)
        x = (image.astype(np.float32) / 255)[None, ..., None]
        out: dict = {}

        def plain(x=x, out=out):
            out["plain"] = model.predict(x, batch_size=1, verbose=0)[0, ..., 0] >= 0.5

        def lib_whole(image=image, out=out):
            out["whole"] = predict(model, image, precision="auto").labels

        def lib_tiled(image=image, out=out):
            out["tiled"] = predict(model, image, precision="auto", **TILED).labels

        def lib_f32(image=image, out=out):
            out["f32"] = predict(model, image, precision="float32").labels

        functions = {"plain": plain, "whole": lib_whole, "tiled": lib_tiled, "f32": lib_f32}
        if not with_float32:
            del functions["f32"]
        times = interleaved(functions, rounds)
        precision = unet_lib.inference.resolve_precision("auto")
        base = median(times["plain"])
        mpix = size * size / 1e6
        labels = {
            "plain": ("model.predict (plain Keras)", "float32"),
            "whole": ("unet_lib.predict whole image", precision),
            "tiled": (
                f"unet_lib.predict tiled {TILED['tile_size']}/{TILED['overlap']}",
                precision,
            ),
            "f32": ("unet_lib.predict whole image", "float32"),
        }
        res = {}
        for key, (path, prec) in labels.items():
            if key not in times:
                continue
            t = median(times[key])
            agree = float(np.mean(out[key] == out["plain"]))
            gflops = gflop_mpix * mpix / t
            rows.append(
                [f"{size}²", path, prec, t, mpix / t, base / t, gflops, 100 * gflops / peak32,
                 f"{100 * agree:.3f} %"]
            )  # fmt: skip
            res[key] = {"seconds": t, "speedup": base / t, "agreement": agree}
        res["tiled_vs_whole"] = median(times["tiled"]) / median(times["whole"])
        res["tiled_whole_agreement"] = float(np.mean(out["tiled"] == out["whole"]))
        results[size] = res
    return results


def memory_worker(spec: dict) -> None:
    """Fresh-process memory run: load the model, warm up, reset the peak, predict one size."""
    from unet_lib import load_model, predict

    size, tiled = int(spec["size"]), bool(spec["tiled"])
    model = load_model(spec["model"], compile=False)
    image = test_image(size)  # uint8, made before the baseline: the input does not count
    options = dict(TILED) if tiled else {}
    for warm in (512, 768):  # trace (two sizes: a shape-generic graph), caches, the copy
        predict(model, test_image(warm), precision=spec["precision"], **options)
    reset = reset_peak_rss()
    base = memory_status()
    start = time.perf_counter()
    pred = predict(model, image, precision=spec["precision"], **options)
    seconds = time.perf_counter() - start
    after = memory_status()
    output = pred.probabilities.nbytes
    emit(
        {
            "size": size,
            "tiled": tiled,
            "seconds": seconds,
            "baseline_mib": base["VmRSS"] / MiB,
            "peak_extra_mib": (after["VmHWM"] - base["VmRSS"]) / MiB,
            "output_mib": output / MiB,
            "labels_mib": pred.labels.nbytes / MiB,
            "input_mib": image.nbytes / MiB,
            "peak_reset": reset,
            "foreground": float(pred.labels.mean()),
        }
    )
