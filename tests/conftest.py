"""Shared pytest set-up: the slow marker and the real-data fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (or set UNET_RUN_SLOW=1)",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("UNET_RUN_SLOW") == "1":
        return
    skip_slow = pytest.mark.skip(reason="slow test: run with --run-slow or UNET_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def shared_data_root() -> Path | None:
    """The real-data folder (``../shared/data``) named by ``UNET_SHARED_DATA``, if present."""
    value = os.environ.get("UNET_SHARED_DATA")
    if not value:
        return None
    root = Path(value)
    return root if root.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test cleanly when it is not available."""
    root = shared_data_root()
    if root is None:
        pytest.skip("real data not available: set UNET_SHARED_DATA to ../shared/data")
    return root
