"""Dataset files: pairing images with masks by stem (``images/a.tif`` with ``masks/a.png``),
and reading them with OpenCV; a bad file raises a :class:`DatasetError` naming it and the fix.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .labels import DatasetError
from .splits import natural_key

__all__ = ["IMAGE_EXTENSIONS", "Pair", "find_pairs", "list_images", "read_image", "read_mask"]

#: File suffixes (lower case) read as images or masks; others are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class Pair:
    """An image file and its mask file, matched by ``stem``."""

    stem: str
    image_path: Path
    mask_path: Path


def list_images(folder: Path, problems: list[str]) -> tuple[dict[str, Path], list[str]]:
    """The image files of ``folder`` by stem (name order, hidden ones skipped) and the names of
    its other files; a repeated stem is added to ``problems`` (the first file is kept)."""
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


def collect_pairs(data_dir: Path) -> tuple[list[Pair], list[str]]:
    """The pairs of a dataset folder and the problems found while pairing (not raised)."""
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
        files, ignored = list_images(folder, problems)
        if not files:
            extra = f" (ignored {len(ignored)} other files, e.g. {ignored[0]})" if ignored else ""
            problems.append(
                f"{folder}: empty, no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} "
                f"files{extra}; add the {sub}"
            )
        listed[sub] = files
    images, masks = listed.get("images", {}), listed.get("masks", {})
    if images and masks:
        for stem in sorted(set(images) - set(masks), key=natural_key):
            problems.append(f"{images[stem]}: no mask; add masks/{stem}.png or remove the image")
        for stem in sorted(set(masks) - set(images), key=natural_key):
            problems.append(f"{masks[stem]}: no image; add images/{stem}.png or remove the mask")
    stems = sorted(set(images) & set(masks), key=natural_key)
    pairs = [Pair(s, images[s], masks[s]) for s in stems]
    return pairs, problems


def find_pairs(data_dir: str | Path) -> list[Pair]:
    """Image/mask pairs of a dataset folder (files with a suffix in :data:`IMAGE_EXTENSIONS`)
    by stem in natural order; folder problems raise one DatasetError listing them all."""
    pairs, problems = collect_pairs(Path(data_dir))
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
    scale = {np.uint8: 255, np.uint16: 65535}.get(img.dtype.type)
    if scale:
        return img.astype(np.float32) / np.float32(scale)
    if img.dtype.kind == "f":
        img = img.astype(np.float32)
        if not np.all(np.isfinite(img)) or img.min() < 0 or img.max() > 1:
            raise DatasetError(
                f"{path}: floating-point image with values outside [0, 1]; "
                "scale it to [0, 1] or save it as 8- or 16-bit"
            )
        return img
    raise DatasetError(f"{path}: unsupported pixel type {img.dtype}; save it as 8- or 16-bit")


def read_stored_image(path: Path) -> np.ndarray:
    """An image as float32 ``(H, W, C)`` in ``[0, 1]``, RGB, alpha dropped, channels as stored."""
    img = _decode_file(path)
    img = img[:, :, None] if img.ndim == 2 else img
    # grey + alpha, BGR, BGRA -> grey, RGB, RGB
    img = {2: img[:, :, :1], 3: img[:, :, ::-1], 4: img[:, :, 2::-1]}.get(img.shape[2], img)
    return np.ascontiguousarray(_to_float(img, path))


def convert_channels(img: np.ndarray, channels: int, path: Path) -> np.ndarray:
    """``img`` with ``channels`` channels (grey <-> RGB), or a DatasetError naming ``path``."""
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


def check_channels(channels: int | None) -> None:
    """Raises ValueError unless ``channels`` is 1, 3 or None."""
    if channels is not None and channels not in (1, 3):
        raise ValueError(
            f"channels must be 1 (grey), 3 (RGB) or None (as stored), got {channels!r}"
        )


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or BMP image as ``float32`` ``(H, W, C)`` in ``[0, 1]`` (8-bit
    / 255, 16-bit / 65535, colour as RGB, alpha dropped). ``channels``: ``1`` or ``3`` converts
    (grey <-> RGB), ``None`` keeps the stored count. A bad file raises a DatasetError."""
    check_channels(channels)
    path = Path(path)
    img = read_stored_image(path)
    return img if channels is None else convert_channels(img, channels, path)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask's raw grey values as an integer ``(H, W)`` array (``uint8``/``uint16``;
    equal colour channels read as grey); a bad, colour or non-integer mask raises DatasetError.
    """
    path = Path(path)
    m = _decode_file(path)
    if m.ndim == 3:
        if m.shape[2] >= 3 and not np.all(m[:, :, 1:3] == m[:, :, :1]):
            raise DatasetError(
                f"{path}: colour mask; save masks as single-channel grey images "
                "with one grey value per class"
            )
        m = m[:, :, 0]
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
