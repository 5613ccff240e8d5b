"""Deterministic train/val/test splits of a dataset's stems, and their natural order.

Stems sort in natural order (``s2`` before ``s10``), both here and when pairing files in
:mod:`unet_lib.data.files`, so a split depends only on the set of stems. NumPy only.

Example:
    >>> split_dataset(["a", "b", "c", "d"], val_fraction=0.25, contiguous=True)
    {'train': ['a', 'b', 'c'], 'val': ['d'], 'test': []}
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

__all__ = ["split_dataset"]


def _natural_key(stem: str):
    """Sort key that orders ``s2`` before ``s10`` (zero-padded names sort as usual)."""
    return [(0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", stem)]


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
