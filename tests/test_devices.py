"""Tests for unet_lib.runtime.devices: reading a device choice (the TensorFlow side runs in
tests/test_distributed.py, in subprocesses)."""

from __future__ import annotations

import pytest

from unet_lib.runtime.devices import check_one_device, parse_device_spec

DEVICE_SPECS = {
    None: None,
    "": None,
    "auto": None,
    "cpu": {"kind": "cpu", "count": 1},
    "cpu:2": {"kind": "cpu", "count": 2},
    "CPU:3": {"kind": "cpu", "count": 3},
    "gpu": {"kind": "gpu", "count": None},
    "gpu:0,1": {"kind": "gpu", "indices": [0, 1]},
    2: {"kind": "any", "count": 2},
    ("/device:CPU:0",): {"names": ["/device:CPU:0"]},
}


@pytest.mark.parametrize("spec", list(DEVICE_SPECS), ids=repr)
def test_parse_device_spec(spec):
    assert parse_device_spec(spec) == DEVICE_SPECS[spec]


@pytest.mark.parametrize("spec", ["tpu:1", "cpu:0", "cpu:1,2", "gpu:0,0", "gpu:x", 0, [], [1]])
def test_parse_device_spec_rejects(spec):
    with pytest.raises(ValueError, match="device|cpu|gpu"):
        parse_device_spec(spec)


@pytest.mark.parametrize("spec", [None, "cpu", "gpu", "gpu:1", 1, ["/device:GPU:0"]])
def test_one_device_is_fine_on_other_backends(spec):
    check_one_device(spec)


@pytest.mark.parametrize("spec", ["cpu:2", "gpu:0,1", 2, ["/device:CPU:0", "/device:CPU:1"]])
def test_several_devices_need_tensorflow(spec):
    with pytest.raises(ValueError, match="TensorFlow backend"):
        check_one_device(spec)
