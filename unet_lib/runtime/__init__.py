"""The machine: which devices to train on (:mod:`.devices`), the strategy, precision policy,
XLA choice and global batch for them, each with its reason (:mod:`.settings`), and several
workers (:mod:`.workers`).

Example:
    >>> from unet_lib.runtime import device_settings
    >>> print(device_settings().describe())  # doctest: +SKIP
"""

from .devices import (
    DEVICES_ENV,
    check_one_device,
    detect_devices,
    device_kind_hint,
    parse_device_spec,
    select_devices,
)
from .settings import (
    TrainingSettings,
    apply_settings,
    build_strategy,
    configure_threads,
    decide_settings,
    device_settings,
    enable_determinism,
    read_cpu_flags,
)
from .workers import barrier, is_chief, multi_worker_strategy, same_on_every_worker, shard_by_data

__all__ = ["DEVICES_ENV", "parse_device_spec", "select_devices", "check_one_device"]
__all__ += ["detect_devices", "device_kind_hint", "TrainingSettings", "read_cpu_flags"]
__all__ += ["decide_settings", "build_strategy", "device_settings", "apply_settings"]
__all__ += ["configure_threads", "enable_determinism", "is_chief", "multi_worker_strategy"]
__all__ += ["same_on_every_worker", "barrier", "shard_by_data"]
