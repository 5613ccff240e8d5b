"""Label mappings: which raw mask grey values mean which class (``dataset.json``, else
inferred from the values), to encode masks into ``int32`` label maps and back. NumPy only.
:class:`DatasetError`, the data layer's error, lives here, in its lowest module.
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

__all__ = ["DatasetError", "LabelMapping", "infer_label_mapping", "load_label_mapping"]

#: The label mapping's file name in a dataset folder.
DATASET_JSON = "dataset.json"
#: The largest mask value (masks are 8- or 16-bit).
MAX_MASK_VALUE = 65535
_UNKNOWN = -2  # lookup-table entry for raw values outside the mapping
_EXAMPLE = '{"labels": {"background": 0, "foreground": 255}}'


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


@dataclass(frozen=True)
class LabelMapping:
    """Which raw mask grey values mean which class: class ``k`` (label ``k``) is
    ``class_names[k]``, made of the raw values ``values[k]``; pixels equal to ``ignore_value``
    (or ``None``) become ``IGNORE_LABEL`` (``-1``).

    Example:
        >>> m = LabelMapping.from_dict({"labels": {"background": 255, "membrane": 0}})
        >>> m.encode(np.array([[0, 255]], np.uint8)).tolist(), m.model_num_classes
        ([[1, 0]], 1)
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
        """A mapping from the ``dataset.json`` form, e.g. ``{"labels": {"a": [0, 1], "b": 2},
        "ignore_value": 9}`` (``ignore_value`` optional, ``"description"`` unused), or just the
        inner dict; classes in dict order. A malformed dict raises ValueError naming the fix.
        """
        if not isinstance(d, dict):
            raise ValueError(
                f"a label mapping must be a dict like {_EXAMPLE}, got {type(d).__name__}"
            )
        labels, ignore = d, None
        if "labels" in d:
            if not isinstance(d["labels"], dict):
                raise ValueError(f'"labels" must map class names to grey values, e.g. {_EXAMPLE}')
            extra = sorted(set(d) - {"labels", "ignore_value", "description"})
            if extra:
                raise ValueError(
                    f"unknown key(s) {extra}; allowed: 'labels', 'ignore_value', 'description'"
                )
            labels, ignore = d["labels"], d.get("ignore_value")
        if not labels:
            raise ValueError('"labels" is empty; list the classes, e.g. {"background": 0, ...}')
        values = [
            tuple(_as_int_value(x, f"value of class {name!r}") for x in _as_list(v))
            for name, v in labels.items()
        ]
        return cls(tuple(labels), tuple(values), ignore)

    def to_dict(self) -> dict:
        """The ``dataset.json`` form (single values unwrapped): ``{'labels': {'bg': 0, ...}}``."""
        pairs = zip(self.class_names, self.values, strict=True)
        d: dict[str, Any] = {"labels": {n: vs[0] if len(vs) == 1 else list(vs) for n, vs in pairs}}
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
        lut = np.full(max(self.known_values()) + 1, _UNKNOWN, np.int32)
        for k, vs in enumerate(self.values):
            lut[list(vs)] = k
        if self.ignore_value is not None:
            lut[self.ignore_value] = IGNORE_LABEL
        return lut

    def encode(self, raw_mask: np.ndarray, path: str | Path | None = None) -> np.ndarray:
        """Raw mask ``(H, W)`` or ``(H, W, 1)`` -> ``int32`` label map ``(H, W)``, ignored
        pixels ``-1``; values outside the mapping raise a DatasetError naming ``path``."""
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
        inside = not raw.size or (raw.min() >= 0 and raw.max() < lut.size)
        labels = lut[raw] if inside else None
        if not inside or (raw.size and labels.min() == _UNKNOWN):
            bad = set(np.unique(raw).tolist()) - self.known_values()
            raise DatasetError(self.unknown_message(path, bad))
        return labels

    def known_values(self) -> set[int]:
        """All raw values the mapping accepts (class values and the ignore value)."""
        known = {v for vs in self.values for v in vs}
        return known if self.ignore_value is None else known | {self.ignore_value}

    def unknown_message(self, path, bad: set[int]) -> str:
        """The problem line for a mask at ``path`` holding the unmapped values ``bad``."""
        return (
            f"{path or 'mask'}: values {_fmt_values(bad)} are not in the label mapping "
            f"(known: {_fmt_values(self.known_values())}); add them to a class in "
            f'{DATASET_JSON} (or set "ignore_value"), or fix the mask'
        )

    def decode(self, label_map: np.ndarray) -> np.ndarray:
        """Label map (any shape) -> ``uint8`` (``uint16`` above 255) raw grey values, each
        class's first value and ``ignore_value`` for ``IGNORE_LABEL``, e.g. to save it. Labels
        outside ``0..K-1`` (or ``-1`` without an ``ignore_value``) raise ValueError."""
        labels = np.asarray(label_map)
        ignore = self.ignore_value
        firsts = [vs[0] for vs in self.values] + [0 if ignore is None else ignore]
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


def _fmt_values(values) -> str:
    vals = sorted(int(v) for v in values)
    more = f", ... ({len(vals)} values)" if len(vals) > 20 else ""
    return "{" + ", ".join(map(str, vals[:20])) + more + "}"


def _suggested_json(values: set[int]) -> str:
    vals = sorted(values)
    if len(vals) == 2:
        return json.dumps({"labels": {"background": vals[0], "foreground": vals[1]}})
    text = json.dumps({"labels": {f"class_{i}": v for i, v in enumerate(vals[:12])}})
    return text[:-2] + ", ...}}" if len(vals) > 12 else text


def infer_label_mapping(values: set[int], *, data_dir: str | Path | None = None) -> LabelMapping:
    """Guess the mapping from the set of raw values found in all masks: values within
    ``{0, 1}`` or ``{0, 255}`` are binary (``background`` = 0, ``foreground``); exactly
    ``{0, 1, ..., K-1}`` is ``K`` classes (``background``, ``class_1``, ...). Anything else
    raises a DatasetError listing the values and the ``dataset.json`` to write in ``data_dir``.
    """
    vals = {int(v) for v in values}
    for top in (1, 255):
        if vals and vals <= {0, top}:
            return LabelMapping(("background", "foreground"), ((0,), (top,)))
    k = len(vals)
    if k >= 3 and vals == set(range(k)):
        names = ("background", *(f"class_{i}" for i in range(1, k)))
        return LabelMapping(names, tuple((i,) for i in range(k)))
    where = Path(data_dir) / DATASET_JSON if data_dir is not None else DATASET_JSON
    if not vals:
        raise DatasetError(f"{where}: no mask values found; cannot infer the classes")
    hint = (
        " (that many values suggests images saved as masks, or lossy JPEG masks: "
        "save masks as PNG with one grey value per class)"
    )
    raise DatasetError(
        f"{where}: masks hold the values {_fmt_values(vals)}{hint * (len(vals) > 32)}, which "
        f"are neither binary ({{0, 255}} or {{0, 1}}) nor 0..K-1; write {where} saying which "
        "value is which class, in class order (background first), e.g. "
        f"{_suggested_json(vals)} (or pass labels=... / --labels)"
    )


def load_label_mapping(
    data_dir: str | Path, labels: LabelMapping | dict | str | Path | None = None
) -> LabelMapping | None:
    """The mapping given as ``labels`` (a :class:`LabelMapping`, a dict in the ``dataset.json``
    form, a JSON string starting with ``{`` or the path of a JSON file), else the one in
    ``data_dir/dataset.json``, else ``None``. An unreadable or malformed JSON file or string
    raises a DatasetError naming it and the fix."""
    if isinstance(labels, LabelMapping):
        return labels
    source = "labels argument"
    if labels is None:
        path = Path(data_dir) / DATASET_JSON
        if not path.is_file():
            return None
        source, d = str(path), _read_json(path)
    elif isinstance(labels, dict):
        d = labels
    elif isinstance(labels, str) and labels.lstrip().startswith("{"):
        try:
            d = json.loads(labels)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{source}: not valid JSON ({e}); write e.g. '{_EXAMPLE}'") from None
    elif isinstance(labels, str | Path):
        path = Path(labels)
        if not path.is_file():
            raise DatasetError(
                f"{path}: labels file not found; give a JSON file or a JSON string such as "
                f"'{_EXAMPLE}'"
            )
        source, d = str(path), _read_json(path)
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
        raise DatasetError(f"{path}: not valid JSON ({e}); fix it, e.g. {_EXAMPLE}") from None
