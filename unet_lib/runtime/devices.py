"""Which devices to train on: ``"cpu:2"``, ``"gpu:0,1"``, ... -> TensorFlow devices.

A choice comes from ``unet_lib.train(devices=...)``, ``--devices`` or the ``UNET_DEVICES``
environment variable; :func:`unet_lib.runtime.settings.device_settings` turns the devices into a
strategy. ``"cpu:N"`` splits the CPU into N logical devices, which gives a real
``MirroredStrategy`` on one CPU (how the distributed tests run here).

Example:
    >>> parse_device_spec("gpu:0,1")
    {'kind': 'gpu', 'indices': [0, 1]}
"""

from __future__ import annotations

DEVICES_ENV = "UNET_DEVICES"


def parse_device_spec(spec) -> dict | None:
    """Reads a device choice: ``None`` / ``""`` / ``"auto"`` (detect), ``"cpu"``,
    ``"cpu:N"`` (N logical CPU devices), ``"gpu"`` (all GPUs), ``"gpu:0,1"`` (those GPUs), an
    int N (``"cpu:N"`` without GPUs, else the first N GPUs), or a list of device names.

    Returns:
        ``None`` for auto-detection, else ``{"kind": "cpu"|"gpu", "count": n}``,
        ``{"kind": "gpu", "indices": [...]}`` or ``{"names": [...]}``.

    Example:
        >>> parse_device_spec("cpu:2")
        {'kind': 'cpu', 'count': 2}
    """
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
    text = str(spec).strip().lower()
    kind, _, rest = text.partition(":")
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
    """Makes the devices of a choice (see :func:`parse_device_spec`) exist and lists them.

    ``"cpu:N"`` splits the first physical CPU into N logical devices, which TensorFlow allows
    only before it starts: call this (or :func:`device_settings` / :func:`unet_lib.train`)
    before any TensorFlow op, or set ``UNET_DEVICES=cpu:N`` before starting Python.

    Returns:
        Device descriptions for :func:`decide_settings`, or ``None`` to detect.

    Raises:
        RuntimeError: TensorFlow already started with another device layout.
        ValueError: A device that does not exist.
    """
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
        _split_cpu(tf, count)
        return [
            {"device_type": "CPU", "name": d.name}
            for d in tf.config.list_logical_devices("CPU")[:count]
        ]
    from unet_lib.runtime.settings import detect_devices

    gpus = [d for d in detect_devices() if d["device_type"] == "GPU"]
    if not gpus:
        raise ValueError(f"devices {spec!r} asks for GPUs but TensorFlow sees none here")
    indices = parsed.get("indices") or list(range(count or len(gpus)))
    missing = [i for i in indices if i >= len(gpus)]
    if missing:
        raise ValueError(f"no GPU {missing} here: TensorFlow sees {len(gpus)} GPU(s)")
    return [gpus[i] for i in indices]


def _split_cpu(tf, count: int) -> None:
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


def check_one_device(spec) -> None:
    """Other backends train on one device: refuse a choice of several."""
    if isinstance(spec, list) and spec and isinstance(spec[0], dict):
        many = len(spec) > 1
    else:
        parsed = parse_device_spec(spec) or {}
        many = (
            len(parsed.get("names", [])) > 1
            or len(parsed.get("indices", [])) > 1
            or (parsed.get("count") or 1) > 1
        )
    if many:
        import keras

        raise ValueError(
            f"devices={spec!r} asks for several devices, which unet_lib distributes only on "
            f"the TensorFlow backend (KERAS_BACKEND={keras.backend.backend()}): use one "
            "device, or KERAS_BACKEND=tensorflow"
        )
