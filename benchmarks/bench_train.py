"""Training benchmarks: ``unet_lib.train`` against in-memory ``model.fit`` and against the
plain-Keras way, fixed-length Dice runs per precision, scaling with batch and image size,
threading and XLA.

The three ways of training the same model (same layers, loss, metrics, batch):

1. ``unet_lib.train`` with its device-aware defaults (decode once, cache, augmentation,
   precision and XLA chosen per device);
2. in-memory: one batch of real images held as tensors, ``tf.data.Dataset.from_tensors``
   repeated, plain ``model.fit`` with the same precision: the upper bound, so the gap to it
   is what the input pipeline costs;
3. plain Keras: the images decoded from their PNG files every epoch inside ``tf.data``
   (``read_file`` + ``decode_png``, parallel map, prefetch, no cache), float32, Keras's
   default ``compile`` (``jit_compile="auto"`` = off on a CPU, one step per execution).

Each figure is the median of the steady-state steps (the first 3 steps of a run, which
trace and warm up, are left out), timed by a Keras callback around each step.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_common import (
    ROOT,
    cpu_seconds,
    emit,
    make_step_timer,
    median,
    steady,
    with_autotune,
)

ISBI_LABELS = {"background": 255, "membrane": 0}
WARM_IN = 3  # steps left out of a run's median: tracing, first allocations (steady())


# ----------------------------------------------------------------------------- data
def builtin_data() -> Path:
    from unet_lib.data import ensure_default_dataset

    return ensure_default_dataset("binary")


def synthetic_data(size: int, num_images: int = 24) -> Path:
    """A built-in-style dataset of ``size`` x ``size`` images (generated once, git-ignored)."""
    from unet_lib.data import default_data_dir, make_synthetic_dataset

    path = default_data_dir("binary").parent / f"bench_binary_{size}_{num_images}"
    if not (path / "dataset.json").is_file():
        make_synthetic_dataset(path, num_images=num_images, size=size, seed=0, overwrite=True)
    return path


def isbi_data() -> Path | None:
    """ISBI 2012 from ``UNET_SHARED_DATA`` or ``../shared/data``; ``None`` when absent."""
    roots = [os.environ.get("UNET_SHARED_DATA"), str(ROOT.parent / "shared" / "data")]
    for root in roots:
        if root and (Path(root) / "isbi2012_membrane" / "images").is_dir():
            return Path(root) / "isbi2012_membrane"
    return None


def batch_of(data: Path, batch_size: int, labels=None):
    """The first ``batch_size`` images and label maps of a dataset folder, as arrays."""
    from unet_lib.data import load_dataset

    d = load_dataset(data, labels=labels)
    x = np.stack(d.images[:batch_size]).astype(np.float32)
    y = np.stack(d.masks[:batch_size])[..., None].astype(np.int32)
    return x, y


def reset_policy() -> None:
    import keras

    keras.mixed_precision.set_global_policy("float32")


# ----------------------------------------------------------------------------- the 3 ways
def lib_run(data, *, precision="auto", extra_callbacks=(), **options) -> dict:
    """``unet_lib.train`` into a temporary folder; step times, Dice, the idle time after fit."""
    import unet_lib

    timer = make_step_timer()
    with tempfile.TemporaryDirectory(prefix="unet_bench_") as tmp:
        start = time.perf_counter()
        result = unet_lib.train(
            data,
            tmp,
            verbose=0,
            callbacks=[timer, *extra_callbacks],
            precision=precision,
            **options,
        )
        end, end_cpu = time.perf_counter(), cpu_seconds()
    reset_policy()
    # After fit: train() writes state.json and loads best.keras (CPU work). Wall time
    # without CPU time is waiting (the tf.data iterator teardown, see README).
    after_wall = end - timer.train_end
    after_cpu = end_cpu - timer.train_end_cpu
    history = result.history
    return {
        "steps": timer.times,
        "step": median(steady(timer.times)),
        "precision": result.config.devices.get("precision"),
        "batch_size": result.config.batch_size,
        "jit_compile": result.config.devices.get("jit_compile"),
        "val_dice": float(history["val_dice"][-1]) if history.get("val_dice") else float("nan"),
        "val_dice_history": [float(d) for d in history.get("val_dice", [])],
        "wall": end - start,
        "after_fit_wall": after_wall,
        "after_fit_idle": max(0.0, after_wall - after_cpu),
        "model": result.model,
    }


def _compile_like_train(model, config, *, jit_compile="auto"):
    import keras

    from unet_lib import training

    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=training.make_loss(config),
        metrics=training.make_metrics(config),
        jit_compile=jit_compile,
    )


def _config(base_filters, channels=1, num_classes=1):
    from unet_lib import training

    return training.TrainConfig(
        base_filters=base_filters, channels=channels, num_classes=num_classes
    )


def _no_autotune(ds):
    """The suite's own datasets skip tf.data autotuning, as the library's do."""
    return with_autotune(ds, False)


def inmemory_fit(x, y, *, base_filters, policy, steps, jit_compile="auto") -> dict:
    """Plain ``model.fit`` on one in-memory batch repeated: the upper bound."""
    import keras
    import tensorflow as tf

    from unet_lib import training

    keras.mixed_precision.set_global_policy(policy)
    config = _config(base_filters, x.shape[-1])
    model = training.build_model(config)
    _compile_like_train(model, config, jit_compile=jit_compile)
    ds = _no_autotune(tf.data.Dataset.from_tensors((tf.constant(x), tf.constant(y))).repeat())
    timer = make_step_timer()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer])
    reset_policy()
    return {"steps": timer.times, "step": median(steady(timer.times))}


def plain_keras_fit(data: Path, *, base_filters, batch_size, steps) -> dict:
    """The plain-Keras way with ``model.fit``: PNGs decoded every epoch, float32, defaults."""
    import keras

    from unet_lib import training

    reset_policy()
    config = _config(base_filters)
    model = training.build_model(config)
    model.compile(  # Keras defaults: jit_compile="auto", steps_per_execution=1
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=training.make_loss(config),
        metrics=training.make_metrics(config),
    )
    timer = make_step_timer()
    model.fit(plain_dataset(data, batch_size), steps_per_epoch=steps, epochs=1, verbose=0,
              callbacks=[timer])  # fmt: skip
    return {"steps": timer.times, "step": median(steady(timer.times))}


def plain_dataset(data: Path, batch_size: int, foreground: int = 0):
    """The plain-Keras input: PNGs read and decoded every epoch, no cache, float32."""
    import tensorflow as tf

    images = sorted(str(p) for p in (Path(data) / "images").glob("*.png"))
    masks = [str(Path(data) / "masks" / Path(p).name) for p in images]

    def load(image_path, mask_path):
        image = tf.io.decode_png(tf.io.read_file(image_path), channels=1)
        mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
        image = tf.cast(image, tf.float32) / 255.0
        label = tf.cast(tf.equal(mask, foreground), tf.int32)  # membrane (grey 0) = class 1
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((images, masks)).shuffle(len(images), seed=0)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return _no_autotune(ds.batch(batch_size, drop_remainder=True).repeat().prefetch(2))


def policy_of(precision: str) -> str:
    """The Keras policy ``unet_lib.train(precision=...)`` will use on this machine."""
    from unet_lib import runtime

    devices = runtime.detect_devices()
    return runtime.decide_settings(devices, precision=precision).precision_policy


def interleaved_ways(
    data: Path, *, base_filters, batch_size, steps, precision, warmup: int = 2
) -> dict:
    """The three ways (and the in-memory model in float32 and bfloat16) timed in turn.

    ``unet_lib.train`` runs one epoch of ``steps + 3`` steps; after each of its last
    ``steps`` steps a callback times one step of each baseline model (``train_on_batch`` on
    the in-memory batch, and on the next batch of the plain-Keras ``tf.data`` pipeline; both
    warmed up by ``warmup`` steps first), in an order that rotates from step to step.
    Interleaving makes the ratios robust to load that changes during the run (a shared
    machine); ``out["speedup"][name]`` is the median of the step-by-step ratios baseline /
    library, the paired figure the suite's targets use.
    """
    import keras

    from unet_lib import training

    policy = policy_of(precision)
    x, y = batch_of(data, batch_size)
    models = {}
    from unet_lib.runtime import read_cpu_flags

    bf16 = bool(read_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    ways = [("mem", policy), ("mem_f32", "float32"), ("plain", "float32")]
    if bf16:
        ways.append(("mem_bf16", "mixed_bfloat16"))
    for name, model_policy in ways:
        keras.mixed_precision.set_global_policy(model_policy)
        config = _config(base_filters)
        model = training.build_model(config)
        if name == "plain":  # Keras's default compile settings
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                          loss=training.make_loss(config),
                          metrics=training.make_metrics(config))  # fmt: skip
        else:
            _compile_like_train(model, config)
        models[name] = model
    reset_policy()
    for name, same in (("mem_f32", "float32"), ("mem_bf16", "mixed_bfloat16")):
        if policy == same and name in models:
            del models[name]  # the same model as "mem"
    plain_batches = iter(plain_dataset(data, batch_size))

    def step(name):
        if name == "plain":
            xb, yb = next(plain_batches)
            models[name].train_on_batch(xb, yb)
        else:
            models[name].train_on_batch(x, y)

    for name in models:  # trace and warm up before the timed run
        for _ in range(warmup):
            step(name)
    times = {name: [] for name in models}

    names = list(models)

    class Interleave(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch < WARM_IN:  # the baselines are warm already; only the library traces
                return
            # The order rotates every step, so that no baseline always runs right after the
            # library's step (when its input pipeline prepares the next batch) or first.
            k = batch % len(names)
            for name in names[k:] + names[:k]:
                start = time.perf_counter()
                step(name)
                times[name].append(time.perf_counter() - start)

    # eval_tta / eval_threshold given: the TTA and threshold search on the validation
    # images after training is evaluation, not training throughput
    lib = lib_run(data, precision=precision, seed=0, epochs=1, steps_per_epoch=steps + WARM_IN,
                  base_filters=base_filters, batch_size=batch_size, eval_tta=False,
                  eval_threshold=0.5, extra_callbacks=[Interleave()])  # fmt: skip
    out = {"lib": lib["step"], "precision": lib["precision"], "idle": lib["after_fit_idle"]}
    lib_times = lib["steps"][WARM_IN:]
    out["speedup"] = {}  # median over steps of baseline / library time: a paired ratio
    for name, ts in times.items():
        out[name] = median(ts)
        out["speedup"][name] = median([b / a for a, b in zip(lib_times, ts, strict=True)])
    out.setdefault("mem_f32", out["mem"])
    if bf16:
        out.setdefault("mem_bf16", out["mem"])
    return out


# ----------------------------------------------------------------------------- precision
def dice_run(dataset: str, precision: str, *, seed: int, epochs: int, steps_per_epoch=None,
             batch_size=None) -> dict:  # fmt: skip
    """One fixed-length ``unet_lib.train`` run for a precision comparison.

    ``dataset`` is ``"built-in"`` (the defaults on the built-in data) or ``"isbi"`` (ISBI
    2012 from the shared data, membrane = 1, contiguous validation block, 128² patches).
    The same seed gives both precisions the same initial weights and batches, so the Dice
    difference of a pair is the precision's doing, not the seed's.
    """
    options = {"seed": seed, "epochs": epochs, "steps_per_epoch": steps_per_epoch}
    if batch_size is not None:
        options["batch_size"] = batch_size
    if dataset == "isbi":
        data = isbi_data()
        if data is None:
            raise FileNotFoundError("ISBI 2012 not found (set UNET_SHARED_DATA)")
        options.update(labels=ISBI_LABELS, split="contiguous", patch_size=128)
    elif dataset == "built-in":
        data = builtin_data()
    else:
        raise ValueError(f"dataset must be 'built-in' or 'isbi', got {dataset!r}")
    result = lib_run(data, precision=precision, **options)
    result.update(dataset=dataset, seed=seed)
    return result


def same_seed_pairs(dataset: str, seeds, *, other: str, epochs: int, steps_per_epoch=None,
                    batch_size=None) -> list[tuple[dict, dict]]:  # fmt: skip
    """``(float32 run, other run)`` per seed (:func:`dice_run`), run in ABBA order; the
    trained models are dropped (only the figures are kept)."""
    runs: dict = {}
    for seed, key in abba_jobs(seeds):
        start = time.perf_counter()
        r = dice_run(dataset, other if key == "other" else "float32", seed=seed, epochs=epochs,
                     steps_per_epoch=steps_per_epoch, batch_size=batch_size)  # fmt: skip
        r.pop("model", None)
        runs[(seed, key)] = r
        print(f"  {dataset} seed {seed} {r['precision']}: val Dice {r['val_dice']:.4f}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
    return [(runs[(s, "float32")], runs[(s, "other")]) for s in seeds]


def abba_jobs(seeds, keys=("other", "float32")) -> list[tuple[int, str]]:
    """(seed, key) in ABBA order: the first of a pair alternates, so slow drift of the
    machine's speed or a warm cache favours neither precision."""
    jobs = []
    for i, seed in enumerate(seeds):
        jobs += [(seed, key) for key in (keys if i % 2 == 0 else keys[::-1])]
    return jobs


# ----------------------------------------------------------------------------- scaling
def scaling(*, policy, base_filters, batches, sizes, size_batch, steps=4) -> list[dict]:
    """Images/s of ``train_on_batch`` against batch size (at 128²) and image size."""
    import keras

    from unet_lib import training

    keras.mixed_precision.set_global_policy(policy)
    config = _config(base_filters)
    model = training.build_model(config)
    _compile_like_train(model, config)
    rng = np.random.default_rng(0)
    out = []
    points = [(b, 128) for b in batches] + [(size_batch, s) for s in sizes if s != 128]
    for b, s in points:
        x = rng.random((b, s, s, 1), dtype=np.float32)
        y = (rng.random((b, s, s, 1)) > 0.7).astype(np.int32)
        model.train_on_batch(x, y)  # (re)trace for this shape
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        out.append({"batch": b, "size": s, "step": median(times)})
    reset_policy()
    return out


# ----------------------------------------------------------------------------- workers
def thread_worker(spec: dict) -> None:
    """Fresh-process step time of the default model under one threading setting."""
    import tensorflow as tf

    if spec.get("intra"):
        tf.config.threading.set_intra_op_parallelism_threads(int(spec["intra"]))
    if spec.get("inter"):
        tf.config.threading.set_inter_op_parallelism_threads(int(spec["inter"]))
    import keras

    from unet_lib import training

    keras.mixed_precision.set_global_policy(spec["policy"])
    config = _config(spec["base_filters"])
    model = training.build_model(config)
    _compile_like_train(model, config)
    x, y = batch_of(builtin_data(), spec["batch_size"])
    for _ in range(spec.get("warmup", 2)):
        model.train_on_batch(x, y)
    times = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    emit(
        {
            "step": median(times),
            "intra": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter": tf.config.threading.get_inter_op_parallelism_threads(),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "openmp_runtimes": openmp_runtimes(),
        }
    )


def openmp_runtimes() -> list[str]:
    """The OpenMP runtimes loaded in this process (read from ``/proc/self/maps``): none means
    ``OMP_NUM_THREADS`` cannot change its speed (TensorFlow's oneDNN uses TF's own pool)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    names = ("libgomp", "libiomp", "libomp")
    return sorted({Path(p).name for p in paths if Path(p).name.startswith(names)})
