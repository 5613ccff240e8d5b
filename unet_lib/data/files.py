"""Dataset files: pairing images with masks by stem (``images/a.tif`` with ``masks/a.png``),
and reading them with OpenCV; a bad file raises a :class:`DatasetError` naming it and the fix.

Multi-page TIFF stacks (ISBI 2012's ``train-volume.tif``) are one image per page, stems
``NAME_000``, ``NAME_001``, ..., paired page by page with the mask stack; reading a stack
without saying which page is an error, never its first page. Palette PNG masks (Pascal VOC)
read as their palette indices.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .labels import DatasetError, LabelMapping, pack_rgb, suggested_json
from .splits import natural_key
from .stacks import count_pages, page_stems

__all__ = ["IMAGE_EXTENSIONS", "Pair", "count_pages", "find_pairs", "list_images"]
__all__ += ["page_stems", "read_image", "read_labels", "read_mask"]

#: File suffixes (lower case) read as images or masks; others are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class Pair:
    """An image file and its mask file, matched by ``stem``; ``page``: the page of both
    stacks (``None`` for single images), e.g. ``Pair("vol_007", vol.tif, labels.tif, 7)``."""

    stem: str
    image_path: Path
    mask_path: Path
    page: int | None = None


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
    if stacks := _one_stack_each(images, masks):
        return _pages(stacks, problems), problems
    if images and masks:
        for stem in sorted(set(images) - set(masks), key=natural_key):
            problems.append(f"{images[stem]}: no mask; add masks/{stem}.png or remove the image")
        for stem in sorted(set(masks) - set(images), key=natural_key):
            problems.append(f"{masks[stem]}: no image; add images/{stem}.png or remove the mask")
    stems = sorted(set(images) & set(masks), key=natural_key)
    pairs = [Pair(s, images[s], masks[s]) for s in stems]
    return _pages(pairs, problems), problems


def _one_stack_each(images: dict, masks: dict) -> list[Pair]:
    """ISBI 2012's layout: the only image and the only mask are stacks named differently
    (``train-volume.tif``, ``train-labels.tif``): they pair, under the image's stem."""
    if len(images) == 1 == len(masks) and set(images) != set(masks):
        (stem, image), (mask,) = next(iter(images.items())), masks.values()
        if count_pages(image) > 1 and count_pages(mask) > 1:
            return [Pair(stem, image, mask)]
    return []


def _pages(pairs: list[Pair], problems: list[str]) -> list[Pair]:
    """The pairs with each pair of stacks split into one pair per page (stems ``NAME_000``,
    ...); stacks of different lengths and repeated stems are problems."""
    out: dict[str, Pair] = {}
    for pair in pairs:
        n, n_mask = count_pages(pair.image_path), count_pages(pair.mask_path)
        if n != n_mask:
            problems.append(
                f"{pair.image_path}: {n} page(s) but its mask {pair.mask_path} has {n_mask}; "
                "give the image stack and the mask stack the same pages, one mask per image"
            )
            continue
        pages = [Pair(stem, pair.image_path, pair.mask_path, k)
                 for stem, k in page_stems(pair.stem, n)]  # fmt: skip
        for p in pages:
            if p.stem in out:
                first = out[p.stem]
                problems.append(
                    f"{_where(p)}: same stem {p.stem!r} as {_where(first)}; rename one file"
                )
                continue
            out[p.stem] = p
    return [out[s] for s in sorted(out, key=natural_key)]


def _where(pair: Pair) -> str:
    return str(pair.image_path) + ("" if pair.page is None else f" page {pair.page}")


def find_pairs(data_dir: str | Path) -> list[Pair]:
    """Image/mask pairs of a dataset folder (files with a suffix in :data:`IMAGE_EXTENSIONS`)
    by stem in natural order; folder problems raise one DatasetError listing them all."""
    pairs, problems = collect_pairs(Path(data_dir))
    if problems:
        raise DatasetError(problems, header=f"dataset {data_dir}: {len(problems)} problem(s):")
    return pairs


_LAST_STACK: list = [None]  # ((path, mtime, size), bytes) of the last stack read


def _file_bytes(path: Path, page: int | None) -> np.ndarray:
    """The file's bytes; a stack (several pages) without a ``page``, or a ``page`` outside it,
    raises a DatasetError. The last stack's bytes are kept for its next page (one read per
    stack, not per page)."""
    pages = count_pages(path)
    if page is None and pages > 1:
        raise DatasetError(
            f"{path}: a stack of {pages} pages; read one page with page=0..{pages - 1} (a "
            f"dataset folder reads every page, as {path.stem}_000, {path.stem}_001, ...)"
        )
    if page is not None and not 0 <= page < pages:
        raise DatasetError(f"{path}: has {pages} page(s), no page {page}; pick 0..{pages - 1}")
    try:
        key = None
        if pages > 1:
            stat = path.stat()
            key, last = (str(path.resolve()), stat.st_mtime_ns, stat.st_size), _LAST_STACK[0]
            if last is not None and last[0] == key:
                return last[1]
        buf = np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from None
    if buf.size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes); re-export or remove it")
    if key is not None:
        _LAST_STACK[0] = (key, buf)  # one assignment: threads see old or new, never a mix
    return buf


def _decode_file(path: Path, page: int | None = None, buf: np.ndarray | None = None):
    """Read a file (a ``page`` of a stack; its bytes ``buf`` if already read) with OpenCV
    (IMREAD_UNCHANGED); raise DatasetError if unreadable/truncated."""
    buf = _file_bytes(path, page) if buf is None else buf
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        tail = buf[-64:].tobytes().rstrip(b"\x00\r\n ")
        if not tail.endswith(b"\xff\xd9"):
            raise DatasetError(f"{path}: truncated JPEG (no end marker); re-export or remove it")
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        if page is None:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        else:
            ok, mats = cv2.imdecodemulti(buf, cv2.IMREAD_UNCHANGED, None, (page, page + 1))
            img = mats[0] if ok and len(mats) == 1 else None
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


def read_stored_image(path: Path, page: int | None = None) -> np.ndarray:
    """An image (a ``page`` of a stack) as float32 ``(H, W, C)`` in ``[0, 1]``, RGB, alpha
    dropped, channels as stored."""
    img = _decode_file(path, page)
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


def read_image(
    path: str | Path, channels: int | None = None, page: int | None = None
) -> np.ndarray:
    """Read a PNG, JPEG, TIFF or BMP image as ``float32`` ``(H, W, C)`` in ``[0, 1]`` (8-bit
    / 255, 16-bit / 65535, colour as RGB, alpha dropped). ``channels``: ``1`` or ``3`` converts
    (grey <-> RGB), ``None`` keeps the stored count; ``page``: which page of a multi-page TIFF
    (required there). A bad file raises a DatasetError."""
    check_channels(channels)
    path = Path(path)
    img = read_stored_image(path, page)
    return img if channels is None else convert_channels(img, channels, path)


def _palette_png(buf: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """``(indices (H, W), palette (256, 3) RGB)`` of an indexed-colour PNG, else ``None``."""
    if buf[:8].tobytes() != b"\x89PNG\r\n\x1a\n" or buf.size < 26 or buf[25] != 3:
        return None
    from PIL import Image  # Pillow comes with Matplotlib

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            if im.mode != "P":
                return None
            indices = np.asarray(im)
            stored = np.array(im.getpalette("RGB") or [], np.uint8).reshape(-1, 3)[:256]
    except (OSError, ValueError):
        raise DatasetError(
            f"{path}: cannot be decoded (corrupt or truncated PNG); re-export or remove it"
        ) from None
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(stored)] = stored
    return indices, palette


def mask_values(
    path: str | Path, page: int | None = None, colours: bool = False
) -> tuple[np.ndarray, bool]:
    """A mask's raw values ``(H, W)`` and whether they are colours packed by
    :func:`~unet_lib.data.labels.pack_rgb` (always with ``colours=True``; without it only for
    colour masks, which :func:`read_mask` refuses). Palette PNGs give their palette index
    (its grey value when the whole palette is grey, as before; its colour with ``colours``).
    """
    path = Path(path)
    buf = _file_bytes(path, page)
    if (indexed := _palette_png(buf, path)) is not None:
        indices, palette = indexed
        if colours:
            return pack_rgb(palette)[indices], True
        grey = np.all(palette == palette[:, :1])
        return (palette[indices, 0] if grey else indices), False
    m = _decode_file(path, page, buf)
    if m.ndim == 3:
        if m.shape[2] >= 3 and not np.all(m[:, :, 1:3] == m[:, :, :1]):
            if m.dtype != np.uint8:
                raise DatasetError(f"{path}: {m.dtype} colour mask; save it as 8-bit RGB")
            return pack_rgb(m[:, :, 2::-1]), True
        m = m[:, :, 0]
    m = _integer_mask(m, path)
    if not colours:
        return m, False
    if m.size and m.max() > 255:
        raise DatasetError(
            f"{path}: 16-bit grey mask but the label mapping gives colours; save it as 8-bit"
        )
    return m.astype(np.int32) * 0x010101, True  # grey v is the colour (v, v, v)


def _integer_mask(m: np.ndarray, path: Path) -> np.ndarray:
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


def read_mask(path: str | Path, page: int | None = None, colours: bool = False) -> np.ndarray:
    """Read a mask's raw grey values as an integer ``(H, W)`` array (``uint8``/``uint16``;
    equal colour channels read as grey; a palette PNG: its palette indices; ``page``: the page
    of a multi-page TIFF). ``colours=True`` (a colour mapping) reads ``int32`` packed RGB
    colours (:func:`~unet_lib.data.labels.pack_rgb`). A bad mask, or a colour mask without
    ``colours``, raises a DatasetError that says how to map its colours in ``dataset.json``.
    """
    path = Path(path)
    values, packed = mask_values(path, page, colours)
    if packed and not colours:
        found = np.unique(values)
        raise DatasetError(
            f"{path}: colour mask; map its colours to classes in dataset.json, e.g. "
            f"{suggested_json(found.tolist(), colours=True)} ([R, G, B] lists, background "
            "first), or save masks as grey images with one grey value per class"
        )
    return values


def read_labels(path: str | Path, mapping: LabelMapping, page: int | None = None) -> np.ndarray:
    """A mask file (a ``page`` of a stack) as the ``int32`` label map ``(H, W)`` of ``mapping``
    (grey values or colours, whichever it maps); unmapped values raise a DatasetError."""
    return mapping.encode(read_mask(path, page, colours=mapping.colours), path)
