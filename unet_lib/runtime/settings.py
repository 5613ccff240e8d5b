"""Devices -> distribution strategy, precision policy, XLA and global batch size: a pure
decision (:func:`decide_settings`), then the ``tf.distribute`` strategy (:func:`device_settings`).
Other Keras backends (torch, JAX) train on one device."""

import os
from dataclasses import dataclass, field
from typing import Any

from . import devices as hardware
from . import workers

_PRECISIONS = {p: p for p in ("auto", "float32", "mixed_float16", "mixed_bfloat16")}
_PRECISIONS |= {"fp32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
#: GPU precision by lowest compute capability: tensor cores with bfloat16 from 8.0 (Ampere).
_GPU_PRECISION = (
    ((8, 0), "mixed_bfloat16", "compute capability {} >= 8.0: bfloat16"),
    ((7, 0), "mixed_float16", "compute capability {}: float16, no bfloat16"),
    ((0, 0), "float32", "compute capability {} < 7.0: no tensor cores"),
)


@dataclass
class TrainingSettings:
    """What was decided, and why (``reasons``); ``strategy`` is built by :func:`build_strategy`."""

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
        replicas, workers_ = self.num_replicas, self.num_workers
        lines = [
            f"devices:   {self.device_kind} x {len(self.devices) or 1} "
            f"({', '.join(self.devices) or 'default'})",
            f"strategy:  {self.strategy_name} ({replicas} replica{'s' * (replicas != 1)}, "
            f"{workers_} worker{'s' * (workers_ != 1)})",
            f"precision: {self.precision_policy}",
            f"jit:       {self.jit_compile}",
            f"batch:     {self.per_device_batch_size} per replica, {self.global_batch_size} global",
            *(f"  {key}: {why}" for key, why in self.reasons.items()),
        ]
        return "\n".join(lines)


def _get(device, key, default=None):
    return device.get(key, default) if isinstance(device, dict) else getattr(device, key, default)


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
    cc = tuple(int(p) for p in cc.split(".")) if isinstance(cc, str) else cc
    name = _get(device, "name", None) or details.get("device_name")
    return {"kind": kind, "name": name, "compute_capability": tuple(cc) if cc else None}


def read_cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags from ``/proc/cpuinfo`` (empty where it does not exist)."""
    try:
        with open(path) as f:
            line = next((line for line in f if line.startswith("flags")), "flags:")
    except OSError:
        line = "flags:"
    return set(line.split(":", 1)[1].split())


def _strategy_choice(kind: str, local: int, num_workers: int) -> tuple[str, str]:
    """The strategy name and why: a cluster, TPU cores, several local devices, or one."""
    if num_workers > 1:
        return "multi_worker_mirrored", f"TF_CONFIG names a cluster of {num_workers} workers"
    if kind == "tpu":
        return "tpu", f"{local} TPU core(s)"
    if local > 1:
        return "mirrored", f"{local} {kind.upper()} devices on one machine"
    return "default", f"one {kind.upper()} device"


def _precision_choice(precision: str, kind: str, ccs: list, cpu_bf16: bool) -> tuple[str, str]:
    """The precision policy and why (``ccs``: the compute capabilities of the GPUs used)."""
    wanted = _PRECISIONS[precision]
    if wanted != "auto":
        bf16 = "has AVX-512 BF16" if cpu_bf16 else "lacks AVX-512 BF16: bfloat16 is emulated"
        notes = {"mixed_bfloat16": f" (this CPU {bf16})"}
        notes["mixed_float16"] = " (float16 has no fast CPU kernels: expect it to be slow)"
        return wanted, f"asked for {precision!r}" + (notes.get(wanted, "") if kind == "cpu" else "")
    if kind == "tpu":
        return "mixed_bfloat16", "TPUs compute natively in bfloat16"
    if kind == "cpu":
        return "float32", "CPU: float32 by default" + (
            "; AVX-512 BF16 detected (avx512_bf16), mixed_bfloat16 available with "
            "precision='bfloat16' until a measurement decides the default"
            if cpu_bf16
            else "; no AVX-512 BF16 (avx512_bf16 not in the CPU flags)"
        )
    if not ccs:
        return "float32", "GPU compute capability unknown: float32 to be safe"
    cc = min(ccs)
    low, policy, why = next(rule for rule in _GPU_PRECISION if cc >= rule[0])
    return policy, why.format(f"{cc[0]}.{cc[1]}")


def decide_settings(
    devices,
    *,
    per_device_batch_size: int = 8,
    precision: str = "auto",
    jit_compile: bool | str = "auto",
    tf_config=None,
    cpu_flags: set[str] | None = None,
) -> TrainingSettings:
    """The pure decision (a :class:`TrainingSettings` with ``strategy=None``): a ``TF_CONFIG``
    cluster of several workers -> ``MultiWorkerMirroredStrategy``, several GPUs (or logical
    CPUs) -> ``MirroredStrategy``, TPUs -> ``TPUStrategy``, else the default one.
    ``precision`` (``"auto"``, ``"float32"``, ``"float16"``, ``"bfloat16"``, also
    ``"mixed_..."``): ``"auto"`` is ``mixed_bfloat16`` from compute capability 8.0,
    ``mixed_float16`` on 7.x, else ``float32``. ``jit_compile="auto"``: XLA except on CPUs.
    ``devices``: dicts like ``{"device_type": "GPU", "compute_capability": (8, 0)}``,
    ``PhysicalDevice``-like objects or names (``"/device:CPU:0"``); accelerators win.
    ``tf_config``: ``TF_CONFIG`` (JSON string or dict; ``None``: one machine); ``cpu_flags``:
    default read from ``/proc/cpuinfo``.
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if not (jit_compile == "auto" or isinstance(jit_compile, bool)):
        raise ValueError(f"jit_compile must be 'auto', True or False, got {jit_compile!r}")
    if int(per_device_batch_size) < 1:
        raise ValueError(f"per_device_batch_size must be >= 1, got {per_device_batch_size}")
    described = [_describe_device(d) for d in (devices or [{"device_type": "CPU"}])]
    kind = next((k for k in ("tpu", "gpu") if any(d["kind"] == k for d in described)), "cpu")
    used = [d for d in described if d["kind"] == kind]
    num_workers = workers.cluster_workers(tf_config)
    flags = read_cpu_flags() if cpu_flags is None else set(cpu_flags)
    cpu_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    replicas, batch = num_workers * len(used), int(per_device_batch_size)
    name, why_strategy = _strategy_choice(kind, len(used), num_workers)
    ccs = [d["compute_capability"] for d in used if d["compute_capability"]]
    policy, why_precision = _precision_choice(precision, kind, ccs, cpu_bf16)
    if jit_compile != "auto":
        jit, why_jit = bool(jit_compile), f"asked for {bool(jit_compile)}"
    else:
        jit = kind != "cpu"
        why_jit = "XLA on accelerators" if jit else "off on CPU (XLA measured 15-37 % slower here)"
    reasons = {"strategy": why_strategy, "precision": why_precision, "jit_compile": why_jit}
    reasons["batch"] = f"{per_device_batch_size} per replica x {replicas} replica(s)"
    names = [str(d["name"] or f"/device:{kind.upper()}:{i}") for i, d in enumerate(used)]
    kw = {"devices": names, "cpu_bf16": cpu_bf16, "num_workers": num_workers, "reasons": reasons}
    return TrainingSettings(None, name, replicas, kind, policy, batch, batch * replicas, jit, **kw)


_STRATEGIES: dict[tuple, Any] = {}  # MirroredStrategy per device set, made once


def build_strategy(settings: TrainingSettings):
    """The ``tf.distribute`` strategy for decided settings (returns it, also stores it)."""
    import tensorflow as tf

    if settings.strategy_name == "multi_worker_mirrored":
        strategy = workers.multi_worker_strategy()
    elif settings.strategy_name == "mirrored":
        # one per device set and process: a second one's all-reduces fail (shared keys)
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
    """Detects (or takes) the devices, decides the settings (as :func:`decide_settings`,
    ``TF_CONFIG`` from the environment) and builds the strategy. ``devices``: ``None``
    (``UNET_DEVICES``, else detect), a choice for ``select_devices`` (``"cpu:2"``,
    ``"gpu:0,1"``, ...) or device dicts. Under torch or JAX: TensorFlow's default strategy
    (a no-op ``scope()``) and one replica.

    Example:
        >>> device_settings(per_device_batch_size=4).global_batch_size  # one device
        4
    """
    import keras

    devices = (os.environ.get(hardware.DEVICES_ENV) or None) if devices is None else devices
    if keras.backend.backend() != "tensorflow":
        hardware.check_one_device(devices)
        return _other_backend_settings(per_device_batch_size, precision, jit_compile)
    tf_config = os.environ.get("TF_CONFIG")
    if workers.cluster_workers(tf_config) > 1:
        workers.multi_worker_strategy()  # before anything starts TensorFlow
    devices = devices if hardware.is_described(devices) else hardware.select_devices(devices)
    options = {"precision": precision, "jit_compile": jit_compile, "tf_config": tf_config}
    devices = hardware.detect_devices() if devices is None else devices
    settings = decide_settings(devices, per_device_batch_size=per_device_batch_size, **options)
    build_strategy(settings)
    return settings


def _other_backend_settings(per_device_batch_size, precision, jit_compile) -> TrainingSettings:
    """One device, the default strategy: torch / JAX training is not distributed here."""
    import keras
    import tensorflow as tf

    backend = keras.backend.backend()
    device = {"device_type": "GPU" if hardware.backend_device_kind(backend) == "GPU" else "CPU"}
    if device["device_type"] == "GPU" and backend == "torch":
        import torch

        device["compute_capability"] = torch.cuda.get_device_capability()
    jit = jit_compile if jit_compile != "auto" else backend == "jax"
    settings = decide_settings(
        [device], per_device_batch_size=per_device_batch_size, precision=precision, jit_compile=jit
    )
    settings.strategy = tf.distribute.get_strategy()
    settings.reasons["strategy"] = f"{backend} backend: one device, no tf.distribute"
    why_jit = "JAX always compiles" if backend == "jax" else "torch: eager (torch.compile off)"
    if jit_compile == "auto":
        settings.reasons["jit_compile"] = why_jit
    return settings


def apply_settings(settings: TrainingSettings) -> str:
    """Sets the Keras global mixed-precision policy; returns its name."""
    import keras

    keras.mixed_precision.set_global_policy(settings.precision_policy)
    return settings.precision_policy


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> dict:
    """Sets TensorFlow's thread pools (``None`` keeps one) before any op runs, else raises
    RuntimeError; returns ``{"intra_op": n, "inter_op": m}`` (0 = TensorFlow's choice)."""
    import tensorflow as tf

    threads = tf.config.threading
    try:
        if intra_op is not None:
            threads.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            threads.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError as err:
        raise RuntimeError(
            f"{err}: call configure_threads() before TensorFlow runs any op or lists devices"
        ) from err
    intra = threads.get_intra_op_parallelism_threads()
    return {"intra_op": intra, "inter_op": threads.get_inter_op_parallelism_threads()}


def enable_determinism() -> None:
    """Makes TensorFlow ops deterministic (same seed, same CPU -> same weights; slower
    kernels, and some GPU ops have none, then it raises); call after seeding."""
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # the model, or the tf.data input
    if keras.backend.backend() == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
