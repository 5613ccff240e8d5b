"""Is the input pipeline fast enough to keep the training step busy?

Measures, on this machine and in one run:

- the tf.data pipeline alone (images/s), on the default synthetic data (128 x 128 grey,
  patch 128, batch 8): cached and uncached, without and with the default augmentation
  (and with elastic deformation, for reference);
- the training step of the default model fed from memory: ``build_unet((128, 128, 1),
  num_classes=1, base_filters=32, depth=4, batch_norm=True)``, binary cross-entropy,
  steady-state median of ``train_on_batch``;

and prints the ratio. Target: every pipeline configuration >= 10x the training step's
images/s (so data loading never limits training). Prints PASS / FAIL; exits 1 on FAIL.

Usage:
    python -m benchmarks.pipeline            # about a minute on 2 CPU cores
    python -m benchmarks.pipeline --quick    # fewer batches and steps
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

TARGET = 10.0


def _pipeline_rate(images, masks, *, cache, augment, batch_size, patch, batches) -> float:
    from unet_lib.data import make_dataset

    ds = make_dataset(
        images,
        masks,
        batch_size=batch_size,
        patch_size=patch,
        augment=augment,
        cache=cache,
        repeat=True,
        seed=0,
    )
    it = iter(ds)
    for _ in range(max(5, batches // 10)):  # warm-up: tracing, thread pools, the cache
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def _train_rate(images, masks, *, batch_size, steps) -> float:
    import keras
    import numpy as np

    import unet_lib

    model = unet_lib.build_unet(
        (128, 128, 1), num_classes=1, base_filters=32, depth=4, batch_norm=True
    )
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy())
    x = np.stack(images[:batch_size])
    y = np.stack(masks[:batch_size])[..., None].astype("float32")
    for _ in range(3):  # compile and warm up
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--target", type=float, default=TARGET, help="required ratio")
    args = parser.parse_args(argv)
    batches, steps = (40, 5) if args.quick else (200, 15)

    from unet_lib.data import AugmentConfig, ensure_default_dataset, load_dataset

    start = time.perf_counter()
    data = load_dataset(ensure_default_dataset("binary"))
    decode = len(data.images) / (time.perf_counter() - start)
    images, masks = data.images, data.masks
    shape = images[0].shape
    print(
        f"data: default synthetic 'binary', {len(images)} images {shape}, "
        f"batch {args.batch_size}, patch {shape[0]}; {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"  decode once (load_dataset):                 {decode:9.0f} images/s")

    configs = [
        ("cached,   no augmentation", True, None),
        ("uncached, no augmentation", False, None),
        ("cached,   default augmentation", True, AugmentConfig()),
        ("uncached, default augmentation", False, AugmentConfig()),
        ("cached,   default + elastic", True, AugmentConfig(elastic=True)),
    ]
    rates = {}
    for name, cache, augment in configs:
        rates[name] = _pipeline_rate(
            images,
            masks,
            cache=cache,
            augment=augment,
            batch_size=args.batch_size,
            patch=shape[0],
            batches=batches,
        )
        print(f"  pipeline {name:<33s} {rates[name]:9.0f} images/s")

    train = _train_rate(images, masks, batch_size=args.batch_size, steps=steps)
    print(
        f"  training step (train_on_batch, median of {steps}):  {train:6.1f} images/s "
        f"({args.batch_size / train * 1000:.0f} ms/step)"
    )

    worst_name = min(rates, key=rates.get)
    ratio = rates[worst_name] / train
    print(
        f"ratio: slowest pipeline ({' '.join(worst_name.split())}) / training = {ratio:.1f}x "
        f"(target >= {args.target:g}x)"
    )
    ok = ratio >= args.target
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
