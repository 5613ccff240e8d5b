"""Label mappings: which raw mask grey values (or RGB colours) mean which class (the
``dataset.json`` form, read in :mod:`.folder`, else inferred from the values), to encode masks
into ``int32`` label maps and back. NumPy only. :class:`DatasetError`, the data layer's error,
lives here, in its lowest module.

Colour masks (CamVid, Cityscapes, LabelMeFacade) use one ``int`` per colour, packed as
``R * 65536 + G * 256 + B`` (:func:`pack_rgb`), so every count and check works on colours as on
grey values.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from unet_lib import IGNORE_LABEL

__all__ = ["DatasetError", "LabelMapping", "infer_label_mapping", "pack_rgb"]

#: The label mapping's file name in a dataset folder.
DATASET_JSON = "dataset.json"
#: The largest mask value (masks are 8- or 16-bit).
MAX_MASK_VALUE = 65535
#: The most classes inferred from raw values 0..K-1 without a ``dataset.json``.
MAX_INFERRED_CLASSES = 32
_MAX_COLOUR = 0xFFFFFF  # the largest packed colour, (255, 255, 255)
_UNKNOWN = -2  # lookup-table entry for raw values outside the mapping
#: A ``dataset.json`` to show in messages.
EXAMPLE_JSON = '{"labels": {"background": 0, "foreground": 255}}'


class DatasetError(ValueError):
    """Problems in a dataset (``problems``: one line each, naming the file and the fix)."""

    def __init__(self, problems: list[str] | str, header: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        n = len(self.problems)
        self.header = header or f"{n} problem{'s' if n != 1 else ''} in the dataset:"
        super().__init__("\n".join([self.header, *(f"  {p}" for p in self.problems)]))


def _as_int_value(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an integer grey value 0..{MAX_MASK_VALUE}, got {value!r}")
    if not 0 <= int(value) <= MAX_MASK_VALUE:
        raise ValueError(f"{what} must be in 0..{MAX_MASK_VALUE} (8- or 16-bit), got {value}")
    return int(value)


def _is_rgb(value: Any) -> bool:
    """True for an ``[R, G, B]`` list or tuple of integers in 0..255."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(c, int | np.integer) and not isinstance(c, bool) for c in value)
        and all(0 <= int(c) <= 255 for c in value)
    )


def _as_colour(value: Any, what: str) -> int:
    """A packed colour from ``[R, G, B]`` or an already packed ``int``."""
    if _is_rgb(value):
        return int(pack_rgb(np.array(value)))
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        if 0 <= int(value) <= _MAX_COLOUR:
            return int(value)
    raise ValueError(f"{what} must be an [R, G, B] colour with R, G, B in 0..255, got {value!r}")


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB values 0..255 -> ``int32`` ``(...)`` codes ``R * 65536 + G * 256 + B``:
    one integer per colour, the raw value of a colour mask.

    Example:
        >>> pack_rgb(np.array([[128, 0, 0], [0, 128, 128]], np.uint8)).tolist()
        [8388608, 32896]
    """
    rgb = np.asarray(rgb).astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


@dataclass(frozen=True)
class LabelMapping:
    """Which raw mask grey values mean which class: class ``k`` (label ``k``) is
    ``class_names[k]``, made of the raw values ``values[k]``; pixels equal to ``ignore_value``
    (or ``None``) become ``IGNORE_LABEL`` (``-1``). With ``colours=True`` the raw values are
    RGB colours: ``[R, G, B]`` triples or packed ``int`` codes (:func:`pack_rgb`), stored packed.

    Example:
        >>> m = LabelMapping.from_dict({"labels": {"background": 255, "membrane": 0}})
        >>> m.encode(np.array([[0, 255]], np.uint8)).tolist(), m.model_num_classes
        ([[1, 0]], 1)
    """

    class_names: tuple[str, ...]
    values: tuple[tuple[int, ...], ...]
    ignore_value: int | tuple[int, int, int] | None = None
    colours: bool = False

    def __post_init__(self):
        names = tuple(str(n) for n in self.class_names)
        raw = _as_colour if self.colours else _as_int_value
        values = tuple(
            tuple(raw(v, f"value of class {names[k] if k < len(names) else k!r}") for v in vs)
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
                raise ValueError(f"class {name!r} has no {self._what}s; give at least one")
            for v in vs:
                if v in seen:
                    raise ValueError(
                        f"{self._what} {self.format_value(v)} is given to both {seen[v]!r} and "
                        f"{name!r}; each value may mean one class only"
                    )
                seen[v] = name
        if self.ignore_value is not None:
            iv = raw(self.ignore_value, "ignore_value")
            if iv in seen:
                raise ValueError(
                    f"ignore_value {self.format_value(iv)} is also the value of class "
                    f"{seen[iv]!r}; pick another"
                )
            object.__setattr__(self, "ignore_value", iv)

    @property
    def _what(self) -> str:
        return "colour" if self.colours else "grey value"

    def format_value(self, value: int) -> str:
        """A raw value as written in messages: ``"128"``, or ``"(128, 0, 0)"`` for a colour."""
        if not self.colours:
            return str(int(value))
        v = int(value)
        return f"({v >> 16 & 255}, {v >> 8 & 255}, {v & 255})"

    @classmethod
    def from_dict(cls, d: dict) -> LabelMapping:
        """A mapping from the ``dataset.json`` form, e.g. ``{"labels": {"a": [0, 1], "b": 2},
        "ignore_value": 9}`` (``ignore_value`` optional, ``"description"`` unused), or just the
        inner dict; classes in dict order. A malformed dict raises ValueError naming the fix.

        Colour masks: every class an ``[R, G, B]`` list or a list of them, e.g. ``{"labels":
        {"void": [0, 0, 0], "building": [128, 0, 0]}, "ignore_value": [64, 64, 64]}``. Flat
        three-value lists that also read as valid grey values (no value repeated, no
        ``[R, G, B]`` ignore value) stay grey values, as before; write ``[[R, G, B]]`` there.
        """
        if not isinstance(d, dict):
            raise ValueError(
                f"a label mapping must be a dict like {EXAMPLE_JSON}, got {type(d).__name__}"
            )
        labels, ignore = d, None
        if "labels" in d:
            if not isinstance(d["labels"], dict):
                raise ValueError(
                    f'"labels" must map class names to grey values, e.g. {EXAMPLE_JSON}'
                )
            extra = sorted(set(d) - {"labels", "ignore_value", "description"})
            if extra:
                raise ValueError(
                    f"unknown key(s) {extra}; allowed: 'labels', 'ignore_value', 'description'"
                )
            labels, ignore = d["labels"], d.get("ignore_value")
        if not labels:
            raise ValueError('"labels" is empty; list the classes, e.g. {"background": 0, ...}')
        if _colour_form(labels, ignore):
            if ignore is not None and not _is_rgb(ignore):
                raise ValueError(f"ignore_value must be an [R, G, B] colour here, got {ignore!r}")
            values = [tuple(v) if not _is_rgb(v) else (v,) for v in labels.values()]
            return cls(tuple(labels), tuple(values), ignore, colours=True)
        values = [
            tuple(_as_int_value(x, f"value of class {name!r}") for x in _as_list(v))
            for name, v in labels.items()
        ]
        return cls(tuple(labels), tuple(values), ignore)

    def to_dict(self) -> dict:
        """The ``dataset.json`` form (single values unwrapped): ``{'labels': {'bg': 0, ...}}``;
        colours as ``[R, G, B]`` lists (``[[R, G, B]]`` where a flat list would read as grey)."""

        def form(v):
            return [v >> 16 & 255, v >> 8 & 255, v & 255] if self.colours else v

        for nest in (False, True):
            pairs = zip(self.class_names, self.values, strict=True)
            labels = {n: form(vs[0]) if len(vs) == 1 and not nest else [form(v) for v in vs]
                      for n, vs in pairs}  # fmt: skip
            d: dict[str, Any] = {"labels": labels}
            if self.ignore_value is not None:
                d["ignore_value"] = form(self.ignore_value)
            if not self.colours or _colour_form(labels, d.get("ignore_value")):
                return d
        raise AssertionError("unreachable: nested colour lists always read as colours")

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
        if self.colours:  # sorted packed colours, then their labels
            keys = np.array(sorted(self.known_values()), np.int64)
            index = {v: k for k, vs in enumerate(self.values) for v in vs}
            return np.stack([keys, [index.get(int(v), IGNORE_LABEL) for v in keys]])
        lut = np.full(max(self.known_values()) + 1, _UNKNOWN, np.int32)
        for k, vs in enumerate(self.values):
            lut[list(vs)] = k
        if self.ignore_value is not None:
            lut[self.ignore_value] = IGNORE_LABEL
        return lut

    def encode(self, raw_mask: np.ndarray, path: str | Path | None = None) -> np.ndarray:
        """Raw mask ``(H, W)`` or ``(H, W, 1)`` (colours: packed ``(H, W)`` or RGB
        ``(H, W, 3)``) -> ``int32`` label map ``(H, W)``, ignored pixels ``-1``; values outside
        the mapping raise a DatasetError naming ``path``."""
        raw = np.asarray(raw_mask)
        if raw.ndim == 3 and raw.shape[-1] == 1:
            raw = raw[..., 0]
        if self.colours:
            return self._encode_colours(raw, path)
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
        inside = not raw.size or (raw.min() >= 0 and raw.max() < lut.size)
        labels = lut[raw] if inside else None
        if not inside or (raw.size and labels.min() == _UNKNOWN):
            bad = set(np.unique(raw).tolist()) - self.known_values()
            raise DatasetError(self.unknown_message(path, bad))
        return labels

    def _encode_colours(self, raw: np.ndarray, path) -> np.ndarray:
        packed = pack_rgb(raw) if raw.ndim == 3 and raw.shape[-1] == 3 else raw.astype(np.int64)
        keys, labels = self._lut
        at = np.minimum(np.searchsorted(keys, packed), keys.size - 1)
        found = keys[at] == packed
        if not np.all(found):
            bad, counts = np.unique(packed[~found], return_counts=True)
            found = dict(zip(bad.tolist(), counts.tolist(), strict=True))
            raise DatasetError(self.unknown_message(path, set(found), found))
        return labels[at].astype(np.int32)

    def known_values(self) -> set[int]:
        """All raw values the mapping accepts (class values and the ignore value)."""
        known = {v for vs in self.values for v in vs}
        return known if self.ignore_value is None else known | {self.ignore_value}

    def unknown_message(self, path, bad: set[int], counts: dict[int, int] | None = None) -> str:
        """The problem line for a mask at ``path`` holding the unmapped values ``bad``; for a
        colour mapping with each colour's pixel count from ``counts`` (raw value -> pixels)."""
        if not self.colours:
            return (
                f"{path or 'mask'}: values {_fmt_values(bad)} are not in the label mapping "
                f"(known: {_fmt_values(self.known_values())}); add them to a class in "
                f'{DATASET_JSON} (or set "ignore_value"), or fix the mask'
            )
        counts = counts or {}
        shown = sorted(bad, key=lambda v: (-counts.get(v, 0), v))
        listed = ", ".join(
            self.format_value(v) + (f" {counts[v]} px" if v in counts else "") for v in shown[:10]
        )
        more = f", ... ({len(shown)} colours)" if len(shown) > 10 else ""
        return (
            f"{path or 'mask'}: colours (R, G, B) not in the label mapping: {listed}{more}; add "
            f'each to a class in {DATASET_JSON} as [R, G, B] (or set "ignore_value"), or fix '
            "the mask"
        )

    def decode(self, label_map: np.ndarray) -> np.ndarray:
        """Label map (any shape) -> ``uint8`` (``uint16`` above 255) raw grey values, each
        class's first value and ``ignore_value`` for ``IGNORE_LABEL``, e.g. to save it (colours:
        ``uint8`` RGB ``(..., 3)``). Labels outside ``0..K-1`` (or ``-1`` without an
        ``ignore_value``) raise ValueError."""
        labels = np.asarray(label_map)
        ignore = self.ignore_value
        firsts = [vs[0] for vs in self.values] + [0 if ignore is None else ignore]
        if self.colours:  # RGB (..., 3)
            lut = np.array([[v >> 16 & 255, v >> 8 & 255, v & 255] for v in firsts], np.uint8)
        else:
            lut = np.array(firsts, np.uint8 if max(firsts) <= 255 else np.uint16)
        lo = 0 if ignore is None else IGNORE_LABEL
        if labels.size and (labels.min() < lo or labels.max() >= self.num_classes):
            outside = np.unique(labels[(labels < lo) | (labels >= self.num_classes)])
            raise ValueError(
                f"label map holds values outside {lo}..{self.num_classes - 1}: "
                f"{_fmt_values(outside.tolist())}"
            )
        return lut[labels.astype(np.int64)]  # -1 indexes the last entry (the ignore value)


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _colour_form(labels: dict, ignore: Any) -> bool:
    """True when ``labels`` give colours: every class ``[R, G, B]`` or a list of them, with a
    nested list, an ``[R, G, B]`` ignore value, or flat lists that are no valid grey values."""
    nested = [isinstance(v, list | tuple) and not _is_rgb(v) for v in labels.values()]
    if not all(_is_rgb(v) or (n and v and all(map(_is_rgb, v))) for v, n in zip(
            labels.values(), nested, strict=True)):  # fmt: skip
        return False
    if any(nested) or _is_rgb(ignore):
        return True
    try:  # compatibility: three grey values per class, each value once, stay grey values
        LabelMapping(tuple(labels), tuple(tuple(v) for v in labels.values()), ignore)
    except ValueError:
        return True
    return False


def _fmt_values(values) -> str:
    vals = sorted(int(v) for v in values)
    more = f", ... ({len(vals)} values)" if len(vals) > 20 else ""
    return "{" + ", ".join(map(str, vals[:20])) + more + "}"


def suggested_json(values, colours: bool = False) -> str:
    """A ``dataset.json`` text for these raw values (the first 12; colours as ``[R, G, B]``)
    to show in an error, e.g. ``{"labels": {"background": 0, "foreground": 255}}``."""
    vals = sorted(values)
    if colours:
        vals = [[v >> 16 & 255, v >> 8 & 255, v & 255] for v in vals]
    if len(vals) == 2 and not colours:
        return json.dumps({"labels": {"background": vals[0], "foreground": vals[1]}})
    text = json.dumps({"labels": {f"class_{i}": v for i, v in enumerate(vals[:12])}})
    return text[:-2] + ", ...}}" if len(vals) > 12 else text


def infer_label_mapping(values: set[int], *, data_dir: str | Path | None = None) -> LabelMapping:
    """Guess the mapping from the set of raw values found in all masks: values within
    ``{0, 1}`` or ``{0, 255}`` are binary (``background`` = 0, ``foreground``); exactly
    ``{0, 1, ..., K-1}`` with ``K <= 32`` is ``K`` classes (``background``, ``class_1``, ...).
    Anything else (``0..255`` is a saved image far more often than 256 classes) raises a
    DatasetError listing the values and the ``dataset.json`` to write in ``data_dir``.
    """
    vals = {int(v) for v in values}
    for top in (1, 255):
        if vals and vals <= {0, top}:
            return LabelMapping(("background", "foreground"), ((0,), (top,)))
    k = len(vals)
    if 3 <= k <= MAX_INFERRED_CLASSES and vals == set(range(k)):
        names = ("background", *(f"class_{i}" for i in range(1, k)))
        return LabelMapping(names, tuple((i,) for i in range(k)))
    where = Path(data_dir) / DATASET_JSON if data_dir is not None else DATASET_JSON
    if not vals:
        raise DatasetError(f"{where}: no mask values found; cannot infer the classes")
    hint = (
        f"; more than {MAX_INFERRED_CLASSES} classes are never inferred (that many values "
        "suggests images saved as masks, or lossy JPEG masks: save masks as PNG with one grey "
        "value per class)"
    )
    raise DatasetError(
        f"{where}: masks hold the values {_fmt_values(vals)}, which are neither binary "
        f"({{0, 255}} or {{0, 1}}) nor 0..K-1 with K <= {MAX_INFERRED_CLASSES}"
        f"{hint * (k > MAX_INFERRED_CLASSES)}; write "
        f"{where} saying which value is which class, in class order (background first), e.g. "
        f"{suggested_json(vals)} (or pass labels=... / --labels)"
    )
