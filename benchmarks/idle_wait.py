"""Reproduces the idle wait after ``fit`` (TensorFlow 2.21 tf.data teardown; README).

Trains small runs with ``unet_lib.train`` and prints, after ``fit``'s last step, the wall
time until ``train`` returns and the CPU time spent in it: wall far above CPU is idle
waiting. The library's tf.data pipelines run without autotuning (the fix). ``--numpy`` fits
NumPy arrays with plain ``model.fit`` instead (several epochs; the gaps between epochs are
printed too).

Usage:
    python -m benchmarks.idle_wait                 # unet_lib.train as it is (the fix)
    python -m benchmarks.idle_wait --numpy         # plain model.fit on arrays
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.bench_common import cpu_seconds, median


def _callback():
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begins, self.cpu = [], []

        def on_train_batch_begin(self, batch, logs=None):
            self.begins.append(time.perf_counter())
            self.cpu.append(cpu_seconds())

        def on_train_end(self, logs=None):
            self.end, self.end_cpu = time.perf_counter(), cpu_seconds()

    return Timer()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--numpy", action="store_true", help="plain model.fit on arrays")
    args = parser.parse_args(argv)
    import numpy as np

    import unet_lib

    data = unet_lib.data.ensure_default_dataset()
    for run in range(args.runs):
        timer = _callback()
        start = time.perf_counter()
        if args.numpy:
            loaded = unet_lib.data.load_dataset(data)
            x = np.stack(loaded.images)
            y = np.stack(loaded.masks)[..., None].astype("float32")
            model = unet_lib.build_unet((128, 128, 1), 1, base_filters=16, batch_norm=True)
            model.compile("adam", "binary_crossentropy")
            model.fit(x, y, batch_size=8, epochs=args.epochs, verbose=0, callbacks=[timer])
        else:
            with tempfile.TemporaryDirectory() as tmp:
                unet_lib.train(data, tmp, verbose=0, callbacks=[timer], epochs=args.epochs,
                               base_filters=16, steps_per_epoch=8, seed=run)  # fmt: skip
        end, end_cpu = time.perf_counter(), cpu_seconds()
        steps = np.diff(timer.begins)
        typical = median(list(steps))
        gaps = [
            f"{g - typical:.1f}s (cpu {c:.1f})"
            for g, c in zip(steps, np.diff(timer.cpu), strict=True)
            if g > typical + 1.0
        ][1:]  # the first gap is tracing
        print(
            f"run {run}: {end - start:.1f} s; after the last step until return: "
            f"{end - timer.end:.2f} s wall, {end_cpu - timer.end_cpu:.2f} s CPU; "
            f"extra gaps between steps: {gaps or 'none'}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
