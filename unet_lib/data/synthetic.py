"""The built-in default data: a seeded generator of realistic-looking segmentation sets.

No downloads: :func:`make_synthetic_dataset` draws images with NumPy's ``default_rng`` and
OpenCV and writes a dataset folder (``images/``, ``masks/``, ``dataset.json``) that
:func:`unet_lib.data.load_dataset` reads like any other. The same seed gives byte-identical
files; image ``i`` depends only on ``(seed, i)``, not on ``num_images``.

Kinds:

* ``"binary"`` - electron-microscopy-like tissue: a Voronoi tessellation of jittered seeds
  with wobbly boundaries drawn as thin dark membranes of varying width and contrast,
  textured cell interiors, dark organelles inside cells (round vesicles and elongated
  mitochondria that are *not* membrane), uneven illumination, blur and noise. 8-bit grey
  images; masks as in ISBI 2012: ``0`` = membrane, ``255`` = background, with
  ``dataset.json`` ``{"labels": {"background": 255, "membrane": 0}}``. A single global
  intensity threshold cannot solve it (best foreground Dice about 0.65).
* ``"multiclass"`` - light-microscopy-like RGB images on varied textured backgrounds with
  overlapping objects of three classes: ``nucleus`` (large round textured blobs), ``rod``
  (elongated capsules) and ``granule`` (small bright dots). Masks hold ``0`` (background),
  ``85``, ``170``, ``255`` (nucleus, rod, granule), declared in ``dataset.json``.

Example:
    >>> path = ensure_default_dataset("binary")  # doctest: +SKIP
    >>> make_synthetic_dataset("/tmp/mc", kind="multiclass", num_images=8, seed=1)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

__all__ = ["KINDS", "make_synthetic_dataset", "default_data_dir", "ensure_default_dataset"]

#: The kinds of synthetic data.
KINDS = ("binary", "multiclass")

#: Bumped whenever the generated pixels change, so cached default data is regenerated.
GENERATOR_VERSION = 1

_BINARY_LABELS = {"labels": {"background": 255, "membrane": 0}}
_MULTICLASS_LABELS = {"labels": {"background": 0, "nucleus": 85, "rod": 170, "granule": 255}}


# --------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (features about ``scale`` pixels wide)."""
    n = max(2, int(np.ceil(size / scale)) + 2)
    coarse = rng.standard_normal((n, n)).astype(np.float32)
    field = cv2.resize(
        coarse, (size + 2 * int(scale), size + 2 * int(scale)), interpolation=cv2.INTER_CUBIC
    )
    o = int(scale)
    field = field[o : o + size, o : o + size]
    return (field - field.mean()) / (field.std() + 1e-6)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


def _illumination(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """Multiplicative shading: a tilted plane plus a broad smooth bump."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    plane = np.cos(angle) * xx + np.sin(angle) * yy
    return 1.0 + strength * (1.2 * plane + 0.35 * _smooth_noise(rng, size, size / 2))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Binary: membranes
# --------------------------------------------------------------------------------------


def _nearest_seed(wy, wx, seeds, margin, band=16):
    """Index of the nearest seed of each (displaced) pixel; row bands keep memory and time
    linear in the image area."""
    size = wy.shape[0]
    cell_id = np.empty(wy.shape, np.int64)
    for r0 in range(0, size, band):
        r1 = min(size, r0 + band)
        ys, xs = wy[r0:r1].reshape(-1, 1), wx[r0:r1].reshape(-1, 1)
        near = np.flatnonzero((seeds[:, 0] > ys.min() - margin) & (seeds[:, 0] < ys.max() + margin))
        d2 = (ys - seeds[None, near, 0]) ** 2 + (xs - seeds[None, near, 1]) ** 2
        cell_id[r0:r1] = near[np.argmin(d2, axis=1)].reshape(r1 - r0, size)
    return cell_id


def _membrane_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One EM-like grey image (uint8) and its membrane mask (bool)."""
    cell = rng.uniform(18.0, 28.0)  # typical cell diameter in pixels
    step = np.array([cell * rng.uniform(0.85, 1.15), cell], np.float32)  # slightly anisotropic
    ny, nx = (int(np.ceil(size / s)) + 3 for s in step)
    gy, gx = np.mgrid[-1 : ny - 1, -1 : nx - 1].astype(np.float32)
    seeds = np.stack([gy.ravel(), gx.ravel()], 1) * step
    seeds += rng.uniform(-0.3, 0.3, seeds.shape).astype(np.float32) * step

    # wobbly boundaries: nearest seed of smoothly displaced pixel coordinates
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    amp = rng.uniform(1.5, 3.0)
    wy = yy + amp * _smooth_noise(rng, size, 14)
    wx = xx + amp * _smooth_noise(rng, size, 14)
    cell_id = _nearest_seed(wy, wx, seeds, margin=3.0 * cell + 3.0 * amp)
    # distance (in image pixels) to the nearest cell boundary
    edge = np.zeros((size, size), bool)
    edge[:, :-1] |= cell_id[:, :-1] != cell_id[:, 1:]
    edge[:-1, :] |= cell_id[:-1, :] != cell_id[1:, :]
    gap = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    # half-width of the membranes: 1.05 .. 2.05 pixels (3 to 5 pixels wide), varying along them
    width = 1.05 + 1.0 / (1.0 + np.exp(-1.5 * _smooth_noise(rng, size, 20)))
    membrane = gap < width

    # cell interiors: per-cell brightness and texture
    base = rng.uniform(0.52, 0.82, len(seeds)).astype(np.float32)
    dense = rng.random(len(seeds)) < 0.12  # a few cells with dense, dark cytoplasm
    base[dense] = rng.uniform(0.36, 0.5, int(dense.sum()))
    base = base[cell_id]
    img = (
        base
        + 0.05 * _smooth_noise(rng, size, 6)
        + 0.05 * _blur(rng.standard_normal((size, size)).astype(np.float32), 1.0)
    )

    # membranes: dark, contrast varying along them, soft edges
    depth = np.clip(0.55 + 0.15 * _smooth_noise(rng, size, 18), 0.25, 0.85)
    ink = np.clip(1.5 - gap / width, 0.0, 1.0)
    img = img * (1.0 - depth * ink)

    # organelles: dark blobs and elongated shapes inside cells, away from the membranes
    organelles = np.zeros((size, size), np.float32)
    inside = np.argwhere(gap > width + 2.5)
    count = int(rng.integers(int(size * size / 700), int(size * size / 350) + 1))
    if len(inside):
        for y, x in inside[rng.integers(0, len(inside), count)]:
            if rng.random() < 0.55:  # vesicle
                r = rng.uniform(1.5, 3.5)
                axes = (r, r * rng.uniform(0.75, 1.0))
            else:  # mitochondrion
                axes = (rng.uniform(3.5, 7.0), rng.uniform(1.5, 2.8))
            limit = float(gap[y, x] - width[y, x]) - 1.0  # stay inside the cell
            axes = (min(axes[0], limit), min(axes[1], limit))
            if axes[1] < 1.0:
                continue
            strength = rng.uniform(0.35, 0.7)
            cv2.ellipse(
                organelles,
                ((float(x), float(y)), (2 * axes[0], 2 * axes[1]), float(rng.uniform(0, 180))),
                float(strength),
                -1,
                cv2.LINE_AA,
            )
    img = img * (1.0 - np.minimum(organelles, 0.8))

    img = img * _illumination(rng, size, rng.uniform(0.15, 0.35))
    img = _blur(img, rng.uniform(0.6, 1.0))
    img = img + rng.normal(0, rng.uniform(0.03, 0.06), img.shape).astype(np.float32)
    lo, hi = rng.uniform(-0.05, 0.08), rng.uniform(0.9, 1.1)
    img = (img - lo) / (hi - lo)
    return _to_uint8(img), membrane


# --------------------------------------------------------------------------------------
# Multi-class: nuclei, rods, granules
# --------------------------------------------------------------------------------------


def _random_colour(rng, centre, spread) -> np.ndarray:
    return np.clip(np.asarray(centre, np.float32) + rng.uniform(-spread, spread, 3), 0, 1)


def _multiclass_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image (uint8, RGB order) and its label map (0..3)."""
    # textured background of a random style
    tint = _random_colour(rng, (0.85, 0.78, 0.85), 0.12)
    img = np.ones((size, size, 3), np.float32) * tint
    style = rng.integers(0, 3)
    tex = 0.06 * _smooth_noise(rng, size, 12) + 0.04 * _smooth_noise(rng, size, 4)
    if style == 1:  # fibres: streaks along a random direction
        streak = rng.standard_normal((size, size)).astype(np.float32)
        k = np.zeros((15, 15), np.float32)
        cv2.line(k, (0, 7), (14, 7), 1.0, 1)
        rot = cv2.getRotationMatrix2D((7, 7), float(rng.uniform(0, 180)), 1.0)
        k = cv2.warpAffine(k, rot, (15, 15))
        tex = tex + 0.08 * cv2.filter2D(streak, -1, k / k.sum())
    elif style == 2:  # mottled: large darker patches
        tex = tex - 0.12 * np.clip(_smooth_noise(rng, size, 25), 0, None)
    img = img + tex[..., None] * rng.uniform(0.6, 1.2, 3).astype(np.float32)

    labels = np.zeros((size, size), np.uint8)
    area = size * size

    def paint(mask: np.ndarray, colour: np.ndarray, texture: np.ndarray, cls: int) -> None:
        alpha = _blur(mask, 0.7)[..., None]
        obj = colour[None, None, :] * (1.0 + texture[..., None])
        img[:] = img * (1 - alpha) + obj * alpha
        labels[mask > 0.5] = cls

    # nuclei: large round/oval blobs with chromatin texture
    nuc_colour = (0.45, 0.3, 0.6)
    for _ in range(int(rng.integers(2, 3 + area // 3000))):
        m = np.zeros((size, size), np.float32)
        centre = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
        r = rng.uniform(7.0, 14.0)
        cv2.ellipse(
            m,
            (centre, (2 * r, 2 * r * rng.uniform(0.7, 1.0)), float(rng.uniform(0, 180))),
            1.0,
            -1,
            cv2.LINE_AA,
        )
        chromatin = 0.25 * _smooth_noise(rng, size, 3)
        paint(m, _random_colour(rng, nuc_colour, 0.12), chromatin, 1)

    # rods: elongated capsules, may cross nuclei
    rod_colour = (0.55, 0.35, 0.45)
    for _ in range(int(rng.integers(3, 4 + area // 1500))):
        m = np.zeros((size, size), np.float32)
        c = rng.uniform(0, size, 2)
        length, angle = rng.uniform(8.0, 18.0), rng.uniform(0, np.pi)
        dxy = length * np.array([np.cos(angle), np.sin(angle)])
        p0 = tuple(int(v) for v in np.rint(c - dxy))
        p1 = tuple(int(v) for v in np.rint(c + dxy))
        cv2.line(m, p0, p1, 1.0, int(rng.integers(3, 6)), cv2.LINE_AA)
        paint(m, _random_colour(rng, rod_colour, 0.12), 0.06 * _smooth_noise(rng, size, 5), 2)

    # distractors: faint bright specks in the background that are not granules
    specks = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 4 + area // 1500))):
        y, x = rng.uniform(0, size, 2)
        cv2.circle(specks, (int(x), int(y)), int(rng.integers(2, 5)), 1.0, -1, cv2.LINE_AA)
    img = img + 0.12 * _blur(specks, 1.5)[..., None]

    # granules: small bright dots, on top of everything
    for _ in range(int(rng.integers(4, 5 + area // 1000))):
        m = np.zeros((size, size), np.float32)
        y, x = rng.uniform(0, size, 2)
        cv2.circle(m, (int(x), int(y)), int(rng.integers(2, 4)), 1.0, -1, cv2.LINE_AA)
        paint(m, _random_colour(rng, (1.0, 0.92, 0.4), 0.06), np.zeros((size, size), np.float32), 3)

    img = img * _illumination(rng, size, rng.uniform(0.1, 0.25))[..., None]
    img = _blur(img, rng.uniform(0.5, 0.9))
    img = img + rng.normal(0, rng.uniform(0.02, 0.045), img.shape).astype(np.float32)
    return _to_uint8(img), labels


# --------------------------------------------------------------------------------------
# Writing datasets
# --------------------------------------------------------------------------------------


def _write_files(out: Path, kind: str, num_images: int, size: int, seed: int) -> None:
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    multi_values = np.array(list(_MULTICLASS_LABELS["labels"].values()), np.uint8)
    for i in range(num_images):
        rng = np.random.default_rng([seed, i, GENERATOR_VERSION, KINDS.index(kind)])
        if kind == "binary":
            img, membrane = _membrane_sample(rng, size)
            mask = np.where(membrane, 0, 255).astype(np.uint8)
        else:
            rgb, labels = _multiclass_sample(rng, size)
            img = np.ascontiguousarray(rgb[:, :, ::-1])  # OpenCV writes BGR
            mask = multi_values[labels]
        stem = f"{i:04d}"
        cv2.imwrite(str(out / "images" / f"{stem}.png"), img)
        cv2.imwrite(str(out / "masks" / f"{stem}.png"), mask)
    spec = dict(_BINARY_LABELS if kind == "binary" else _MULTICLASS_LABELS)
    spec["description"] = (
        f"synthetic {kind} data made by unet_lib.data.synthetic.make_synthetic_dataset("
        f"kind={kind!r}, num_images={num_images}, size={size}, seed={seed}), "
        f"generator version {GENERATOR_VERSION}"
    )
    (out / "dataset.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def _looks_generated(path: Path) -> bool:
    return all(p.name in ("images", "masks", "dataset.json") for p in path.iterdir())


def make_synthetic_dataset(
    out_dir: str | Path,
    *,
    kind: str = "binary",
    num_images: int = 48,
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate a synthetic dataset folder (``images/``, ``masks/``, ``dataset.json``).

    Files are written into a temporary sibling folder that is renamed at the end, so an
    interrupted run never leaves a half-written dataset.

    Args:
        out_dir: the folder to create.
        kind: ``"binary"`` (membranes, grey) or ``"multiclass"`` (4 classes, RGB).
        num_images: number of image/mask pairs (stems ``0000``, ``0001``, ...).
        size: side of the square images in pixels (>= 32).
        seed: seed of ``numpy.random.default_rng``; same seed -> byte-identical files.
        overwrite: replace an existing generated dataset at ``out_dir``.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: bad arguments.
        FileExistsError: ``out_dir`` exists (and ``overwrite`` is false, or it holds other
            files than a generated dataset).

    Example:
        >>> make_synthetic_dataset("/tmp/membranes", num_images=8, seed=3)  # doctest: +SKIP
        PosixPath('/tmp/membranes')
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, value, low in (("num_images", num_images, 1), ("size", size, 32), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out}: already exists; pass overwrite=True (--overwrite) or another folder"
            )
        if not out.is_dir() or not _looks_generated(out):
            raise FileExistsError(
                f"{out}: holds other files than a generated dataset; refusing to overwrite it, "
                "choose another folder"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_files(tmp, kind, int(num_images), int(size), int(seed))
        os.chmod(tmp, 0o755)
        if out.exists():
            if overwrite:
                shutil.rmtree(out) if out.is_dir() else out.unlink()
        try:
            os.rename(tmp, out)
        except OSError:
            raise FileExistsError(f"{out}: appeared while generating; not replaced") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _repo_root() -> Path:
    """The repository (parent of the package folder) if it holds pyproject.toml."""
    package = Path(__file__).resolve().parent.parent
    if (package.parent / "pyproject.toml").is_file():
        return package.parent
    return Path.home() / ".cache" / "unet_lib"


def default_data_dir(kind: str = "binary") -> Path:
    """Where the built-in dataset of ``kind`` lives (whether or not it exists yet).

    ``$UNET_DATA_DIR/<kind>_v<version>`` when the environment variable ``UNET_DATA_DIR`` is
    set, else ``<repo>/data/generated/<kind>_v<version>`` (``<repo>`` is the checkout
    holding ``pyproject.toml``, else ``~/.cache/unet_lib``).

    Example:
        >>> default_data_dir("binary").name
        'binary_v1'
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    env = os.environ.get("UNET_DATA_DIR")
    root = Path(env).expanduser() if env else _repo_root() / "data" / "generated"
    return root / f"{kind}_v{GENERATOR_VERSION}"


def ensure_default_dataset(kind: str = "binary", root: str | Path | None = None) -> Path:
    """The built-in dataset of ``kind`` with default settings, generated only if absent.

    Args:
        kind: ``"binary"`` or ``"multiclass"``.
        root: folder to hold it instead of the default (see :func:`default_data_dir`).

    Returns:
        The dataset folder (48 images of 128x128, seed 0).

    Example:
        >>> from unet_lib.data import load_dataset
        >>> data = load_dataset(ensure_default_dataset())  # doctest: +SKIP
    """
    path = default_data_dir(kind)
    if root is not None:
        path = Path(root) / path.name
    if (path / "dataset.json").is_file() and (path / "images").is_dir():
        return path
    try:
        make_synthetic_dataset(path, kind=kind, overwrite=path.exists())
    except FileExistsError:
        if not (path / "dataset.json").is_file():  # not a finished concurrent generation
            raise
    return path
