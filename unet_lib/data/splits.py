"""Deterministic train/val/test splits of a dataset's stems, in natural order (``s2``
before ``s10``, as when pairing files)."""

import re
from collections import Counter

import numpy as np

__all__ = ["split_dataset"]


def natural_key(stem: str):
    """Sort key that orders ``s2`` before ``s10`` (zero-padded names sort as usual)."""
    return [(0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", stem)]


def _explicit_parts(all_stems: list[str], val_stems, test_stems, fractions) -> dict:
    """Checks the arguments; returns the parts given as stem lists."""
    dup = sorted(s for s, c in Counter(all_stems).items() if c > 1)
    if dup:
        raise ValueError(f"duplicate stems: {dup[:10]}")
    for name, f in zip(("val_fraction", "test_fraction"), fractions, strict=True):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    known, fixed = set(all_stems), {}
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
        fixed[name] = sorted(set(given), key=natural_key)
    both = set(fixed.get("val", ())) & set(fixed.get("test", ()))
    if both:
        raise ValueError(f"stems in both val_stems and test_stems: {sorted(both)[:10]}")
    return fixed


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
    """Deterministic ``{"train": [...], "val": [...], "test": [...]}`` split of stems (each in
    natural order; it depends only on the set of stems). A part given as ``val_stems`` /
    ``test_stems`` is used as is; the others take ``round(fraction * n)`` stems (at least 1
    when the fraction, in ``[0, 1)``, is > 0) from the rest: a draw seeded by ``seed``, or with
    ``contiguous=True`` the last blocks of the sorted stems (``[train | val | test]``: neighbour
    slices of a stack are near-duplicates). Bad arguments or an empty train set raise ValueError.

    Example:
        >>> split_dataset([f"s{i}" for i in range(10)], val_fraction=0.2, contiguous=True)
        {'train': ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7'], 'val': ['s8', 's9'], 'test': []}
    """
    all_stems = sorted(stems, key=natural_key)
    n = len(all_stems)
    out = _explicit_parts(all_stems, val_stems, test_stems, (val_fraction, test_fraction))
    taken = {s for v in out.values() for s in v}
    rest = [s for s in all_stems if s not in taken]
    if not contiguous:
        rest = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    for name, f in (("test", test_fraction), ("val", val_fraction)):
        if name in out:
            continue
        k = 0 if f == 0 else max(1, round(f * n))
        if k > len(rest):
            raise ValueError(f"not enough stems for {name}_fraction={f} ({n} stems)")
        cut = len(rest) - k if contiguous else k
        out[name], rest = (rest[cut:], rest[:cut]) if contiguous else (rest[:cut], rest[cut:])
    if not rest:
        raise ValueError(
            f"no stems left for training ({n} stems, val {len(out['val'])}, test "
            f"{len(out['test'])}); lower val_fraction/test_fraction or add data"
        )
    parts = {"train": rest, "val": out["val"], "test": out["test"]}
    return {name: sorted(part, key=natural_key) for name, part in parts.items()}
