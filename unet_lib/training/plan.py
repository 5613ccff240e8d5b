"""Self-configuration (nnU-Net's idea for 2-D U-Nets): :func:`fingerprint` summarises a
dataset, :func:`plan_training` derives :class:`~unet_lib.training.TrainConfig` values from it,
the device and the time budget, each with its reason, e.g.
``describe_plan(plan_training(fingerprint(folder), time_budget_minutes=25))``; ``train``
applies them to every option not given and records them in ``config.json``."""

import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np

# Pixels per training step (docs/design.md: why 4 x 256^2 on a CPU)
CPU_PIXELS_PER_STEP = 4 * 256 * 256
GPU_PIXELS_PER_STEP = 16 * 512 * 512
CPU_PATCH = 256
GPU_PATCH = 512
VALIDATION_SHARE = 0.1  # epochs long enough that validation costs <= ~10 % of training
MAX_STEPS_PER_EPOCH = 250  # nnU-Net's epoch length
RARE_CLASS = 0.05  # foreground classes under this share of pixels get patch oversampling
LAYOUT_BANDS = 8  # rows (columns) are cut into this many bands to measure the layout
CANONICAL = 0.1  # layout information from which an axis has a canonical direction
MANY_CLASSES = 6  # from this many classes: weighted cross-entropy instead of Dice + CE
DIM_RANGE = 0.25  # images whose 99.5th percentile is under this share of the stored range
_SAMPLE_IMAGES = 32  # object sizes are measured on at most this many masks


@dataclass(frozen=True)
class DatasetFingerprint:
    """What the data looks like, as far as training choices are concerned: sizes ``(H, W)``
    (``min_size`` per axis); intensities per channel in ``[0, 1]`` (percentiles 0.5, 99.5);
    each class's share of the labelled pixels; per foreground class the median
    ``sqrt(4 area / pi)`` of its components and twice the mean distance from a class pixel to
    the nearest other pixel; ``is_stack``: numbered stems (a random split would leak);
    ``layout_rows`` / ``layout_columns``: :func:`layout_information` by rows and columns
    (photographs with a canonical up score high by rows)."""

    num_pairs: int
    median_size: tuple[int, int]
    min_size: tuple[int, int]
    channels: int
    intensity_mean: list[float]
    intensity_std: list[float]
    intensity_percentiles: list[list[float]]
    class_names: list[str]
    class_fractions: list[float]
    object_diameter: dict[str, float]
    object_width: dict[str, float]
    is_stack: bool
    layout_rows: float = 0.0
    layout_columns: float = 0.0

    @property
    def canonical_up(self) -> bool:
        """Where a pixel's row tells its class (sky on top): no upside-down augmentation."""
        return self.layout_rows >= CANONICAL

    @property
    def canonical_sides(self) -> bool:
        """Where a pixel's column tells its class: no left-right mirrors either."""
        return self.layout_columns >= CANONICAL

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingPlan:
    """Derived :class:`~unet_lib.training.TrainConfig` values and why each was chosen."""

    options: dict = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def choose(self, key: str, value, reason: str) -> None:
        self.options[key], self.reasons[key] = value, reason


def fingerprint(dataset) -> DatasetFingerprint:
    """The :class:`DatasetFingerprint` of a :class:`~unet_lib.data.LoadedDataset` (or of a
    folder, loaded with its ``dataset.json``); object sizes use at most 32 masks."""
    if not hasattr(dataset, "images"):
        from unet_lib.data import load_dataset

        dataset = load_dataset(dataset)
    if len(dataset) == 0:
        raise ValueError("the dataset is empty: nothing to fingerprint")
    shapes = np.array([m.shape[:2] for m in dataset.masks])
    channels = int(dataset.channels)
    flat = [img.reshape(-1, channels) for img in dataset.images]  # pooled over every pixel
    total = sum(len(f) for f in flat)
    mean = sum(f.sum(0, dtype=np.float64) for f in flat) / total
    std = np.sqrt(sum(((f - mean) ** 2).sum(0, dtype=np.float64) for f in flat) / total)
    sample = _evenly_spaced(len(dataset), _SAMPLE_IMAGES)
    pixels = np.concatenate([flat[i] for i in sample])
    percentiles = np.percentile(pixels, [0.5, 99.5], axis=0).T
    names = list(dataset.mapping.class_names)
    k = len(names)
    counts = sum(np.bincount(m[m >= 0].ravel(), minlength=k)[:k] for m in dataset.masks)
    fractions = counts / max(1, counts.sum())
    diameters, widths = _object_sizes([dataset.masks[i] for i in sample], names)
    return DatasetFingerprint(
        num_pairs=len(dataset),
        median_size=tuple(int(v) for v in np.median(shapes, axis=0)),
        min_size=tuple(int(v) for v in shapes.min(axis=0)),
        channels=channels,
        intensity_mean=[round(float(v), 5) for v in mean],
        intensity_std=[round(float(v), 5) for v in std],
        intensity_percentiles=[[round(float(v), 5) for v in row] for row in percentiles],
        class_names=names,
        class_fractions=[round(float(v), 6) for v in fractions],
        object_diameter=diameters,
        object_width=widths,
        is_stack=looks_like_stack(dataset.stems),
        layout_rows=round(layout_information(dataset.masks, k, axis=0), 4),
        layout_columns=round(layout_information(dataset.masks, k, axis=1), 4),
    )


def layout_information(masks, num_classes: int, axis: int = 0, bands: int = LAYOUT_BANDS):
    """How much a pixel's row (``axis=0``) or column (``axis=1``) tells about its class: the
    mutual information of the class and the band (one of ``bands`` equal bands of the image
    height or width), over the class entropy::

        I(class; band) / H(class) = sum p(b, c) log(p(b, c) / (p(b) p(c))) / H(class)

    0 when classes sit anywhere (microscopy: any way up is a valid image), 1 when the band
    fixes the class. Street and facade photographs score 0.2+ by rows (sky on top, road at the
    bottom) and near 0 by columns (docs/design.md: the figures). Ignored labels count nowhere.

    Example:
        >>> top_sky = np.repeat([[0], [1]], 4, axis=0) * np.ones((1, 8), int)  # rows 0-3: 0
        >>> round(layout_information([top_sky], 2, axis=0), 3), layout_information([top_sky], 2, 1)
        (1.0, 0.0)
    """
    joint = np.zeros((bands, num_classes))
    for m in masks:
        m = m[..., 0] if m.ndim == 3 else m
        band = np.arange(m.shape[axis]) * bands // m.shape[axis]
        band = np.broadcast_to(band[:, None] if axis == 0 else band[None, :], m.shape)
        keep = (m >= 0) & (m < num_classes)
        codes = band[keep] * num_classes + m[keep]
        joint += np.bincount(codes, minlength=bands * num_classes).reshape(bands, num_classes)
    p = joint / max(joint.sum(), 1.0)
    p_band, p_class = p.sum(1, keepdims=True), p.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mutual = float(np.where(p > 0, p * np.log(p / (p_band * p_class)), 0.0).sum())
    entropy = float(-(p_class[p_class > 0] * np.log(p_class[p_class > 0])).sum())
    return float(np.clip(mutual / entropy, 0.0, 1.0)) if entropy > 1e-9 else 0.0


def looks_like_stack(stems) -> bool:
    """True when the stems are consecutive integers (optionally with one shared prefix),
    like the slices of a volume: ``0..23``, ``slice_000..slice_019``."""
    parts = [re.fullmatch(r"(.*?)(\d+)", s) for s in stems]
    if len(stems) < 3 or not all(parts) or len({p.group(1) for p in parts}) != 1:
        return False
    numbers = sorted(int(p.group(2)) for p in parts)
    return numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def plan_training(
    fp: DatasetFingerprint,
    *,
    device_kind: str = "CPU",
    time_budget_minutes: float | None = None,
    bf16_cpu: bool = False,
    val_fraction: float = 0.2,
    given: dict | None = None,
) -> TrainingPlan:
    """Split, patch and batch size, depth, width, loss, schedule, augmentation, epoch length
    and precision for a dataset on a ``device_kind`` (``"CPU"``, ``"GPU"``, ``"TPU"``), each
    with its reason (the rules: the reasons, :func:`describe_plan`).

    Args:
        bf16_cpu: the CPU has bfloat16 units (``avx512_bf16`` or ``amx_bf16``).
        given: options the caller fixed (``{"batch_size": 4}``): the later rules use them
            instead of the derived values; the plan still lists the derived values.
    """
    plan, given = TrainingPlan(), dict(given or {})
    gpu = device_kind.upper() in ("GPU", "TPU")
    n_val = max(1, round(fp.num_pairs * val_fraction)) if fp.num_pairs > 1 else 0
    n_train = fp.num_pairs - n_val
    if fp.is_stack:
        plan.choose("split", "contiguous", "the stems are consecutive numbers (a stack)")
    else:
        plan.choose("split", "random", "the stems are not a numbered stack: seeded random")
    ph, pw = _plan_patch(plan, fp, gpu, device_kind, given)
    depth = max([d for d in (4, 3, 2) if min(ph, pw) / 2**d >= 8], default=1)
    plan.choose("depth", depth, f"bottleneck of {min(ph, pw) // 2**depth} px on the short side")
    target = GPU_PIXELS_PER_STEP if gpu else CPU_PIXELS_PER_STEP
    batch = int(np.clip(round(target / (ph * pw)), 2, 64 if gpu else 16))
    if n_train:
        batch = max(1, min(batch, n_train))
    plan.choose("batch_size", batch, f"~{target / 2**20:.1f} Mpx per step on a {device_kind}")
    _plan_fixed(plan, fp, gpu, time_budget_minutes)
    if given.get("encoder"):
        plan.choose("base_filters", 16, f"a {given['encoder']} encoder: segmentation_models' "
                    "decoder widths, 256, 128, 64, 32, 16")  # fmt: skip
    batch = given.get("batch_size", batch)
    val_pixels = n_val * fp.median_size[0] * fp.median_size[1]
    epoch_steps = math.ceil(val_pixels / (3 * VALIDATION_SHARE * (batch * ph * pw)))
    epoch_steps = max(epoch_steps, math.ceil(max(n_train, 1) / batch))
    epoch_steps = int(np.clip(epoch_steps, 1, MAX_STEPS_PER_EPOCH))
    plan.choose("steps_per_epoch", epoch_steps, "validation <= 10 % of the training time")
    if time_budget_minutes is not None and not gpu and bf16_cpu:
        plan.choose("precision", "bfloat16", "time budget on a BF16 CPU: 1.5x the steps")
    else:
        plan.choose("precision", "auto", "the device default (unet_lib.runtime)")
    return plan


def _plan_patch(plan, fp, gpu, device_kind, given):
    """Chooses the patch size and patch sampling; returns the ``(height, width)`` trained on."""
    cap = GPU_PATCH if gpu else CPU_PATCH
    h, w = fp.median_size
    if h * w > 1.5 * cap * cap:
        side = int(min(cap, *fp.min_size))
        reason = f"images ({h}x{w}) are larger than {cap}^2, the {device_kind} patch"
        plan.choose("patch_size", side - side % 16, reason)
    else:
        plan.choose("patch_size", None, f"whole images: {h}x{w} fit the {cap} patch size")
    patch = given.get("patch_size", plan.options["patch_size"])
    rarest = min(fp.class_fractions[1:], default=1.0)
    if patch is not None and rarest < RARE_CLASS:
        reason = (f"a class covers {100 * rarest:.1f} % of the pixels: a third of the patches "
                  "are centred on a foreground class, drawn uniformly (nnU-Net)")  # fmt: skip
        plan.choose("foreground_fraction", 1 / 3, reason)
    else:
        plan.choose("foreground_fraction", 0.0, "uniform patches: no class under 5 %")
    return (h, w) if patch is None else (patch, patch) if isinstance(patch, int) else tuple(patch)


def _plan_fixed(plan, fp, gpu, time_budget_minutes) -> None:
    """Width, loss and class weights, schedule and augmentation."""
    small = time_budget_minutes is not None and time_budget_minutes < 5 and not gpu
    reason = "budget under 5 CPU minutes: more steps beat width" if small else "nnU-Net's 32"
    plan.choose("base_filters", 16 if small else 32, reason)
    _plan_objective(plan, fp)
    plan.choose("schedule", "cosine", "cosine decay with warm-up")
    _plan_intensity(plan, fp)
    _plan_augment(plan, fp)


def _plan_intensity(plan, fp) -> None:
    """Stretch dim data (12-bit values in 16-bit files fill 1/16 of the stored range) so that
    the network and the intensity augmentation see them as they see 8-bit data."""
    top = max(high for _, high in fp.intensity_percentiles)
    spread = [high - low for low, high in fp.intensity_percentiles]
    if top >= DIM_RANGE:
        plan.choose("intensity_scaling", None, f"as stored: the 99.5th percentile reaches "
                    f"{top:.2f} of the stored range")  # fmt: skip
        return
    if min(spread) <= 1e-6:
        plan.choose("intensity_scaling", None, "as stored: a channel is (nearly) constant")
        return
    window = [[low, high] for low, high in fp.intensity_percentiles]
    plan.choose("intensity_scaling", window, f"the images fill only {100 * top:.2g} % of their "
                "stored range (12-bit data in 16-bit files?): percentiles 0.5 / 99.5 of each "
                "channel mapped to 0 / 1 by the model's first layer")  # fmt: skip


def _plan_objective(plan, fp) -> None:
    """Dice + CE for a few classes; inverse-frequency weighted CE for many."""
    k = len(fp.class_names)
    rare = [n for n, f in zip(fp.class_names, fp.class_fractions, strict=False) if f < 0.01]
    if k >= MANY_CLASSES:
        reason = (f"{k} classes (>= {MANY_CLASSES}): cross-entropy weighted by inverse class "
                  "frequency, the many-class scene recipe (docs/design.md)")  # fmt: skip
        plan.choose("loss", "ce", reason)
        rarest = min(fp.class_fractions)
        plan.choose("class_weights", "balanced", f"the rarest class ({100 * rarest:.1f} % of the "
                    f"pixels) weighs {max(fp.class_fractions) / max(rarest, 1e-6):.0f}x the "
                    "commonest (median-frequency balancing, up to scale)")  # fmt: skip
        return
    plan.choose("loss", "dice_ce", "Dice + cross-entropy; Dice weighs every class equally")
    if rare:
        plan.reasons["loss"] += f" (rare: {', '.join(rare)})"
    plan.choose("class_weights", None, f"{k} classes: Dice already weighs them equally")


def _plan_augment(plan, fp) -> None:
    """All eight flips / 90-degree turns unless the layout fixes an orientation."""
    layout = f"layout information {fp.layout_rows:.2f} by rows, {fp.layout_columns:.2f} by columns"
    if not (fp.canonical_up or fp.canonical_sides):
        plan.choose(
            "augment",
            True,
            "flips, 90-degree rotations, +-15 degree rotation / 0.9-1.1 scale, mild intensity "
            f"(no canonical orientation: {layout}); elastic deformation off (worse than these "
            "alone on ISBI 2012 in 25 minutes)",
        )
        return
    kept = "no flips" if fp.canonical_sides else "left-right flips only"
    augment = {"flip": not fp.canonical_sides, "flip_vertical": False, "rotate90": False,
               "rotation_degrees": 0.0}  # fmt: skip
    plan.choose("augment", augment, f"a canonical orientation ({layout} >= {CANONICAL}): "
                f"{kept}, no rotations; 0.9-1.1 scale, mild intensity")  # fmt: skip


def describe_plan(plan: TrainingPlan, explicit=()) -> str:
    """One line per choice: ``key = value (reason)``; explicit options are marked."""
    return "\n".join(
        f"  {key:16s} given explicitly (derived would be {value!r})"
        if key in explicit
        else f"  {key:16s} = {value!r}  ({plan.reasons[key]})"
        for key, value in plan.options.items()
    )


def describe_fingerprint(fp: DatasetFingerprint) -> str:
    """A short summary of a fingerprint, for printing."""
    classes = ", ".join(
        f"{n} {100 * f:.1f} %" for n, f in zip(fp.class_names, fp.class_fractions, strict=False)
    )
    sizes = ", ".join(f"{n} {d:.0f} px" for n, d in fp.object_diameter.items())
    return (
        f"  {fp.num_pairs} pairs, median {fp.median_size[0]}x{fp.median_size[1]}, "
        f"{fp.channels} channel(s), mean {fp.intensity_mean} std {fp.intensity_std}\n"
        f"  classes: {classes}\n"
        f"  object diameters: {sizes or 'n/a'}; stack: {fp.is_stack}"
    )


def _evenly_spaced(n: int, k: int) -> list[int]:
    return list(range(n)) if n <= k else sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def _object_sizes(masks, names) -> tuple[dict[str, float], dict[str, float]]:
    """Median component diameter and mean thickness per foreground class (not class 0)."""
    import cv2

    diameters, widths = {}, {}
    for k, name in enumerate(names[1:], start=1):
        areas, depth_sum, depth_count = [], 0.0, 0
        for m in masks:
            binary = (m == k).astype(np.uint8)
            if not binary.any():
                continue
            count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            areas.extend(stats[1:count, cv2.CC_STAT_AREA].tolist())
            dist = cv2.distanceTransform(np.pad(binary, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            depth_sum += float(dist[1:-1, 1:-1][binary > 0].sum())
            depth_count += int(binary.sum())
        if areas:
            diameters[name] = round(float(np.sqrt(4 * np.median(areas) / np.pi)), 2)
            widths[name] = round(2 * depth_sum / depth_count, 2)
    return diameters, widths
