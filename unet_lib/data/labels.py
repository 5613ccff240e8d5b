"""Label mappings: which raw mask grey values mean which class, from ``dataset.json``.

How mask grey values map to classes comes from ``dataset.json`` beside ``images/`` (or the
``labels=`` argument), else it is inferred from the values found in the masks: ``{0, 255}``
or ``{0, 1}`` is binary, ``0 .. K-1`` is ``K`` classes. A :class:`LabelMapping` encodes raw
masks into ``int32`` label maps ``0 .. K-1`` (ignored pixels ``unet_lib.IGNORE_LABEL``,
``-1``) and decodes label maps back to grey values.

:class:`DatasetError`, the data layer's error (every problem in a dataset, each line naming
the file and the fix), is defined here because this is the lowest module of
``unet_lib.data``. NumPy only (no OpenCV, no TensorFlow).

Example:
    >>> infer_label_mapping({0, 255}).class_names
    ('background', 'foreground')
    >>> mapping = load_label_mapping("data/generated/binary_v1")  # doctest: +SKIP
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

__all__ = [
    "DatasetError",
    "LabelMapping",
    "infer_label_mapping",
    "load_label_mapping",
]

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
