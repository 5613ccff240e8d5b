"""Devices -> distribution strategy, precision policy, XLA and global batch size.

Two layers: :func:`decide_settings` is a pure function of a device list (plain dicts or
``tf.config.PhysicalDevice``-like objects), ``TF_CONFIG`` and the CPU flags, so every rule is
testable without hardware; :func:`device_settings` detects the real devices, calls it and
builds the ``tf.distribute`` strategy. :func:`apply_settings` sets the Keras precision policy.

Rules:

- strategy: ``TF_CONFIG`` naming more than one worker -> ``MultiWorkerMirroredStrategy``;
  several GPUs (or several logical CPU devices, which one only has when one asked for them
  with ``tf.config.set_logical_device_configuration``) -> ``MirroredStrategy``; a TPU ->
  ``TPUStrategy``; otherwise the default strategy.
- precision (``"auto"``): GPUs with compute capability 8.0+ (Ampere and later) ->
  ``mixed_bfloat16``; 7.x (Volta/Turing tensor cores) -> ``mixed_float16``; older GPUs and
  CPUs -> ``float32``. On a CPU with AVX-512 BF16 (``avx512_bf16`` in ``/proc/cpuinfo``)
  ``precision="bfloat16"`` is allowed but not chosen automatically until measured.
- ``jit_compile`` (``"auto"``): on for GPUs / TPUs, off on CPUs (XLA measured 15-37 % slower
  for this U-Net on a CPU).
- global batch = per-device batch x replicas.

Which devices: ``device_settings(devices=...)`` or the ``UNET_DEVICES`` environment variable
(see :mod:`unet_lib.runtime.devices`): ``"cpu:2"`` splits the CPU into two logical devices (a real
``MirroredStrategy`` on one CPU, for tests), ``"gpu:0,1"`` picks GPUs, ``"cpu"`` ignores the
GPUs. ``MultiWorkerMirroredStrategy`` (:mod:`unet_lib.runtime.workers`) must exist before
TensorFlow starts, so :func:`device_settings` creates it first, once per process, when
``TF_CONFIG`` names a cluster.
Non-TensorFlow Keras backends (``KERAS_BACKEND=torch`` / ``jax``) train on one device with
the default strategy.

Example:
    >>> settings = device_settings(per_device_batch_size=8)
    >>> print(settings.describe())
    >>> apply_settings(settings)
    >>> with settings.strategy.scope():
    ...     model = build_unet(...)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from unet_lib.runtime import workers
from unet_lib.runtime.devices import DEVICES_ENV, check_one_device, select_devices

_PRECISIONS = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "float16": "mixed_float16",
    "mixed_float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
    "mixed_bfloat16": "mixed_bfloat16",
}


@dataclass
class TrainingSettings:
    """What :func:`device_settings` decided, and why (``reasons``, one entry per choice).

    ``strategy`` is ``None`` when the settings come from :func:`decide_settings` alone.
    """

    strategy: Any
    strategy_name: str  # "default" | "mirrored" | "multi_worker_mirrored" | "tpu"
    num_replicas: int
    device_kind: str  # "cpu" | "gpu" | "tpu"
    precision_policy: str  # "float32" | "mixed_float16" | "mixed_bfloat16"
    per_device_batch_size: int
    global_batch_size: int
    jit_compile: bool
    devices: list[str] = field(default_factory=list)
    cpu_bf16: bool = False
    num_workers: int = 1
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """A few lines for printing at the start of training."""
        lines = [
            f"devices:   {self.device_kind} x {len(self.devices) or 1} "
            f"({', '.join(self.devices) or 'default'})",
            f"strategy:  {self.strategy_name} ({self.num_replicas} replica"
            f"{'s' if self.num_replicas != 1 else ''}, {self.num_workers} worker"
            f"{'s' if self.num_workers != 1 else ''})",
            f"precision: {self.precision_policy}",
            f"jit:       {self.jit_compile}",
            f"batch:     {self.per_device_batch_size} per replica, {self.global_batch_size} global",
        ]
        lines += [f"  {key}: {why}" for key, why in self.reasons.items()]
        return "\n".join(lines)


def _get(device, key, default=None):
    if isinstance(device, dict):
        return device.get(key, default)
    return getattr(device, key, default)


def _describe_device(device) -> dict:
    """``{"kind", "name", "compute_capability"}`` of a dict / PhysicalDevice-like object."""
    if isinstance(device, str):
        device = {"name": device, "device_type": device.split(":")[-2].split("/")[-1]}
    kind = str(_get(device, "device_type", "") or _get(device, "kind", "")).lower()
    kind = {"xla_gpu": "gpu", "xla_cpu": "cpu"}.get(kind, kind)
    if kind not in ("cpu", "gpu", "tpu"):
        raise ValueError(f"unknown device type {kind!r} in {device!r}: use CPU, GPU or TPU")
    details = _get(device, "details", None) or {}
    cc = _get(device, "compute_capability", None) or details.get("compute_capability")
    if isinstance(cc, str):
        cc = tuple(int(p) for p in cc.split("."))
    name = _get(device, "name", None) or details.get("device_name")
    return {"kind": kind, "name": name, "compute_capability": tuple(cc) if cc else None}


def _cluster_workers(tf_config) -> int:
    """Number of workers (``chief`` + ``worker`` tasks) in a ``TF_CONFIG`` value."""
    if not tf_config:
        return 1
    config = json.loads(tf_config) if isinstance(tf_config, str) else tf_config
    cluster = config.get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def read_cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def decide_settings(
    devices,
    *,
    per_device_batch_size: int = 8,
    precision: str = "auto",
    jit_compile: bool | str = "auto",
    tf_config=None,
    cpu_flags: set[str] | None = None,
) -> TrainingSettings:
    """The pure decision: which strategy, precision, jit and batch for these devices.

    Args:
        devices: list of device descriptions: dicts like ``{"device_type": "GPU",
            "compute_capability": (8, 0)}``, ``tf.config.PhysicalDevice``-like objects
            (``device_type``, ``name``, optional ``details``) or names like
            ``"/device:CPU:0"``. Accelerators win over CPUs in a mixed list.
        per_device_batch_size: batch per replica.
        precision: ``"auto"``, ``"float32"``, ``"float16"`` / ``"mixed_float16"`` or
            ``"bfloat16"`` / ``"mixed_bfloat16"``.
        jit_compile: ``"auto"`` or a bool.
        tf_config: the ``TF_CONFIG`` JSON (string or dict), ``None`` for a single machine.
        cpu_flags: CPU flags (default: read from ``/proc/cpuinfo``).

    Returns:
        :class:`TrainingSettings` with ``strategy=None``.

    Example:
        >>> s = decide_settings([{"device_type": "GPU", "compute_capability": (7, 0)}])
        >>> s.precision_policy, s.jit_compile
        ('mixed_float16', True)
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if not (jit_compile == "auto" or isinstance(jit_compile, bool)):
        raise ValueError(f"jit_compile must be 'auto', True or False, got {jit_compile!r}")
    if int(per_device_batch_size) < 1:
        raise ValueError(f"per_device_batch_size must be >= 1, got {per_device_batch_size}")
    described = [_describe_device(d) for d in (devices or [{"device_type": "CPU"}])]
    reasons: dict[str, str] = {}
    kind = next((k for k in ("tpu", "gpu") if any(d["kind"] == k for d in described)), "cpu")
    used = [d for d in described if d["kind"] == kind]
    for i, d in enumerate(used):
        d["name"] = str(d["name"] or f"/device:{kind.upper()}:{i}")
    local = len(used)
    workers = _cluster_workers(tf_config)
    flags = read_cpu_flags() if cpu_flags is None else set(cpu_flags)
    cpu_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags

    if workers > 1:
        name = "multi_worker_mirrored"
        reasons["strategy"] = f"TF_CONFIG names a cluster of {workers} workers"
    elif kind == "tpu":
        name = "tpu"
        reasons["strategy"] = f"{local} TPU core(s)"
    elif local > 1:
        name = "mirrored"
        reasons["strategy"] = f"{local} {kind.upper()} devices on one machine"
    else:
        name = "default"
        reasons["strategy"] = f"one {kind.upper()} device"
    replicas = workers * local

    wanted = _PRECISIONS[precision]
    ccs = [d["compute_capability"] for d in used if d["compute_capability"]]
    if wanted != "auto":
        policy = wanted
        reasons["precision"] = f"asked for {precision!r}"
        if kind == "cpu" and policy == "mixed_float16":
            reasons["precision"] += " (float16 has no fast CPU kernels: expect it to be slow)"
        if kind == "cpu" and policy == "mixed_bfloat16":
            reasons["precision"] += (
                " (this CPU has AVX-512 BF16)"
                if cpu_bf16
                else " (this CPU lacks AVX-512 BF16: bfloat16 is emulated)"
            )
    elif kind == "tpu":
        policy, reasons["precision"] = "mixed_bfloat16", "TPUs compute natively in bfloat16"
    elif kind == "gpu":
        cc = min(ccs) if ccs else None
        if cc is None:
            policy = "float32"
            reasons["precision"] = "GPU compute capability unknown: float32 to be safe"
        elif cc >= (8, 0):
            policy = "mixed_bfloat16"
            reasons["precision"] = f"compute capability {cc[0]}.{cc[1]} >= 8.0: bfloat16"
        elif cc >= (7, 0):
            policy = "mixed_float16"
            reasons["precision"] = f"compute capability {cc[0]}.{cc[1]}: float16, no bfloat16"
        else:
            policy = "float32"
            reasons["precision"] = f"compute capability {cc[0]}.{cc[1]} < 7.0: no tensor cores"
    else:
        policy = "float32"
        reasons["precision"] = "CPU: float32 by default" + (
            "; AVX-512 BF16 detected (avx512_bf16), mixed_bfloat16 available with "
            "precision='bfloat16' until a measurement decides the default"
            if cpu_bf16
            else "; no AVX-512 BF16 (avx512_bf16 not in the CPU flags)"
        )

    if jit_compile == "auto":
        jit = kind != "cpu"
        reasons["jit_compile"] = (
            "XLA on accelerators" if jit else "off on CPU (XLA measured 15-37 % slower here)"
        )
    else:
        jit = bool(jit_compile)
        reasons["jit_compile"] = f"asked for {jit}"
    global_batch = int(per_device_batch_size) * replicas
    reasons["batch"] = f"{per_device_batch_size} per replica x {replicas} replica(s)"
    return TrainingSettings(
        strategy=None,
        strategy_name=name,
        num_replicas=replicas,
        device_kind=kind,
        precision_policy=policy,
        per_device_batch_size=int(per_device_batch_size),
        global_batch_size=global_batch,
        jit_compile=jit,
        devices=[d["name"] for d in used],
        cpu_bf16=cpu_bf16,
        num_workers=workers,
        reasons=reasons,
    )


def detect_devices() -> list[dict]:
    """The visible accelerators (physical, with details) or else the logical CPU devices."""
    import tensorflow as tf

    out = []
    for kind in ("TPU", "GPU"):
        for device in tf.config.list_logical_devices(kind):
            info = {"device_type": kind, "name": device.name}
            if kind == "GPU":
                physical = tf.config.list_physical_devices("GPU")
                index = int(device.name.rsplit(":", 1)[-1])
                if physical:
                    details = tf.config.experimental.get_device_details(
                        physical[min(index, len(physical) - 1)]
                    )
                    info["compute_capability"] = details.get("compute_capability")
            out.append(info)
        if out:
            return out
    return [{"device_type": "CPU", "name": d.name} for d in tf.config.list_logical_devices("CPU")]


def device_kind_hint(devices=None) -> str:
    """``"GPU"``, ``"TPU"`` or ``"CPU"``: the kind of device training will run on, found
    without building a strategy (for :mod:`unet_lib.training.plan`).

    Args:
        devices: as for :func:`device_settings` (``None``: ``UNET_DEVICES``, else detect).
    """
    import keras

    if devices is None:
        devices = os.environ.get(DEVICES_ENV) or None
    if isinstance(devices, str):
        return "GPU" if devices.strip().lower().startswith("gpu") else "CPU"
    if isinstance(devices, list) and devices and isinstance(devices[0], dict):
        return str(devices[0].get("device_type", "CPU")).upper()
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return "GPU" if torch.cuda.is_available() else "CPU"
    if backend == "jax":
        import jax

        platform = jax.devices()[0].platform
        return {"gpu": "GPU", "cuda": "GPU", "rocm": "GPU", "tpu": "TPU"}.get(platform, "CPU")
    if _cluster_workers(os.environ.get("TF_CONFIG")) > 1:
        workers.multi_worker_strategy()  # before anything starts TensorFlow
    import tensorflow as tf

    for kind in ("TPU", "GPU"):
        if tf.config.list_physical_devices(kind):
            return kind
    return "CPU"


_STRATEGIES: dict[tuple, Any] = {}  # MirroredStrategy per device set, made once


def build_strategy(settings: TrainingSettings):
    """The ``tf.distribute`` strategy for decided settings (returns it, also stores it)."""
    import tensorflow as tf

    if settings.strategy_name == "multi_worker_mirrored":
        strategy = workers.multi_worker_strategy()
    elif settings.strategy_name == "mirrored":
        # One per device set and process: a second MirroredStrategy over the same devices
        # reuses the collective keys of the first and its all-reduces then fail ("Shape
        # mismatch in the collective instance").
        key = ("mirrored", tuple(settings.devices))
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(devices=settings.devices)
        strategy = _STRATEGIES[key]
    elif settings.strategy_name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        strategy = tf.distribute.get_strategy()
    settings.strategy = strategy
    settings.num_replicas = strategy.num_replicas_in_sync  # all workers included
    settings.global_batch_size = settings.per_device_batch_size * settings.num_replicas
    return strategy


def device_settings(
    devices=None,
    *,
    per_device_batch_size: int = 8,
    precision: str = "auto",
    jit_compile: bool | str = "auto",
) -> TrainingSettings:
    """Detects (or takes) the devices, decides the settings and builds the strategy.

    Args:
        devices: ``None`` to use ``UNET_DEVICES`` from the environment, or else detect; a
            choice for :func:`unet_lib.runtime.devices.select_devices` (``"cpu:2"``, ``"gpu:0,1"``,
            ...); or a list of device dicts as for :func:`decide_settings` whose names are
            real devices.
        per_device_batch_size, precision, jit_compile: as for :func:`decide_settings`.

    Returns:
        :class:`TrainingSettings` with a ready ``strategy``. ``TF_CONFIG`` is read from the
        environment. Under the torch or JAX Keras backend the strategy is TensorFlow's
        default one (it only serves as a no-op ``scope()``) and there is one replica.

    Example:
        >>> settings = device_settings(per_device_batch_size=4)
        >>> settings.strategy_name, settings.global_batch_size
        ('default', 4)
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        check_one_device(devices if devices is not None else os.environ.get(DEVICES_ENV))
        return _other_backend_settings(per_device_batch_size, precision, jit_compile)
    tf_config = os.environ.get("TF_CONFIG")
    if _cluster_workers(tf_config) > 1:
        workers.multi_worker_strategy()  # before anything starts TensorFlow
    if devices is None:
        devices = os.environ.get(DEVICES_ENV) or None
    described = isinstance(devices, list) and bool(devices) and isinstance(devices[0], dict)
    if not described:
        devices = select_devices(devices)
    settings = decide_settings(
        detect_devices() if devices is None else devices,
        per_device_batch_size=per_device_batch_size,
        precision=precision,
        jit_compile=jit_compile,
        tf_config=tf_config,
    )
    build_strategy(settings)
    return settings


def _other_backend_settings(per_device_batch_size, precision, jit_compile) -> TrainingSettings:
    """One device, the default strategy: torch / JAX training is not distributed here."""
    import keras
    import tensorflow as tf

    backend = keras.backend.backend()
    kind = "cpu"
    if backend == "jax":
        import jax

        kind = "gpu" if any(d.platform == "gpu" for d in jax.devices()) else "cpu"
    elif backend == "torch":
        import torch

        kind = "gpu" if torch.cuda.is_available() else "cpu"
    device = {"device_type": kind.upper()}
    if kind == "gpu" and backend == "torch":
        import torch

        device["compute_capability"] = torch.cuda.get_device_capability()
    settings = decide_settings(
        [device],
        per_device_batch_size=per_device_batch_size,
        precision=precision,
        jit_compile=jit_compile if jit_compile != "auto" else backend == "jax",
    )
    settings.strategy = tf.distribute.get_strategy()
    settings.reasons["strategy"] = f"{backend} backend: one device, no tf.distribute"
    if jit_compile == "auto":
        settings.reasons["jit_compile"] = (
            "JAX always compiles" if backend == "jax" else "torch: eager (torch.compile off)"
        )
    return settings


def apply_settings(settings: TrainingSettings) -> str:
    """Sets the Keras global mixed-precision policy; returns its name."""
    import keras

    keras.mixed_precision.set_global_policy(settings.precision_policy)
    return settings.precision_policy


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> dict:
    """Sets TensorFlow's thread pools (``None`` keeps a value); call before any TF op runs.

    Returns:
        ``{"intra_op": n, "inter_op": m}`` now in effect (0 = TensorFlow's choice).

    Raises:
        RuntimeError: when TensorFlow has already started (set them at program start).
    """
    import tensorflow as tf

    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError as err:
        raise RuntimeError(
            f"{err}: call configure_threads() before TensorFlow runs any op or lists devices"
        ) from err
    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def enable_determinism() -> None:
    """Makes TensorFlow ops deterministic (same seed, same CPU -> same weights).

    Call after seeding (``keras.utils.set_random_seed``). Deterministic kernels can be
    slower, and some GPU ops have none (TensorFlow then raises); see the README.
    """
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # the model, or the tf.data input
    if keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)


def is_chief(settings: TrainingSettings) -> bool:
    """Whether this process writes the run folder (always, unless it is a non-chief worker)."""
    if settings.strategy_name != "multi_worker_mirrored":
        return True
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0
