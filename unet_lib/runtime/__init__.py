"""FACE_DOC_runtime"""

from __future__ import annotations

from unet_lib.runtime.devices import (
    DEVICES_ENV,
    check_one_device,
    parse_device_spec,
    select_devices,
)
from unet_lib.runtime.settings import (
    TrainingSettings,
    apply_settings,
    build_strategy,
    configure_threads,
    decide_settings,
    detect_devices,
    device_kind_hint,
    device_settings,
    enable_determinism,
    is_chief,
    read_cpu_flags,
)
from unet_lib.runtime.workers import (
    barrier,
    multi_worker_strategy,
    same_on_every_worker,
    shard_by_data,
)

__all__ = [
    "DEVICES_ENV",
    "parse_device_spec",
    "select_devices",
    "check_one_device",
    "TrainingSettings",
    "read_cpu_flags",
    "decide_settings",
    "detect_devices",
    "device_kind_hint",
    "build_strategy",
    "device_settings",
    "apply_settings",
    "configure_threads",
    "enable_determinism",
    "is_chief",
    "multi_worker_strategy",
    "same_on_every_worker",
    "barrier",
    "shard_by_data",
]
