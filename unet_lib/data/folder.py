"""Dataset folders: validation (every problem at once) and loading into memory.

A dataset is a folder with ``images/`` and ``masks/`` whose files are paired by stem
(``images/a.tif`` with ``masks/a.png``). Images become ``float32`` ``(H, W, C)`` in
``[0, 1]``; masks become ``int32`` ``(H, W)`` label maps ``0 .. K-1`` with ignored pixels
set to ``unet_lib.IGNORE_LABEL`` (``-1``). How mask grey values map to classes comes from
``dataset.json`` beside ``images/`` (or the ``labels=`` argument), else it is inferred:
``{0, 255}`` or ``{0, 1}`` is binary, ``0 .. K-1`` is ``K`` classes.

Every problem in a folder is collected and reported at once in a :class:`DatasetError`,
each line naming the file and the fix. NumPy and OpenCV only (no TensorFlow).

The parts live in their own modules and are re-exported here, so this module keeps its
whole public surface: :mod:`~unet_lib.data.labels` (``LabelMapping``, ``dataset.json``,
``DatasetError``), :mod:`~unet_lib.data.files` (``find_pairs``, ``read_image``,
``read_mask``) and :mod:`~unet_lib.data.splits` (``split_dataset``).

Example:
    >>> summary = validate_dataset("data/generated/binary_v1")  # doctest: +SKIP
    >>> data = load_dataset("data/generated/binary_v1")  # doctest: +SKIP
    >>> splits = split_dataset(data.stems, val_fraction=0.2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet_lib.data.files import (
    IMAGE_EXTENSIONS,
    Pair,
    _check_channels,
    _convert_channels,
    _find_pairs,
    _read_native,
    find_pairs,
    read_image,
    read_mask,
)
from unet_lib.data.labels import (
    _DATASET_JSON,
    _MAX_MASK_VALUE,
    DatasetError,
    LabelMapping,
    infer_label_mapping,
    load_label_mapping,
)
from unet_lib.data.splits import split_dataset

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
