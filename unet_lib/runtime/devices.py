"""Which devices to train on (``train(devices=...)``, ``--devices`` or ``UNET_DEVICES``):
``"cpu:2"``, ``"gpu:0,1"``, ... -> TensorFlow devices; ``"cpu:N"`` splits the CPU into N
logical devices (a real ``MirroredStrategy`` on one CPU)."""

import os

from .workers import cluster_workers, multi_worker_strategy

DEVICES_ENV = "UNET_DEVICES"


def parse_device_spec(spec) -> dict | None:
    """Reads a device choice: ``None`` / ``""`` / ``"auto"`` -> ``None`` (detect); ``"cpu"``,
    ``"cpu:N"`` (N logical CPUs), ``"gpu"`` (all), an int N (``"cpu:N"`` without GPUs, else N
    GPUs) -> ``{"kind": "cpu"|"gpu"|"any", "count": n}``; ``"gpu:0,1"`` -> ``{"kind": "gpu",
    "indices": [0, 1]}``; a list of device names -> ``{"names": [...]}``."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "auto")):
        return None
    if isinstance(spec, list | tuple):
        if not spec or not all(isinstance(name, str) for name in spec):
            raise ValueError(f"devices must be a non-empty list of device names, got {spec!r}")
        return {"names": list(spec)}
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise ValueError(f"devices must be >= 1, got {spec}")
        return {"kind": "any", "count": spec}
    kind, _, rest = str(spec).strip().lower().partition(":")
    hint = "use e.g. 'cpu', 'cpu:2', 'gpu', 'gpu:0,1' or a list of device names"
    if kind not in ("cpu", "gpu"):
        raise ValueError(f"unknown device choice {spec!r}: {hint}")
    if not rest:
        return {"kind": kind, "count": 1 if kind == "cpu" else None}
    try:
        numbers = [int(part) for part in rest.split(",")]
    except ValueError:
        raise ValueError(f"unknown device choice {spec!r}: {hint}") from None
    if kind == "cpu":
        if len(numbers) != 1 or numbers[0] < 1:
            raise ValueError(f"'cpu:N' needs one count N >= 1, got {spec!r}")
        return {"kind": "cpu", "count": numbers[0]}
    if any(n < 0 for n in numbers) or len(set(numbers)) != len(numbers):
        raise ValueError(f"'gpu:I,J' needs distinct GPU indices >= 0, got {spec!r}")
    return {"kind": "gpu", "indices": numbers}


def select_devices(spec) -> list[dict] | None:
    """Makes the devices of a choice (:func:`parse_device_spec`) exist and lists them for
    ``decide_settings`` (``None``: detect); a device that does not exist raises ValueError.
    ``"cpu:N"`` splits the CPU, which TensorFlow allows only before it starts (else
    RuntimeError): call this before any TensorFlow op, or set ``UNET_DEVICES=cpu:N`` first."""
    parsed = parse_device_spec(spec)
    if parsed is None:
        return None
    import tensorflow as tf

    if "names" in parsed:
        known = {d.name for d in tf.config.list_logical_devices()}
        short = {n.split("device:")[-1].upper(): n for n in known}
        out = []
        for name in parsed["names"]:
            full = name if name in known else short.get(name.split("device:")[-1].upper())
            if full is None:
                raise ValueError(f"no device {name!r} here; these exist: {sorted(known)}")
            out.append({"device_type": full.split(":")[-2], "name": full})
        return out
    kind, count = parsed["kind"], parsed.get("count")
    if kind == "any":
        kind = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if kind == "cpu":
        return _split_cpu(tf, count)
    gpus = [d for d in detect_devices() if d["device_type"] == "GPU"]
    if not gpus:
        raise ValueError(f"devices {spec!r} asks for GPUs but TensorFlow sees none here")
    indices = parsed.get("indices") or list(range(count or len(gpus)))
    missing = [i for i in indices if i >= len(gpus)]
    if missing:
        raise ValueError(f"no GPU {missing} here: TensorFlow sees {len(gpus)} GPU(s)")
    return [gpus[i] for i in indices]


def _split_cpu(tf, count: int) -> list[dict]:
    """N logical CPU devices (GPUs hidden), or a RuntimeError that says how to get them."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    try:
        current = tf.config.get_logical_device_configuration(cpu)
        if count > 1 and (current is None or len(current) != count):
            tf.config.set_logical_device_configuration(cpu, wanted)
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as err:  # TensorFlow already started
        have = len(tf.config.list_logical_devices("CPU"))
        if have < count:
            raise RuntimeError(
                f"{count} logical CPU devices asked for, but TensorFlow already started with "
                f"{have}: set UNET_DEVICES=cpu:{count} (or pass devices=) before any "
                "TensorFlow op runs, e.g. at the top of the script or in a fresh kernel"
            ) from err
    return _cpu_devices(tf)[:count]


def is_described(devices) -> bool:
    """Whether ``devices`` is a list of device descriptions (dicts) already."""
    return isinstance(devices, list) and bool(devices) and isinstance(devices[0], dict)


def check_one_device(spec) -> None:
    """Other backends train on one device: refuse a choice of several."""
    parsed = {"names": spec} if is_described(spec) else parse_device_spec(spec) or {}
    counts = (len(parsed.get("names", [])), len(parsed.get("indices", [])))
    if max(*counts, parsed.get("count") or 1) > 1:
        import keras

        raise ValueError(
            f"devices={spec!r} asks for several devices, which unet_lib distributes only on "
            f"the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()}): use one "
            "device, or KERAS_BACKEND=tensorflow"
        )


def detect_devices() -> list[dict]:
    """The visible accelerators (physical, with details) or else the logical CPU devices."""
    import tensorflow as tf

    out = []
    for kind in ("TPU", "GPU"):
        for device in tf.config.list_logical_devices(kind):
            info = {"device_type": kind, "name": device.name}
            physical = tf.config.list_physical_devices("GPU") if kind == "GPU" else []
            if physical:
                index = min(int(device.name.rsplit(":", 1)[-1]), len(physical) - 1)
                details = tf.config.experimental.get_device_details(physical[index])
                info["compute_capability"] = details.get("compute_capability")
            out.append(info)
        if out:
            return out
    return _cpu_devices(tf)


def _cpu_devices(tf) -> list[dict]:
    return [{"device_type": "CPU", "name": d.name} for d in tf.config.list_logical_devices("CPU")]


def backend_device_kind(backend: str) -> str:
    """``"GPU"``, ``"TPU"`` or ``"CPU"``: the device the torch or JAX backend computes on."""
    if backend == "torch":
        import torch

        return "GPU" if torch.cuda.is_available() else "CPU"
    if backend == "jax":
        import jax

        kinds = {"gpu": "GPU", "cuda": "GPU", "rocm": "GPU", "tpu": "TPU"}
        return kinds.get(jax.devices()[0].platform, "CPU")
    return "CPU"


def device_kind_hint(devices=None) -> str:
    """``"GPU"``, ``"TPU"`` or ``"CPU"``: where training on ``devices`` will run (no strategy)."""
    import keras

    devices = (os.environ.get(DEVICES_ENV) or None) if devices is None else devices
    if isinstance(devices, str):
        return "GPU" if devices.strip().lower().startswith("gpu") else "CPU"
    if is_described(devices):
        return str(devices[0].get("device_type", "CPU")).upper()
    if keras.backend.backend() in ("torch", "jax"):
        return backend_device_kind(keras.backend.backend())
    if cluster_workers(os.environ.get("TF_CONFIG")) > 1:
        multi_worker_strategy()  # before anything starts TensorFlow
    import tensorflow as tf

    return next((k for k in ("TPU", "GPU") if tf.config.list_physical_devices(k)), "CPU")
