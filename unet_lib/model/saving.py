"""Saving and loading models: ``.keras`` files only, written atomically, read with safe_mode.

Loading imports the library's layers, losses and metrics first, so their registered names
(``unet_lib>BatchNorm``, ``unet_lib>DiceCELoss``, ...) resolve without ``custom_objects``.
"""

import os
from pathlib import Path

from unet_lib.fileio import atomic_path


def save_model(model, path: str | os.PathLike) -> Path:
    """Save a Keras model to a ``.keras`` file atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"models are saved as .keras files only, got {path.name!r}")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def load_model(path: str | os.PathLike, *, compile: bool = True):
    """Load a ``.keras`` model saved by this library, with ``safe_mode=True``.

    Imports the registered losses, metrics and layers first: ``import unet_lib`` loads them
    lazily, so a bare ``keras.saving.load_model`` could not locate ``'DiceCELoss'``.
    ``compile=False`` skips the loss, metrics and optimizer (inference only). Raises
    FileNotFoundError (no file) or ValueError (not a ``.keras`` file, or not readable).
    """
    import keras

    from unet_lib import losses, metrics  # noqa: F401 - registers them
    from unet_lib.model import batchnorm  # noqa: F401 - registers BatchNorm

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no model file at {file}")
    if file.suffix != ".keras":
        raise ValueError(f"{file} is not a .keras model file")
    try:
        return keras.saving.load_model(file, safe_mode=True, compile=compile)
    except Exception as error:  # noqa: BLE001 - Keras raises many types for bad files
        raise ValueError(f"{file} is not a readable Keras model ({error})") from error
