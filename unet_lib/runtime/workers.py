"""Several workers (``MultiWorkerMirroredStrategy``): the strategy, agreement and sharding.

Every worker runs the same :func:`unet_lib.train` call with its own ``TF_CONFIG``; only the
chief (:func:`unet_lib.runtime.settings.is_chief`) writes the run folder. What the workers must do
together lives here: create the strategy once, before TensorFlow starts; check that they
all start from the same state; wait for one another; shard the input by data.
"""

from __future__ import annotations

from typing import Any

_MULTI_WORKER: dict[str, Any] = {}  # the process's one MultiWorkerMirroredStrategy


def multi_worker_strategy():
    """The process's ``MultiWorkerMirroredStrategy`` (TensorFlow allows it once, at start)."""
    import tensorflow as tf

    if "strategy" not in _MULTI_WORKER:
        try:
            _MULTI_WORKER["strategy"] = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as err:
            raise RuntimeError(
                f"{err}: with TF_CONFIG set, call unet_lib.train / device_settings before any "
                "other TensorFlow call in the process (MultiWorkerMirroredStrategy must be "
                "created before TensorFlow starts)"
            ) from err
    return _MULTI_WORKER["strategy"]


def same_on_every_worker(settings, value: int) -> bool:
    """Whether every worker holds the same int (a collective: every worker must call it).

    Always ``True`` without a multi-worker strategy. Every replica adds ``(v, v^2, 1)``; the
    values agree exactly when the variance is 0. Also serves as a barrier.
    """
    if settings.strategy_name != "multi_worker_mirrored":
        return True
    import tensorflow as tf

    strategy = settings.strategy
    local = strategy.run(lambda: tf.constant([value, value * value, 1.0], tf.float64))
    total, squares, count = strategy.reduce("SUM", local, axis=None).numpy().tolist()
    return abs(squares / count - (total / count) ** 2) < 1e-9


def barrier(settings) -> None:
    """Waits until every worker gets here (no-op without a multi-worker strategy)."""
    same_on_every_worker(settings, 0)


def shard_by_data(dataset):
    """Multi-worker input: every worker keeps its part of each (global) batch.

    In-memory datasets have no files to shard by, so this says so up front instead of
    letting ``tf.data`` try file sharding first (and warn). ``None`` passes through.
    """
    if dataset is None:
        return None
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
