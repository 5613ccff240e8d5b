"""Evaluation results as JSON and text: NaN-safe JSON, a per-image table, a report.

These functions read the result dict of :func:`unet_lib.evaluation.evaluator.evaluate` (or that dict
read back from JSON, where undefined scores are ``null``); :func:`save_json` writes it with
NaN as ``null``. NumPy only (no Keras).

Example:
    >>> save_json(result, "runs/a/evaluation.json")  # doctest: +SKIP
    >>> print(format_report(result))  # doctest: +SKIP
    >>> rows = per_image_table(result)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unet_lib.fileio import write_text_atomic

__all__ = ["format_report", "per_image_table", "save_json", "to_jsonable"]

_NAN = float("nan")


def _num(value) -> float:
    """A float, with ``None`` (JSON ``null``) read back as NaN."""
    return _NAN if value is None else float(value)


def to_jsonable(value):
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    NaN and infinities become ``None`` (JSON ``null``), NumPy scalars and arrays become
    Python numbers and lists, tuples become lists, paths become strings.

    Example:
        >>> to_jsonable({"dice": float("nan"), "n": np.int64(3)})
        {'dice': None, 'n': 3}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot write {type(value).__name__} as JSON: {value!r}")


def save_json(result: dict, path) -> Path:
    """Write an evaluation result as indented JSON, atomically (NaN written as ``null``).

    The text goes to a temporary file in the same folder, then ``os.replace`` moves it onto
    ``path``, so a reader never sees a half-written file.

    Args:
        result: The dict from :func:`evaluate` (or anything :func:`to_jsonable` accepts).
        path: Target file; its folder is created if needed.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> save_json(result, "runs/a/evaluation.json")  # doctest: +SKIP
    """
    text = json.dumps(to_jsonable(result), indent=2, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def _fmt(value, digits: int = 4) -> str:
    value = _num(value)
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def per_image_table(result: dict) -> list[dict]:
    """One flat row per image, worst first by the image's foreground Dice (NaN last).

    Args:
        result: The dict from :func:`evaluate` (or that dict read back from JSON).

    Returns:
        Rows ``{"stem", "dice", "iou", "pixel_accuracy", ["rand_error"], "dice_<class>"...}``
        where ``dice`` / ``iou`` are the image's foreground means and ``dice_<class>`` its
        per-class Dice; ``pandas.DataFrame(rows)`` makes a table of them.

    Example:
        >>> rows = per_image_table(result)  # doctest: +SKIP
        >>> rows[0]["stem"], rows[-1]["stem"]  # worst and best  # doctest: +SKIP
    """
    rows = []
    for record in result["per_image"]:
        row = {
            "stem": record["stem"],
            "dice": _num(record["mean_dice"]),
            "iou": _num(record["mean_iou"]),
            "pixel_accuracy": _num(record["pixel_accuracy"]),
        }
        if "rand_error" in record:
            row["rand_error"] = _num(record["rand_error"])
        row.update({f"dice_{name}": _num(v) for name, v in record["dice"].items()})
        rows.append(row)
    return sorted(
        rows, key=lambda r: (math.isnan(r["dice"]), 0.0 if math.isnan(r["dice"]) else r["dice"])
    )


def format_report(result: dict, *, worst: int = 3) -> str:
    """A plain-text report: per-class table, the means, and the worst and best images.

    Args:
        result: The dict from :func:`evaluate` (or read back from JSON).
        worst: How many of the worst (and best) images to list; 0 for none.

    Returns:
        Multi-line text (undefined values shown as ``-``).

    Example:
        >>> print(format_report(result))  # doctest: +SKIP
    """
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
        mark = "*" if name in fg else " "
        lines.append(
            f"  {name:<{width}}{mark}  {_fmt(c['dice'])}  {_fmt(c['iou'])}     "
            f"{_fmt(c['precision'])}  {_fmt(c['recall'])}  {c['tp'] + c['fn']:>9}  "
            f"{c['tp'] + c['fp']:>9}"
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
        k = min(worst, len(rows))
        shown = [r for r in rows if not math.isnan(r["dice"])]
        lines.append(
            "  worst images: " + ", ".join(f"{r['stem']} {_fmt(r['dice'])}" for r in shown[:k])
        )
        best = shown[::-1][:k]
        lines.append("  best images:  " + ", ".join(f"{r['stem']} {_fmt(r['dice'])}" for r in best))
    return "\n".join(lines)
