"""Several workers (``MultiWorkerMirroredStrategy``): every worker runs the same ``train``
call with its own ``TF_CONFIG``; only the chief (:func:`is_chief`) writes the run folder."""

import functools
import json
import os


def cluster_workers(tf_config) -> int:
    """Number of workers (``chief`` + ``worker`` tasks) in a ``TF_CONFIG`` value (1 if none)."""
    if not tf_config:
        return 1
    config = json.loads(tf_config) if isinstance(tf_config, str) else tf_config
    cluster = config.get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


@functools.cache
def multi_worker_strategy():
    """The process's one ``MultiWorkerMirroredStrategy`` (TensorFlow allows it once, at start)."""
    import tensorflow as tf

    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise RuntimeError(
            f"{err}: with TF_CONFIG set, call unet_lib.train / device_settings before any "
            "other TensorFlow call in the process (MultiWorkerMirroredStrategy must be "
            "created before TensorFlow starts)"
        ) from err


def is_chief(settings) -> bool:
    """Whether this process writes the run folder (always, unless it is a non-chief worker)."""
    if settings.strategy_name != "multi_worker_mirrored":
        return True
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0


def same_on_every_worker(settings, value: int) -> bool:
    """Whether every worker holds the same int (a collective, so also a barrier; ``True``
    without a multi-worker strategy): equal exactly when the variance of the values is 0."""
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
    """Multi-worker input: every worker keeps its part of each (global) batch, sharded by
    data up front (in-memory datasets have no files for ``tf.data`` to try first and warn
    about). ``None`` passes through."""
    if dataset is None:
        return None
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
