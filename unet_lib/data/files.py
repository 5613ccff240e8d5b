"""Dataset files: pairing images with masks by stem, and reading them with OpenCV.

Files in ``images/`` and ``masks/`` are paired by stem (``images/a.tif`` with
``masks/a.png``), sorted in natural order (``s2`` before ``s10``). Images are read as
``float32`` ``(H, W, C)`` in ``[0, 1]`` (8-bit / 255, 16-bit / 65535; colour as RGB, alpha
dropped); masks as their raw integer grey values ``(H, W)``, which a
:class:`~unet_lib.data.labels.LabelMapping` turns into a label map. Missing, unpaired,
unreadable, truncated or unsupported files raise a :class:`~unet_lib.data.labels.DatasetError`
naming the file and the fix. NumPy and OpenCV only (no TensorFlow).

Example:
    >>> pairs = find_pairs("data/generated/binary_v1")  # doctest: +SKIP
    >>> image = read_image(pairs[0].image_path, channels=3)  # doctest: +SKIP
    >>> raw = read_mask(pairs[0].mask_path)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from unet_lib.data.labels import DatasetError
from unet_lib.data.splits import _natural_key

__all__ = ["IMAGE_EXTENSIONS", "Pair", "find_pairs", "read_image", "read_mask"]

#: File suffixes (lower case) read as images or masks; others are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class Pair:
    """An image file and its mask file, matched by ``stem``."""

    stem: str
    image_path: Path
    mask_path: Path


def _list_images(folder: Path, problems: list[str]) -> tuple[dict[str, Path], list[str]]:
    files: dict[str, Path] = {}
    ignored: list[str] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored.append(p.name)
            continue
        if p.stem in files:
            problems.append(f"{p}: same stem as {files[p.stem]}; keep one of the two files")
            continue
        files[p.stem] = p
    return files, ignored


def _find_pairs(data_dir: Path) -> tuple[list[Pair], list[str]]:
    """The pairs and the problems found while pairing."""
    problems: list[str] = []
    if not data_dir.is_dir():
        return [], [
            f"{data_dir}: dataset folder not found; give a folder holding images/ and masks/"
        ]
    listed = {}
    for sub in ("images", "masks"):
        folder = data_dir / sub
        if not folder.is_dir():
            problems.append(
                f"{folder}: missing {sub}/ folder; put the {sub} in "
                f"{data_dir}/{sub}/ (files paired by name)"
            )
            continue
        files, ignored = _list_images(folder, problems)
        if not files:
            extra = f" (ignored {len(ignored)} other files, e.g. {ignored[0]})" if ignored else ""
            problems.append(
                f"{folder}: empty, no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} "
                f"files{extra}; add the {sub}"
            )
        listed[sub] = files
    images, masks = listed.get("images", {}), listed.get("masks", {})
    if images and masks:
        for stem in sorted(set(images) - set(masks), key=_natural_key):
            problems.append(f"{images[stem]}: no mask; add masks/{stem}.png or remove the image")
        for stem in sorted(set(masks) - set(images), key=_natural_key):
            problems.append(f"{masks[stem]}: no image; add images/{stem}.png or remove the mask")
    stems = sorted(set(images) & set(masks), key=_natural_key)
    pairs = [Pair(s, images[s], masks[s]) for s in stems]
    return pairs, problems


def find_pairs(data_dir: str | Path) -> list[Pair]:
    """Image/mask pairs of a dataset folder, sorted by stem (natural order: 2 before 10).

    Files are paired by stem (``images/a.tif`` with ``masks/a.png``); suffixes in
    :data:`IMAGE_EXTENSIONS` count (any case), hidden and other files are ignored.

    Raises:
        DatasetError: missing folders, empty folders, unpaired files or duplicate stems,
            all listed.
    """
    pairs, problems = _find_pairs(Path(data_dir))
    if problems:
        raise DatasetError(problems, header=f"dataset {data_dir}: {len(problems)} problem(s):")
    return pairs


def _decode_file(path: Path) -> np.ndarray:
    """Read a file with OpenCV (IMREAD_UNCHANGED); raise DatasetError if unreadable/truncated."""
    try:
        buf = np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from None
    if buf.size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes); re-export or remove it")
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        tail = buf[-64:].tobytes().rstrip(b"\x00\r\n ")
        if not tail.endswith(b"\xff\xd9"):
            raise DatasetError(f"{path}: truncated JPEG (no end marker); re-export or remove it")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        img = None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if img is None:
        raise DatasetError(
            f"{path}: cannot be decoded (corrupt, truncated or not a "
            f"{suffix[1:].upper()} file); re-export or remove it"
        )
    return img


def _to_float(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535)
    if img.dtype.kind == "f":
        img = img.astype(np.float32)
        if not np.all(np.isfinite(img)) or img.min() < 0 or img.max() > 1:
            raise DatasetError(
                f"{path}: floating-point image with values outside [0, 1]; "
                "scale it to [0, 1] or save it as 8- or 16-bit"
            )
        return img
    raise DatasetError(f"{path}: unsupported pixel type {img.dtype}; save it as 8- or 16-bit")


def _read_native(path: Path) -> np.ndarray:
    """float32 (H, W, C) in [0, 1], RGB order, alpha dropped, channels as stored."""
    img = _decode_file(path)
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c == 2:  # grey + alpha
        img = img[:, :, :1]
    elif c == 3:
        img = img[:, :, ::-1]
    elif c == 4:
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(_to_float(img, path))


def _convert_channels(img: np.ndarray, channels: int, path: Path) -> np.ndarray:
    c = img.shape[2]
    if c == channels:
        return img
    if c == 1 and channels == 3:
        return np.repeat(img, 3, axis=2)
    if c == 3 and channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[:, :, None]
    raise DatasetError(
        f"{path}: cannot convert {c} channels to {channels}; "
        "only grey <-> RGB conversion is supported"
    )


def _check_channels(channels: int | None) -> None:
    if channels is not None and channels not in (1, 3):
        raise ValueError(
            f"channels must be 1 (grey), 3 (RGB) or None (as stored), got {channels!r}"
        )


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read an image as ``float32`` ``(H, W, C)`` in ``[0, 1]``.

    8-bit is divided by 255, 16-bit by 65535; colour is returned as RGB; alpha is dropped.

    Args:
        path: a PNG, JPEG, TIFF or BMP file.
        channels: ``1`` or ``3`` to convert (grey <-> RGB); ``None`` keeps the stored count.

    Raises:
        DatasetError: unreadable, truncated or unsupported file (names it).

    Example:
        >>> img = read_image("images/a.png", channels=3)  # doctest: +SKIP
        >>> img.shape, img.dtype  # doctest: +SKIP
        ((128, 128, 3), dtype('float32'))
    """
    _check_channels(channels)
    path = Path(path)
    img = _read_native(path)
    return img if channels is None else _convert_channels(img, channels, path)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask's raw grey values as an integer ``(H, W)`` array (``uint8``/``uint16``).

    A colour mask whose colour channels are equal is read as grey (alpha ignored).

    Raises:
        DatasetError: unreadable, truncated, colour or non-integer mask (names it).
    """
    path = Path(path)
    m = _decode_file(path)
    if m.ndim == 3:
        colour = m[:, :, :3] if m.shape[2] >= 3 else m[:, :, :1]
        if colour.shape[2] == 3 and not (
            np.array_equal(colour[:, :, 0], colour[:, :, 1])
            and np.array_equal(colour[:, :, 0], colour[:, :, 2])
        ):
            raise DatasetError(
                f"{path}: colour mask; save masks as single-channel grey images "
                "with one grey value per class"
            )
        m = colour[:, :, 0]
    if m.dtype.kind == "f":
        if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)) or m.min() < 0:
            raise DatasetError(
                f"{path}: floating-point mask with non-integer values; save "
                "masks as 8- or 16-bit grey images"
            )
        m = m.astype(np.int32)
    elif m.dtype.kind == "i":
        if m.size and m.min() < 0:
            raise DatasetError(f"{path}: negative mask values; save masks as 8- or 16-bit")
        m = m.astype(np.int32)
    return m
