"""Evaluation results as JSON and text: NaN-safe JSON, a per-image table, a report.

The package's JSON convention: an undefined score is NaN in memory and ``null`` in JSON
(:func:`to_jsonable`). The functions here take the result of
:func:`~unet_lib.evaluation.evaluate` or that dict read back from JSON.
"""

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unet_lib.fileio import write_text_atomic

__all__ = ["format_report", "per_image_table", "save_json", "to_jsonable"]


def _float(value) -> float:  # a score, with None (JSON null) read back as NaN
    return math.nan if value is None else float(value)


def to_jsonable(value):
    """A copy of ``value`` for ``json.dumps(..., allow_nan=False)``: NaN and infinities become
    ``None``, NumPy values Python numbers and lists, tuples lists, paths strings.

    Example:
        >>> to_jsonable({"dice": float("nan"), "n": np.int64(3)})
        {'dice': None, 'n': 3}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | np.generic):
        return to_jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str | int):  # bool is an int
        return value
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def save_json(result: dict, path) -> Path:
    """Write ``to_jsonable(result)`` to ``path`` as indented JSON, atomically; returns ``path``."""
    text = json.dumps(to_jsonable(result), indent=2, allow_nan=False)
    return write_text_atomic(path, text + "\n")


#: per_image_table's columns and the per-image record keys they come from
_ROW = (("dice", "mean_dice"), ("iou", "mean_iou"), ("pixel_accuracy",) * 2, ("rand_error",) * 2)


def _fmt(value, digits: int = 4) -> str:
    value = _float(value)
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def per_image_table(result: dict) -> list[dict]:
    """One flat row per image, worst first by the image's foreground Dice (NaN last).

    Rows ``{"stem", "dice", "iou", "pixel_accuracy", ["rand_error"], "dice_<class>"...}``
    (``dice`` / ``iou``: the image's foreground means), e.g. for ``pandas.DataFrame(rows)``.
    """
    rows = []
    for record in result["per_image"]:
        row = {"stem": record["stem"]}
        row.update({key: _float(record[name]) for key, name in _ROW if name in record})
        row.update({f"dice_{name}": _float(v) for name, v in record["dice"].items()})
        rows.append(row)
    return sorted(rows, key=lambda r: (math.isnan(r["dice"]), np.nan_to_num(r["dice"])))


def format_report(result: dict, *, worst: int = 3) -> str:
    """A plain-text report: per-class table, means, the ``worst`` and best images (``-``: NaN)."""
    names = list(result["per_class"])
    width = max(len("class"), *(len(n) for n in names))
    fg = result.get("foreground_classes", names)
    lines = [
        f"evaluation on {result['num_images']} image(s), {len(names)} classes "
        "(dataset-level: pixels pooled over all images)",
        f"  {'class':<{width}}    dice     iou  precision  recall   truth px    pred px",
    ]
    for name in names:
        c = result["per_class"][name]
        lines.append(
            f"  {name:<{width}}{'*' if name in fg else ' '}  {_fmt(c['dice'])}  "
            f"{_fmt(c['iou'])}     {_fmt(c['precision'])}  {_fmt(c['recall'])}  "
            f"{c['tp'] + c['fn']:>9}  {c['tp'] + c['fp']:>9}"
        )
    lines += [
        f"  mean Dice {_fmt(result['mean_dice'])}  mean IoU {_fmt(result['mean_iou'])}  "
        f"(* averaged: {', '.join(fg)})",
        f"  per-image mean Dice {_fmt(result.get('per_image_mean_dice'))}  "
        f"IoU {_fmt(result.get('per_image_mean_iou'))}",
        f"  pixel accuracy {_fmt(result['pixel_accuracy'])}  "
        f"(pixel error {_fmt(result['pixel_error'])})",
    ]
    if "rand_error" in result:
        lines.append(
            f"  Rand error {_fmt(result['rand_error'])}  (ISBI 2012 foreground-restricted, "
            "mean over images)"
        )
    rows = per_image_table(result)
    if worst > 0 and len(rows) > 1:
        shown = [f"{r['stem']} {_fmt(r['dice'])}" for r in rows if not math.isnan(r["dice"])]
        lines.append("  worst images: " + ", ".join(shown[:worst]))
        lines.append("  best images:  " + ", ".join(shown[::-1][:worst]))
    return "\n".join(lines)
