"""Saving and loading models: ``.keras`` files only, written atomically, read with safe_mode.

Loading imports the library's layers, losses and metrics first, so their registered names
(``unet_lib>BatchNorm``, ``unet_lib>DiceCELoss``, ...) resolve without ``custom_objects``.
"""

import os
from pathlib import Path

from unet_lib.fileio import atomic_path


def save_model(model, path: str | os.PathLike, *, portable: bool = False) -> Path:
    """Save a Keras model to a ``.keras`` file atomically; returns the path. ``portable``:
    save :func:`portable_copy` instead, whose graph plain Keras opens without ``unet_lib``
    (``keras.saving.load_model(path, compile=False)``)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"models are saved as .keras files only, got {path.name!r}")
    with atomic_path(path) as tmp:
        (portable_copy(model) if portable else model).save(tmp)
    return path


def portable_copy(model):
    """A copy of ``model`` made of standard Keras layers: each :class:`~unet_lib.model.BatchNorm`
    becomes a ``keras.layers.BatchNormalization`` with the same configuration (but ``lean``)
    and weights; the two compute the same outside ``bfloat16`` training. The copy keeps the
    model's compile settings (a fresh optimizer), so ``load_model`` here still compiles it.

    Example:
        >>> save_model(model, "best.keras", portable=True)  # doctest: +SKIP
        >>> keras.saving.load_model("best.keras", compile=False)  # no unet_lib needed
    """
    import keras

    from .batchnorm import BatchNorm

    def clone(layer):
        if isinstance(layer, BatchNorm):
            config = {k: v for k, v in layer.get_config().items() if k != "lean"}
            return keras.layers.BatchNormalization.from_config(config)
        return layer.__class__.from_config(layer.get_config())

    if not any(isinstance(layer, BatchNorm) for layer in model.layers):
        return model
    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    if model.compiled and (config := model.get_compile_config()) is not None:
        copy.compile_from_config(config)
    return copy


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
