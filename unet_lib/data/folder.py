"""Dataset folders (``images/`` and ``masks/`` paired by stem, optional ``dataset.json``):
reading ``dataset.json``, validation (every problem at once) and loading into memory. The
public names of ``files``, ``labels`` and ``splits`` are re-exported here.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import files
from .files import (
    IMAGE_EXTENSIONS,
    Pair,
    count_pages,
    find_pairs,
    list_images,
    page_stems,
    read_image,
    read_labels,
    read_mask,
)
from .labels import (
    DATASET_JSON,
    EXAMPLE_JSON,
    MAX_MASK_VALUE,
    DatasetError,
    LabelMapping,
    infer_label_mapping,
    pack_rgb,
    suggested_json,
)
from .splits import split_dataset

__all__ = ["IMAGE_EXTENSIONS", "Pair", "count_pages", "find_pairs", "list_images", "read_image"]
__all__ += ["page_stems", "read_labels", "read_mask", "pack_rgb", "DatasetError", "LabelMapping"]
__all__ += ["infer_label_mapping", "load_label_mapping", "DatasetSummary", "validate_dataset"]
__all__ += ["LoadedDataset", "load_dataset", "split_dataset"]

_SOURCE_TEXT = {
    "argument": "from the labels argument",
    DATASET_JSON: f"from {DATASET_JSON}",
    "inferred": "inferred from the mask values",
}


@dataclass
class DatasetSummary:
    """What :func:`validate_dataset` found in a valid dataset (``print`` it): ``sizes``
    ``(H, W)`` -> number of pairs; ``channels`` after conversion; ``class_pixel_shares``: class
    -> share of the labelled pixels; ``ignored_share`` of all pixels; ``mapping_source``
    (``"argument"``, ``"dataset.json"`` or ``"inferred"``); ``stored_channels``: stored count
    (alpha dropped) -> number of images; ``stacks``: multi-page image file -> its pages."""

    data_dir: Path
    num_pairs: int
    sizes: dict[tuple[int, int], int]
    channels: int
    mapping: LabelMapping
    class_pixel_shares: dict[str, float]
    ignored_share: float = 0.0
    mapping_source: str = "inferred"
    stored_channels: dict[int, int] = field(default_factory=dict)
    stacks: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        """Human-readable multi-line summary."""
        m = self.mapping
        sizes = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sorted(self.sizes.items()))
        stored = ", ".join(f"{c}: {n}" for c, n in sorted(self.stored_channels.items()))
        conv = "" if set(self.stored_channels) <= {self.channels} else f" (converted from {stored})"
        lines = [
            f"dataset {self.data_dir}: OK",
            f"  pairs:    {self.num_pairs}",
            *[f"  stacks:   {_stacks_text(self.stacks)}  (one pair per page)"] * bool(self.stacks),
            f"  sizes:    {sizes}  (H x W, number of pairs)",
            f"  channels: {self.channels}{conv}",
            f"  classes:  {m.num_classes}, {'binary' if m.is_binary else 'multi-class'}, mapping "
            + _SOURCE_TEXT.get(self.mapping_source, self.mapping_source),
        ]
        width = max(len(n) for n in m.class_names)
        what = "colours" if m.colours else "values"
        for k, (name, vs) in enumerate(zip(m.class_names, m.values, strict=True)):
            share = self.class_pixel_shares.get(name, 0.0)
            vals = ", ".join(map(m.format_value, vs))
            lines.append(
                f"    {k}  {name:<{width}}  {100 * share:6.2f} % of pixels  (mask {what} {vals})"
            )
        if m.ignore_value is not None:
            share = f"{100 * self.ignored_share:.2f} % of pixels"
            lines.append(
                f"    ignored (mask {what[:-1]} {m.format_value(m.ignore_value)}): {share}"
            )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    @property
    def warnings(self) -> list[str]:
        """Classes no mask holds: one line each (all but one empty: one line for the set); a
        class named background that is not class 0 (Dice would score it as the foreground)."""
        names = list(self.mapping.class_names)
        lines = []
        lower = [n.lower() for n in names]
        if "background" in lower[1:]:
            k = lower.index("background")
            lines.append(f"class {names[k]!r} is class {k}, so Dice scores it as a foreground "
                         f"class and {names[0]!r} as the background; list it first in "
                         "dataset.json")  # fmt: skip
        empty = [n for n in names if self.class_pixel_shares.get(n, 0) == 0]
        present = [n for n in names if n not in empty]
        if len(present) == 1:
            return [*lines, f"every mask holds only class {present[0]!r}: there is nothing to "
                    "learn (validation Dice stays 0); check the masks or dataset.json"]  # fmt: skip
        return lines + [f"class {n!r} has no pixels in any mask: the model cannot learn it; "
                        "add examples or remove it from dataset.json" for n in empty]  # fmt: skip

    def __str__(self) -> str:
        return self.format()


def _stacks_text(stacks: dict[str, int]) -> str:
    shown = [f"{name} ({n} pages)" for name, n in list(stacks.items())[:5]]
    return ", ".join(shown) + (f", ... ({len(stacks)} stacks)" if len(stacks) > 5 else "")


@dataclass
class LoadedDataset:
    """A decoded dataset: ``float32`` ``(H, W, C)`` images in ``[0, 1]`` and ``int32`` label
    maps (ignored ``-1``) parallel to ``stems``, with its ``mapping`` and image ``channels``."""

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
        images, masks = [self.images[i] for i in idx], [self.masks[i] for i in idx]
        return LoadedDataset(images, masks, list(stems), self.mapping, self.channels)


def _collect(problems: list[str], read, *args, **kwargs):
    """``read(*args, **kwargs)``, or ``None`` after adding its DatasetError's problems."""
    try:
        return read(*args, **kwargs)
    except DatasetError as e:
        problems.extend(e.problems)
        return None


def _value_counts(mask: np.ndarray) -> dict[int, int]:
    """Raw mask value -> number of pixels."""
    flat = mask.ravel()
    if flat.size and flat.max() <= MAX_MASK_VALUE:
        counts = np.bincount(flat)
        values = np.flatnonzero(counts)
        counts = counts[values]
    else:
        values, counts = np.unique(flat, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def _read_pairs(pairs: list[Pair], problems: list[str], keep: bool, colours: bool):
    """Images and raw masks (when ``keep``), value counts, stored channels and size tally;
    colour masks read without a colour mapping become one problem."""
    images, raws, counts, native_c, sizes = {}, {}, {}, {}, Counter()
    rgb: dict[Path, set] = {}  # colour masks without a colour mapping -> their colours
    for pair in pairs:
        img = _collect(problems, files.read_stored_image, pair.image_path, pair.page)
        found = _collect(problems, files.mask_values, pair.mask_path, pair.page, colours)
        mask, packed = found if found is not None else (None, False)
        if img is not None:
            native_c[pair.stem] = img.shape[2]
        if packed and not colours:
            rgb.setdefault(pair.mask_path, set()).update(np.unique(mask).tolist())
        elif mask is not None:
            counts[pair.stem] = _value_counts(mask)
        if img is not None and mask is not None:
            if img.shape[:2] != mask.shape:
                page = "" if pair.page is None else f" page {pair.page}"
                problems.append(
                    f"{pair.image_path}{page}: size {img.shape[0]}x{img.shape[1]} (HxW) differs "
                    f"from its mask {pair.mask_path} {mask.shape[0]}x{mask.shape[1]}; "
                    "resize or crop one of them"
                )
            else:
                sizes[img.shape[:2]] += 1
        if keep:
            images[pair.stem], raws[pair.stem] = img, mask
    if rgb:
        problems.append(_colour_problem(rgb))
    return images, raws, counts, native_c, sizes


def _colour_problem(rgb: dict[Path, set]) -> str:
    """The one line for colour masks read without a colour mapping: how to write it."""
    first, colours = next(iter(rgb)), set().union(*rgb.values())
    where = first.parent.parent / DATASET_JSON
    return (
        f"{first}: colour (RGB) mask ({len(rgb)} such masks, {len(colours)} colours); map the "
        f"colours to classes in {where}, e.g. {suggested_json(colours, colours=True)} "
        "([R, G, B] lists, background first), or save masks with one grey value per class"
    )


def _channel_target(channels, native_c: dict, pairs: list[Pair], problems: list[str]):
    """The channel count to load (``channels``, else the most common) and its problems."""
    if not native_c:
        return channels
    path = {p.stem: p.image_path for p in pairs}
    if channels is not None:
        for stem, c in native_c.items():
            if c != channels and not ({c, channels} <= {1, 3}):
                problems.append(
                    f"{path[stem]}: cannot convert {c} channels to {channels}; only grey <-> "
                    "RGB conversion is supported"
                )
        return channels
    major, n_major = Counter(native_c.values()).most_common(1)[0]
    for stem, c in native_c.items():
        if c != major:
            problems.append(
                f"{path[stem]}: has {c} channel(s) but {n_major} of {len(native_c)} images have "
                f"{major}; pass channels={major} (--channels {major}) to convert all images"
            )
    return major


def _check_values(mapping, data_dir, pairs, counts, problems):
    """The mapping (inferred when None), each mask with values it does not know a problem."""
    if mapping is None and counts:
        values = set().union(*counts.values())
        mapping = _collect(problems, infer_label_mapping, values, data_dir=data_dir)
    if mapping is not None:
        known = mapping.known_values()
        for pair in pairs:
            found = counts.get(pair.stem, {})
            if bad := set(found) - known:
                where = (
                    pair.mask_path if pair.page is None else f"{pair.mask_path} page {pair.page}"
                )
                problems.append(mapping.unknown_message(where, bad, found))
    return mapping


def _shares(mapping: LabelMapping, counts: dict) -> tuple[dict[str, float], float]:
    """Each class's share of the labelled pixels, and the ignored share of all pixels."""
    k = mapping.num_classes  # pixels[k]: the ignored ones
    index = {v: i for i, vs in enumerate(mapping.values) for v in vs} | {mapping.ignore_value: k}
    pixels = np.zeros(k + 1, np.int64)
    for found in counts.values():
        for v, c in found.items():
            pixels[index[v]] += c
    labelled = max(int(pixels[:k].sum()), 1)
    shares = {n: float(c) / labelled for n, c in zip(mapping.class_names, pixels[:k], strict=True)}
    return shares, int(pixels[k]) / max(int(pixels.sum()), 1)


def _scan(data_dir, labels, channels, keep: bool):
    """Read everything, collect every problem; return the pieces for summary/loading."""
    files.check_channels(channels)
    data_dir = Path(data_dir)
    pairs, problems = files.collect_pairs(data_dir)
    before = len(problems)
    mapping = _collect(problems, load_label_mapping, data_dir, labels)
    readable = len(problems) == before  # the given mapping (if any) could be read
    source = "inferred" if mapping is None else "argument" if labels is not None else DATASET_JSON
    colours = mapping is not None and mapping.colours
    images, raws, counts, native_c, sizes = _read_pairs(pairs, problems, keep, colours)
    target = _channel_target(channels, native_c, pairs, problems)
    if readable:
        mapping = _check_values(mapping, data_dir, pairs, counts, problems)
    if problems:
        n = len(problems)
        raise DatasetError(
            problems,
            header=f"dataset {data_dir}: {n} problem{'s' * (n != 1)} "
            "(fix them all, then run check again):",
        )
    shares, ignored = _shares(mapping, counts)
    stored = dict(Counter(native_c.values()))
    stacks = dict(Counter(p.image_path.name for p in pairs if p.page is not None))
    summary = DatasetSummary(
        data_dir, len(pairs), dict(sizes), int(target), mapping, shares, ignored, source, stored,
        stacks,
    )  # fmt: skip
    return summary, pairs, images, raws


def validate_dataset(
    data_dir: str | Path,
    labels: LabelMapping | dict | str | Path | None = None,
    channels: int | None = None,
) -> DatasetSummary:
    """Check a dataset folder completely before training; returns a :class:`DatasetSummary`
    (``print`` it). ``labels`` overrides ``dataset.json`` (see :func:`load_label_mapping`);
    ``channels``: ``1`` or ``3`` converts every image, ``None`` requires one count.

    Every problem (missing or empty ``images/``/``masks/``, unpaired, unreadable or truncated
    files, size mismatches, mask values outside the mapping or not inferable, mixed channel
    counts) is collected into one :class:`DatasetError`, a line each.
    """
    summary, *_ = _scan(data_dir, labels, channels, keep=False)
    _warn(summary)
    return summary


def _warn(summary: DatasetSummary) -> None:
    for line in summary.warnings:
        warnings.warn(f"{summary.data_dir}: {line}", UserWarning, stacklevel=3)


def load_dataset(
    data_dir: str | Path,
    labels: LabelMapping | dict | str | Path | None = None,
    channels: int | None = None,
) -> LoadedDataset:
    """Validate (arguments and errors as :func:`validate_dataset`), then decode the whole
    dataset once into memory, in stem order.

    Example:
        >>> load_dataset("data/generated/binary_v1").images[0].shape  # doctest: +SKIP
        (128, 128, 1)
    """
    summary, pairs, images, raws = _scan(data_dir, labels, channels, keep=True)
    _warn(summary)
    mapping, channels = summary.mapping, summary.channels
    images = [files.convert_channels(images.pop(p.stem), channels, p.image_path) for p in pairs]
    masks = [mapping.encode(raws.pop(p.stem), p.mask_path) for p in pairs]
    return LoadedDataset(images, masks, [p.stem for p in pairs], mapping, channels)


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
            raise DatasetError(
                f"{source}: not valid JSON ({e}); write e.g. '{EXAMPLE_JSON}'"
            ) from None
    elif isinstance(labels, str | Path):
        path = Path(labels)
        if not path.is_file():
            raise DatasetError(
                f"{path}: labels file not found; give a JSON file or a JSON string such as "
                f"'{EXAMPLE_JSON}'"
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
        raise DatasetError(f"{path}: not valid JSON ({e}); fix it, e.g. {EXAMPLE_JSON}") from None
