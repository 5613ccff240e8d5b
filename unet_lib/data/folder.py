"""Dataset folders: pairing, reading with OpenCV, the ``dataset.json`` label mapping,
validation and deterministic splits.

A dataset is a folder with ``images/`` and ``masks/`` whose files are paired by stem
(``images/a.tif`` with ``masks/a.png``). Images become ``float32`` ``(H, W, C)`` in
``[0, 1]``; masks become ``int32`` ``(H, W)`` label maps ``0 .. K-1`` with ignored pixels
set to ``unet_lib.IGNORE_LABEL`` (``-1``). How mask grey values map to classes comes from
``dataset.json`` beside ``images/`` (or the ``labels=`` argument), else it is inferred:
``{0, 255}`` or ``{0, 1}`` is binary, ``0 .. K-1`` is ``K`` classes.

Every problem in a folder is collected and reported at once in a :class:`DatasetError`,
each line naming the file and the fix. NumPy and OpenCV only (no TensorFlow).

Example:
    >>> summary = validate_dataset("data/generated/binary_v1")  # doctest: +SKIP
    >>> data = load_dataset("data/generated/binary_v1")  # doctest: +SKIP
    >>> splits = split_dataset(data.stems, val_fraction=0.2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from unet_lib import IGNORE_LABEL

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "LabelMapping",
    "infer_label_mapping",
    "load_label_mapping",
    "Pair",
    "find_pairs",
    "read_image",
    "read_mask",
    "DatasetSummary",
    "validate_dataset",
    "LoadedDataset",
    "load_dataset",
    "split_dataset",
]

#: File suffixes (lower case) read as images or masks; others are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_DATASET_JSON = "dataset.json"
_MAX_MASK_VALUE = 65535  # masks are 8- or 16-bit
_UNKNOWN = -2  # lookup-table entry for raw values outside the mapping


class DatasetError(ValueError):
    """One or more problems in a dataset, each naming the file and the fix.

    Attributes:
        problems: one line per problem.

    Example:
        >>> err = DatasetError(["images/a.png: has no mask; add masks/a.png"])
        >>> err.problems
        ['images/a.png: has no mask; add masks/a.png']
    """

    def __init__(self, problems: list[str] | str, header: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        n = len(self.problems)
        self.header = header or f"{n} problem{'s' if n != 1 else ''} in the dataset:"
        super().__init__("\n".join([self.header, *(f"  {p}" for p in self.problems)]))


# --------------------------------------------------------------------------------------
# Label mapping
# --------------------------------------------------------------------------------------


def _as_int_value(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"{what} must be an integer grey value 0..{_MAX_MASK_VALUE}, got {value!r}"
        )
    if not 0 <= int(value) <= _MAX_MASK_VALUE:
        raise ValueError(f"{what} must be in 0..{_MAX_MASK_VALUE} (8- or 16-bit), got {value}")
    return int(value)


@dataclass(frozen=True)
class LabelMapping:
    """Which raw mask grey values mean which class.

    Class ``k`` (label ``k`` in the label map) is ``class_names[k]``, made of the raw values
    ``values[k]``. Pixels equal to ``ignore_value`` become ``IGNORE_LABEL`` (``-1``).

    Attributes:
        class_names: one name per class, in class order (class 0 is background).
        values: for each class, the raw grey values that mean it.
        ignore_value: raw value of pixels to ignore, or ``None``.

    Example:
        >>> m = LabelMapping.from_dict({"labels": {"background": 255, "membrane": 0}})
        >>> m.encode(np.array([[0, 255]], np.uint8)).tolist()
        [[1, 0]]
        >>> m.num_classes, m.is_binary, m.model_num_classes
        (2, True, 1)
    """

    class_names: tuple[str, ...]
    values: tuple[tuple[int, ...], ...]
    ignore_value: int | None = None

    def __post_init__(self):
        names = tuple(str(n) for n in self.class_names)
        values = tuple(
            tuple(
                _as_int_value(v, f"value of class {names[k] if k < len(names) else k!r}")
                for v in vs
            )
            for k, vs in enumerate(self.values)
        )
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "values", values)
        if len(names) != len(values):
            raise ValueError(
                f"{len(names)} class names but {len(values)} value groups; give one per class"
            )
        if len(names) < 2:
            raise ValueError(f"a label mapping needs at least 2 classes, got {list(names)}")
        if len(set(names)) != len(names):
            dup = sorted(n for n, c in Counter(names).items() if c > 1)
            raise ValueError(f"class names must be unique; repeated: {dup}")
        seen: dict[int, str] = {}
        for name, vs in zip(names, values, strict=True):
            if not vs:
                raise ValueError(f"class {name!r} has no grey values; give at least one")
            for v in vs:
                if v in seen:
                    raise ValueError(
                        f"grey value {v} is given to both {seen[v]!r} and {name!r}; "
                        "each value may mean one class only"
                    )
                seen[v] = name
        if self.ignore_value is not None:
            iv = _as_int_value(self.ignore_value, "ignore_value")
            if iv in seen:
                raise ValueError(
                    f"ignore_value {iv} is also the value of class {seen[iv]!r}; pick another"
                )
            object.__setattr__(self, "ignore_value", iv)

    @classmethod
    def from_dict(cls, d: dict) -> LabelMapping:
        """Build a mapping from the ``dataset.json`` form.

        Args:
            d: ``{"labels": {name: value or [values], ...}, "ignore_value": v}``
                (``ignore_value`` optional, ``"description"`` allowed and unused), or just
                the inner ``{name: value or [values]}`` dict. Classes are in dict order.

        Returns:
            The mapping.

        Raises:
            ValueError: a malformed dict, with what to change.

        Example:
            >>> LabelMapping.from_dict({"labels": {"a": [0, 1], "b": 2}, "ignore_value": 9})
            LabelMapping(class_names=('a', 'b'), values=((0, 1), (2,)), ignore_value=9)
        """
        if not isinstance(d, dict):
            raise ValueError(
                f"a label mapping must be a dict like "
                f'{{"labels": {{"background": 0, "foreground": 255}}}}, got {type(d).__name__}'
            )
        if "labels" in d and isinstance(d["labels"], dict):
            extra = sorted(set(d) - {"labels", "ignore_value", "description"})
            if extra:
                raise ValueError(
                    f"unknown key(s) {extra}; allowed: 'labels', 'ignore_value', 'description'"
                )
            labels, ignore = d["labels"], d.get("ignore_value")
        elif "labels" in d:
            raise ValueError(
                '"labels" must map class names to grey values, e.g. '
                '{"labels": {"background": 0, "foreground": 255}}'
            )
        else:
            labels, ignore = d, None
        if not labels:
            raise ValueError('"labels" is empty; list the classes, e.g. {"background": 0, ...}')
        names, values = [], []
        for name, v in labels.items():
            vs = list(v) if isinstance(v, list | tuple) else [v]
            names.append(name)
            values.append(tuple(_as_int_value(x, f"value of class {name!r}") for x in vs))
        return cls(tuple(names), tuple(values), ignore)

    def to_dict(self) -> dict:
        """The ``dataset.json`` form (single values unwrapped).

        Example:
            >>> LabelMapping(("bg", "fg"), ((0,), (255,))).to_dict()
            {'labels': {'bg': 0, 'fg': 255}}
        """
        d: dict[str, Any] = {
            "labels": {
                n: (vs[0] if len(vs) == 1 else list(vs))
                for n, vs in zip(self.class_names, self.values, strict=True)
            }
        }
        if self.ignore_value is not None:
            d["ignore_value"] = self.ignore_value
        return d

    @property
    def num_classes(self) -> int:
        """Number of label classes ``K`` (2 for a binary problem)."""
        return len(self.class_names)

    @property
    def is_binary(self) -> bool:
        """``True`` when there are exactly two classes."""
        return self.num_classes == 2

    @property
    def model_num_classes(self) -> int:
        """The model's ``num_classes`` (output channels): 1 when binary, else ``K``."""
        return 1 if self.is_binary else self.num_classes

    @cached_property
    def _lut(self) -> np.ndarray:
        top = max(max(vs) for vs in self.values)
        if self.ignore_value is not None:
            top = max(top, self.ignore_value)
        lut = np.full(top + 1, _UNKNOWN, np.int32)
        for k, vs in enumerate(self.values):
            lut[list(vs)] = k
        if self.ignore_value is not None:
            lut[self.ignore_value] = IGNORE_LABEL
        return lut

    def encode(self, raw_mask: np.ndarray, path: str | Path | None = None) -> np.ndarray:
        """Raw mask values -> ``int32`` label map ``(H, W)``; ignored pixels -> ``-1``.

        Args:
            raw_mask: integer array of raw grey values (``(H, W)`` or ``(H, W, 1)``).
            path: the mask's file, named in the error.

        Returns:
            ``int32`` array of the same spatial shape with values ``0..K-1`` or ``-1``.

        Raises:
            DatasetError: some values are not in the mapping (names the file and values).
        """
        raw = np.asarray(raw_mask)
        if raw.ndim == 3 and raw.shape[-1] == 1:
            raw = raw[..., 0]
        if raw.dtype.kind == "f":
            if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
                raise DatasetError(
                    f"{path or 'mask'}: holds non-integer values; save masks "
                    "as 8- or 16-bit integer images"
                )
            raw = raw.astype(np.int64)
        elif raw.dtype.kind not in "ui":
            raise ValueError(f"{path or 'mask'}: expected integer values, got dtype {raw.dtype}")
        lut = self._lut
        if raw.size and (raw.min() < 0 or raw.max() >= lut.size):
            out_of_range = (raw < 0) | (raw >= lut.size)
            bad = set(np.unique(raw[out_of_range]).tolist())
            inside = raw[~out_of_range]
            bad |= set(np.unique(inside[lut[inside] == _UNKNOWN]).tolist())
            raise DatasetError(self._unknown_message(path, bad))
        labels = lut[raw]
        if raw.size and labels.min() == _UNKNOWN:
            raise DatasetError(
                self._unknown_message(path, set(np.unique(raw[labels == _UNKNOWN]).tolist()))
            )
        return labels

    def known_values(self) -> set[int]:
        """All raw values the mapping accepts (class values and the ignore value)."""
        known = {v for vs in self.values for v in vs}
        if self.ignore_value is not None:
            known.add(self.ignore_value)
        return known

    def _unknown_message(self, path, bad: set[int]) -> str:
        return (
            f"{path or 'mask'}: values {_fmt_values(bad)} are not in the label mapping "
            f"(known: {_fmt_values(self.known_values())}); add them to a class in "
            f'{_DATASET_JSON} (or set "ignore_value"), or fix the mask'
        )

    def decode(self, label_map: np.ndarray) -> np.ndarray:
        """Label map -> raw grey values (the first value of each class), e.g. to save it.

        ``IGNORE_LABEL`` pixels become ``ignore_value``. Works on any shape.

        Returns:
            ``uint8`` array (``uint16`` when a value exceeds 255).

        Raises:
            ValueError: labels outside ``0..K-1`` (or ``-1`` without an ``ignore_value``).

        Example:
            >>> m = LabelMapping(("background", "membrane"), ((255,), (0,)))
            >>> m.decode(np.array([[0, 1]])).tolist()
            [[255, 0]]
        """
        labels = np.asarray(label_map)
        firsts = [vs[0] for vs in self.values]
        top = max(firsts + ([self.ignore_value] if self.ignore_value is not None else []))
        dtype = np.uint8 if top <= 255 else np.uint16
        lut = np.array([*firsts, 0 if self.ignore_value is None else self.ignore_value], dtype)
        lo = IGNORE_LABEL if self.ignore_value is not None else 0
        if labels.size and (labels.min() < lo or labels.max() >= self.num_classes):
            outside = np.unique(labels[(labels < lo) | (labels >= self.num_classes)])
            raise ValueError(
                f"label map holds values outside {lo}..{self.num_classes - 1}: "
                f"{_fmt_values(outside.tolist())}"
            )
        return lut[labels.astype(np.int64)]  # -1 indexes the last entry (the ignore value)


def _fmt_values(values) -> str:
    vals = sorted(int(v) for v in values)
    if len(vals) > 20:
        return "{" + ", ".join(map(str, vals[:20])) + f", ... ({len(vals)} values)" + "}"
    return "{" + ", ".join(map(str, vals)) + "}"


def _suggested_json(values: set[int]) -> str:
    vals = sorted(values)
    if len(vals) == 2:
        labels = {"background": vals[0], "foreground": vals[1]}
    else:
        shown = vals if len(vals) <= 12 else vals[:12]
        labels = {f"class_{i}": v for i, v in enumerate(shown)}
    text = json.dumps({"labels": labels})
    if len(vals) > 12:
        text = text[:-2] + ", ...}}"
    return text


def infer_label_mapping(values: set[int], *, data_dir: str | Path | None = None) -> LabelMapping:
    """Guess the mapping from the set of raw values found in all masks.

    Rules: values within ``{0, 1}`` or ``{0, 255}`` are binary (``background`` = 0,
    ``foreground`` = non-zero); exactly ``{0, 1, ..., K-1}`` is ``K`` classes
    (``background``, ``class_1``, ...). Anything else needs a ``dataset.json``.

    Args:
        values: raw mask values found.
        data_dir: the dataset folder, named in the error.

    Returns:
        The inferred mapping.

    Raises:
        DatasetError: values that fit no rule; the message lists them and shows the
            ``dataset.json`` to write.

    Example:
        >>> infer_label_mapping({0, 255}).values
        ((0,), (255,))
        >>> infer_label_mapping({0, 1, 2}).class_names
        ('background', 'class_1', 'class_2')
    """
    vals = {int(v) for v in values}
    if vals and vals <= {0, 1}:
        return LabelMapping(("background", "foreground"), ((0,), (1,)))
    if vals and vals <= {0, 255}:
        return LabelMapping(("background", "foreground"), ((0,), (255,)))
    k = len(vals)
    if k >= 3 and vals == set(range(k)):
        names = ("background", *(f"class_{i}" for i in range(1, k)))
        return LabelMapping(names, tuple((i,) for i in range(k)))
    where = Path(data_dir) / _DATASET_JSON if data_dir is not None else _DATASET_JSON
    if not vals:
        raise DatasetError(f"{where}: no mask values found; cannot infer the classes")
    hint = ""
    if len(vals) > 32:
        hint = (
            " (that many values suggests images saved as masks, or lossy JPEG masks: "
            "save masks as PNG with one grey value per class)"
        )
    raise DatasetError(
        f"{where}: masks hold the values {_fmt_values(vals)}{hint}, which are neither binary "
        f"({{0, 255}} or {{0, 1}}) nor 0..K-1; write {where} saying which value is which "
        f"class, in class order (background first), e.g. {_suggested_json(vals)} "
        "(or pass labels=... / --labels)"
    )


def load_label_mapping(
    data_dir: str | Path, labels: LabelMapping | dict | str | Path | None = None
) -> LabelMapping | None:
    """The mapping given as ``labels``, else the one in ``data_dir/dataset.json``, else ``None``.

    Args:
        data_dir: the dataset folder.
        labels: a :class:`LabelMapping`, a dict in the ``dataset.json`` form, a JSON string
            (starting with ``{``) or the path of a JSON file.

    Returns:
        The mapping, or ``None`` when neither is given (then it is inferred from the masks).

    Raises:
        DatasetError: an unreadable or malformed JSON file or string (names it and the fix).
    """
    if isinstance(labels, LabelMapping):
        return labels
    source: str
    if labels is None:
        path = Path(data_dir) / _DATASET_JSON
        if not path.is_file():
            return None
        source = str(path)
        d = _read_json(path)
    elif isinstance(labels, dict):
        source, d = "labels argument", labels
    elif isinstance(labels, str) and labels.lstrip().startswith("{"):
        source = "labels argument"
        try:
            d = json.loads(labels)
        except json.JSONDecodeError as e:
            raise DatasetError(
                f"{source}: not valid JSON ({e}); write e.g. "
                '\'{"labels": {"background": 0, "foreground": 255}}\''
            ) from None
    elif isinstance(labels, str | Path):
        path = Path(labels)
        if not path.is_file():
            raise DatasetError(
                f"{path}: labels file not found; give a JSON file or a JSON "
                'string such as \'{"labels": {"background": 0, "foreground": 255}}\''
            )
        source = str(path)
        d = _read_json(path)
    else:
        raise TypeError(f"labels must be a LabelMapping, dict, JSON string or path, got {labels!r}")
    try:
        return LabelMapping.from_dict(d)
    except ValueError as e:
        raise DatasetError(f"{source}: {e}") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}: not valid JSON ({e}); fix it, e.g. "
            '{"labels": {"background": 0, "foreground": 255}}'
        ) from None


# --------------------------------------------------------------------------------------
# Pairs and reading
# --------------------------------------------------------------------------------------


@dataclass
class Pair:
    """An image file and its mask file, matched by ``stem``."""

    stem: str
    image_path: Path
    mask_path: Path


def _natural_key(stem: str):
    """Sort key that orders ``s2`` before ``s10`` (zero-padded names sort as usual)."""
    return [(0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", stem)]


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


# --------------------------------------------------------------------------------------
# Validation and loading
# --------------------------------------------------------------------------------------


_SOURCE_TEXT = {
    "argument": "from the labels argument",
    _DATASET_JSON: f"from {_DATASET_JSON}",
    "inferred": "inferred from the mask values",
}


@dataclass
class DatasetSummary:
    """What :func:`validate_dataset` found in a valid dataset.

    Attributes:
        data_dir: the folder.
        num_pairs: number of image/mask pairs.
        sizes: ``(H, W)`` -> number of pairs of that size.
        channels: image channels after conversion.
        mapping: the label mapping in use.
        class_pixel_shares: class name -> share of the labelled (not ignored) pixels.
        ignored_share: share of all pixels that are ignored.
        mapping_source: ``"argument"``, ``"dataset.json"`` or ``"inferred"``.
        stored_channels: stored channel count (alpha dropped) -> number of images.
    """

    data_dir: Path
    num_pairs: int
    sizes: dict[tuple[int, int], int]
    channels: int
    mapping: LabelMapping
    class_pixel_shares: dict[str, float]
    ignored_share: float = 0.0
    mapping_source: str = "inferred"
    stored_channels: dict[int, int] = field(default_factory=dict)

    def format(self) -> str:
        """Human-readable multi-line summary."""
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sorted(self.sizes.items()))
        stored = ", ".join(f"{c}: {n}" for c, n in sorted(self.stored_channels.items()))
        conv = "" if set(self.stored_channels) <= {self.channels} else f" (converted from {stored})"
        kind = "binary" if self.mapping.is_binary else "multi-class"
        lines = [
            f"dataset {self.data_dir}: OK",
            f"  pairs:    {self.num_pairs}",
            f"  sizes:    {sizes}  (H x W, number of pairs)",
            f"  channels: {self.channels}{conv}",
            f"  classes:  {self.mapping.num_classes}, {kind}, mapping "
            + _SOURCE_TEXT.get(self.mapping_source, self.mapping_source),
        ]
        width = max(len(n) for n in self.mapping.class_names)
        for k, (name, vs) in enumerate(
            zip(self.mapping.class_names, self.mapping.values, strict=True)
        ):
            share = self.class_pixel_shares.get(name, 0.0)
            vals = ", ".join(map(str, vs))
            lines.append(
                f"    {k}  {name:<{width}}  {100 * share:6.2f} % of pixels  (mask values {vals})"
            )
        if self.mapping.ignore_value is not None:
            lines.append(
                f"    ignored (mask value {self.mapping.ignore_value}): "
                f"{100 * self.ignored_share:.2f} % of pixels"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


@dataclass
class LoadedDataset:
    """A decoded dataset: parallel lists of images, label maps and stems.

    Attributes:
        images: ``float32`` ``(H, W, C)`` arrays in ``[0, 1]``.
        masks: ``int32`` ``(H, W)`` label maps, ``0..K-1``, ignored pixels ``-1``.
        stems: file stems, in :func:`find_pairs` order.
        mapping: the label mapping used.
        channels: ``C`` of every image.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    stems: list[str]
    mapping: LabelMapping
    channels: int

    def __len__(self) -> int:
        return len(self.stems)

    def select(self, stems: list[str]) -> LoadedDataset:
        """The subset with these stems (in the given order), e.g. one split's stems."""
        index = {s: i for i, s in enumerate(self.stems)}
        missing = [s for s in stems if s not in index]
        if missing:
            raise KeyError(f"stems not in the dataset: {missing[:10]}")
        idx = [index[s] for s in stems]
        return LoadedDataset(
            [self.images[i] for i in idx],
            [self.masks[i] for i in idx],
            list(stems),
            self.mapping,
            self.channels,
        )


def _scan(data_dir, labels, channels, keep: bool):
    """Read everything, collect every problem; return the pieces for summary/loading."""
    _check_channels(channels)
    data_dir = Path(data_dir)
    pairs, problems = _find_pairs(data_dir)
    mapping, mapping_source = None, "inferred"
    try:
        mapping = load_label_mapping(data_dir, labels)
        if mapping is not None:
            mapping_source = "argument" if labels is not None else _DATASET_JSON
    except DatasetError as e:
        problems.extend(e.problems)
        mapping_source = "error"
    images: dict[str, np.ndarray] = {}
    raws: dict[str, np.ndarray] = {}
    counts: dict[str, dict[int, int]] = {}
    native_c: dict[str, int] = {}
    sizes: Counter = Counter()
    by_stem = {p.stem: p for p in pairs}
    for pair in pairs:
        img = mask = None
        try:
            img = _read_native(pair.image_path)
            native_c[pair.stem] = img.shape[2]
        except DatasetError as e:
            problems.extend(e.problems)
        try:
            mask = read_mask(pair.mask_path)
            flat = mask.ravel()
            if flat.size and flat.max() <= _MAX_MASK_VALUE:
                bc = np.bincount(flat)
                nz = np.flatnonzero(bc)
                counts[pair.stem] = dict(zip(nz.tolist(), bc[nz].tolist(), strict=True))
            else:
                u, c = np.unique(flat, return_counts=True)
                counts[pair.stem] = dict(zip(u.tolist(), c.tolist(), strict=True))
        except DatasetError as e:
            problems.extend(e.problems)
        if img is not None and mask is not None:
            if img.shape[:2] != mask.shape:
                problems.append(
                    f"{pair.image_path}: size {img.shape[0]}x{img.shape[1]} (HxW) differs from "
                    f"its mask {pair.mask_path} {mask.shape[0]}x{mask.shape[1]}; "
                    "resize or crop one of them"
                )
            else:
                sizes[img.shape[:2]] += 1
        if keep:
            if img is not None:
                images[pair.stem] = img
            if mask is not None:
                raws[pair.stem] = mask

    # channels
    target = channels
    if native_c:
        tally = Counter(native_c.values())
        if channels is None:
            major, n_major = tally.most_common(1)[0]
            target = major
            if len(tally) > 1:
                for stem, c in native_c.items():
                    if c != major:
                        problems.append(
                            f"{by_stem[stem].image_path}: has {c} channel(s) but {n_major} of "
                            f"{len(native_c)} images have {major}; pass channels={major} "
                            f"(--channels {major}) to convert all images"
                        )
        else:
            for stem, c in native_c.items():
                if c != channels and not ({c, channels} <= {1, 3}):
                    problems.append(
                        f"{by_stem[stem].image_path}: cannot convert {c} channels to "
                        f"{channels}; only grey <-> RGB conversion is supported"
                    )

    # mapping
    if mapping is None and mapping_source != "error" and counts:
        try:
            mapping = infer_label_mapping(set().union(*counts.values()), data_dir=data_dir)
        except DatasetError as e:
            problems.extend(e.problems)
    if mapping is not None:
        known = mapping.known_values()
        for pair in pairs:
            found = counts.get(pair.stem)
            if found is None:
                continue
            bad = set(found) - known
            if bad:
                problems.append(mapping._unknown_message(pair.mask_path, bad))

    if problems:
        n = len(problems)
        raise DatasetError(
            problems,
            header=f"dataset {data_dir}: {n} problem{'s' * (n != 1)} "
            "(fix them all, then run check again):",
        )

    # shares
    class_px = np.zeros(mapping.num_classes, np.int64)
    value_to_class = {v: k for k, vs in enumerate(mapping.values) for v in vs}
    ignored = total = 0
    for found in counts.values():
        for v, c in found.items():
            total += c
            if v == mapping.ignore_value:
                ignored += c
            else:
                class_px[value_to_class[v]] += c
    labelled = max(int(class_px.sum()), 1)
    summary = DatasetSummary(
        data_dir=data_dir,
        num_pairs=len(pairs),
        sizes=dict(sizes),
        channels=int(target),
        mapping=mapping,
        class_pixel_shares={
            n: float(c) / labelled for n, c in zip(mapping.class_names, class_px, strict=True)
        },
        ignored_share=ignored / max(total, 1),
        mapping_source=mapping_source,
        stored_channels=dict(Counter(native_c.values())),
    )
    return summary, pairs, images, raws


def validate_dataset(
    data_dir: str | Path,
    labels: LabelMapping | dict | str | Path | None = None,
    channels: int | None = None,
) -> DatasetSummary:
    """Check a dataset folder completely before training.

    Reads every file and collects every problem: missing ``images/``/``masks/`` folders,
    empty folders, images without masks and masks without images, unreadable or truncated
    files, image/mask size mismatches, mask values outside the mapping (or not inferable),
    mixed channel counts (unless ``channels`` is given, then images are converted).

    Args:
        data_dir: folder with ``images/`` and ``masks/`` (and optional ``dataset.json``).
        labels: mapping overriding ``dataset.json`` (see :func:`load_label_mapping`).
        channels: ``1`` or ``3`` to convert every image to; ``None`` requires one count.

    Returns:
        A :class:`DatasetSummary` (``print`` it).

    Raises:
        DatasetError: every problem, one per line, each naming the file and the fix.

    Example:
        >>> print(validate_dataset("data/generated/binary_v1"))  # doctest: +SKIP
    """
    summary, *_ = _scan(data_dir, labels, channels, keep=False)
    return summary


def load_dataset(
    data_dir: str | Path,
    labels: LabelMapping | dict | str | Path | None = None,
    channels: int | None = None,
) -> LoadedDataset:
    """Validate, then decode the whole dataset once into memory.

    Args:
        data_dir, labels, channels: as for :func:`validate_dataset`.

    Returns:
        A :class:`LoadedDataset`: ``float32`` ``(H, W, C)`` images in ``[0, 1]`` and ``int32``
        ``(H, W)`` label maps (``-1`` = ignored), in stem order.

    Raises:
        DatasetError: as :func:`validate_dataset`.

    Example:
        >>> data = load_dataset("data/generated/binary_v1")  # doctest: +SKIP
        >>> data.images[0].shape, data.masks[0].dtype, data.mapping.class_names  # doctest: +SKIP
        ((128, 128, 1), dtype('int32'), ('background', 'membrane'))
    """
    summary, pairs, images, raws = _scan(data_dir, labels, channels, keep=True)
    out_images, out_masks = [], []
    for pair in pairs:
        out_images.append(
            _convert_channels(images.pop(pair.stem), summary.channels, pair.image_path)
        )
        out_masks.append(summary.mapping.encode(raws.pop(pair.stem), pair.mask_path))
    return LoadedDataset(
        out_images, out_masks, [p.stem for p in pairs], summary.mapping, summary.channels
    )


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------


def split_dataset(
    stems: list[str],
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    contiguous: bool = False,
    val_stems: list[str] | None = None,
    test_stems: list[str] | None = None,
) -> dict[str, list[str]]:
    """Deterministic train/val/test split of stems.

    Stems are first sorted (natural order), so the split depends only on the set of stems.
    A part given explicitly (``val_stems`` / ``test_stems``) is used as is; the other parts
    take ``round(fraction * n)`` stems (at least 1 when the fraction is > 0) from the rest:
    a seeded random draw, or with ``contiguous=True`` the last blocks of the sorted stems
    (``[train | val | test]``), since neighbouring slices of a stack are near-duplicates.

    Args:
        stems: all stems.
        val_fraction, test_fraction: shares of all stems, each in ``[0, 1)``.
        seed: seed of the random draw (unused when ``contiguous``).
        contiguous: take blocks at the end instead of a random draw.
        val_stems, test_stems: explicit stems for that part.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each in sorted order.

    Raises:
        ValueError: bad fractions, unknown/duplicate stems, overlapping lists, or an empty
            training set.

    Example:
        >>> split_dataset([f"s{i}" for i in range(10)], val_fraction=0.2, contiguous=True)
        {'train': ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'], 'val': ['s8', 's9'], 'test': []}
    """
    all_stems = sorted(stems, key=_natural_key)
    dup = sorted(s for s, c in Counter(all_stems).items() if c > 1)
    if dup:
        raise ValueError(f"duplicate stems: {dup[:10]}")
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    n = len(all_stems)
    known = set(all_stems)
    fixed: dict[str, list[str]] = {}
    for name, given in (("val", val_stems), ("test", test_stems)):
        if given is None:
            continue
        given = [str(s) for s in given]
        unknown = [s for s in given if s not in known]
        if unknown:
            raise ValueError(
                f"{name}_stems not in the dataset: {unknown[:10]}; "
                f"known stems look like {all_stems[:3]}"
            )
        fixed[name] = sorted(set(given), key=_natural_key)
    if "val" in fixed and "test" in fixed and set(fixed["val"]) & set(fixed["test"]):
        raise ValueError(
            f"stems in both val_stems and test_stems: "
            f"{sorted(set(fixed['val']) & set(fixed['test']))[:10]}"
        )

    def count(f: float) -> int:
        return 0 if f == 0 else max(1, round(f * n))

    taken = {s for v in fixed.values() for s in v}
    rest = [s for s in all_stems if s not in taken]
    if not contiguous:
        rest = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    out = dict(fixed)
    for name, f in (("test", test_fraction), ("val", val_fraction)):
        if name in out:
            continue
        k = count(f)
        if k > len(rest):
            raise ValueError(f"not enough stems for {name}_fraction={f} ({n} stems)")
        if contiguous:
            out[name], rest = rest[len(rest) - k :], rest[: len(rest) - k]
        else:
            out[name], rest = rest[:k], rest[k:]
    if not rest:
        raise ValueError(
            f"no stems left for training ({n} stems, val {len(out['val'])}, test "
            f"{len(out['test'])}); lower val_fraction/test_fraction or add data"
        )
    return {
        "train": sorted(rest, key=_natural_key),
        "val": sorted(out["val"], key=_natural_key),
        "test": sorted(out["test"], key=_natural_key),
    }
