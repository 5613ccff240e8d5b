"""The built-in default data: a seeded generator of realistic-looking segmentation sets.

No downloads: :func:`make_synthetic_dataset` draws images with NumPy's ``default_rng`` and
OpenCV and writes a dataset folder; image ``i`` depends only on ``(seed, i)``. ``"binary"``:
electron-microscopy-like grey tissue (Voronoi cells with wobbly dark membranes of varying
width and contrast, textured interiors, dark organelles that are *not* membrane, uneven
illumination, blur, noise); masks as in ISBI 2012 (``0`` = membrane, ``255`` = background).
``"multiclass"``: light-microscopy-like RGB with overlapping ``nucleus`` (textured blobs),
``rod`` (capsules) and ``granule`` (small bright dots) objects; masks 0, 85, 170, 255.
"""

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

_LABELS = {
    "binary": {"background": 255, "membrane": 0},
    "multiclass": {"background": 0, "nucleus": 85, "rod": 170, "granule": 255},
}


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field (features about ``scale`` pixels wide)."""
    n = max(2, int(np.ceil(size / scale)) + 2)
    coarse, o = rng.standard_normal((n, n)).astype(np.float32), int(scale)
    field = cv2.resize(coarse, (size + 2 * o, size + 2 * o), interpolation=cv2.INTER_CUBIC)
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


def _cells(rng: np.random.Generator, size: int):
    """Voronoi cells of jittered seeds with wobbly boundaries: ``(cell_id, number of cells,
    distance to the nearest boundary, membrane half-width)`` per pixel."""
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
    return cell_id, len(seeds), gap, width


def _organelles(rng: np.random.Generator, size: int, gap, width) -> np.ndarray:
    """Darkening (0..1) of vesicles and mitochondria inside the cells, off the membranes."""
    organelles = np.zeros((size, size), np.float32)
    inside = np.argwhere(gap > width + 2.5)
    count = int(rng.integers(int(size * size / 700), int(size * size / 350) + 1))
    if not len(inside):
        return organelles
    for y, x in inside[rng.integers(0, len(inside), count)]:
        if rng.random() < 0.55:  # vesicle
            r = rng.uniform(1.5, 3.5)
            axes = (r, r * rng.uniform(0.75, 1.0))
        else:  # mitochondrion
            axes = (rng.uniform(3.5, 7.0), rng.uniform(1.5, 2.8))
        limit = float(gap[y, x] - width[y, x]) - 1.0  # stay inside the cell
        ry, rx = min(axes[0], limit), min(axes[1], limit)
        if rx < 1.0:
            continue
        strength = float(rng.uniform(0.35, 0.7))
        box = ((float(x), float(y)), (2 * ry, 2 * rx), float(rng.uniform(0, 180)))
        cv2.ellipse(organelles, box, strength, -1, cv2.LINE_AA)
    return organelles


def _membrane_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One EM-like grey image (uint8) and its membrane mask (bool)."""
    cell_id, num_cells, gap, width = _cells(rng, size)
    membrane = gap < width
    # cell interiors: per-cell brightness and texture
    base = rng.uniform(0.52, 0.82, num_cells).astype(np.float32)
    dense = rng.random(num_cells) < 0.12  # a few cells with dense, dark cytoplasm
    base[dense] = rng.uniform(0.36, 0.5, int(dense.sum()))
    img = base[cell_id] + 0.05 * _smooth_noise(rng, size, 6)
    img = img + 0.05 * _blur(rng.standard_normal((size, size)).astype(np.float32), 1.0)
    # membranes: dark, contrast varying along them, soft edges
    depth = np.clip(0.55 + 0.15 * _smooth_noise(rng, size, 18), 0.25, 0.85)
    ink = np.clip(1.5 - gap / width, 0.0, 1.0)
    img = img * (1.0 - depth * ink)
    img = img * (1.0 - np.minimum(_organelles(rng, size, gap, width), 0.8))
    img = img * _illumination(rng, size, rng.uniform(0.15, 0.35))
    img = _blur(img, rng.uniform(0.6, 1.0))
    img = img + rng.normal(0, rng.uniform(0.03, 0.06), img.shape).astype(np.float32)
    lo, hi = rng.uniform(-0.05, 0.08), rng.uniform(0.9, 1.1)
    img = (img - lo) / (hi - lo)
    return _to_uint8(img), membrane


def _random_colour(rng, centre, spread) -> np.ndarray:
    return np.clip(np.asarray(centre, np.float32) + rng.uniform(-spread, spread, 3), 0, 1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured RGB background of a random style (plain, fibres or mottled)."""
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
    return img + tex[..., None] * rng.uniform(0.6, 1.2, 3).astype(np.float32)


def _multiclass_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image (uint8, RGB order) and its label map (0..3)."""
    img = _background(rng, size)
    labels = np.zeros((size, size), np.uint8)
    area = size * size

    def paint(mask: np.ndarray, colour: np.ndarray, texture: np.ndarray, cls: int) -> None:
        alpha = _blur(mask, 0.7)[..., None]
        obj = colour[None, None, :] * (1.0 + texture[..., None])
        img[:] = img * (1 - alpha) + obj * alpha
        labels[mask > 0.5] = cls

    # nuclei: large round/oval blobs with chromatin texture
    for _ in range(int(rng.integers(2, 3 + area // 3000))):
        m = np.zeros((size, size), np.float32)
        centre = (float(rng.uniform(0, size)), float(rng.uniform(0, size)))
        r = rng.uniform(7.0, 14.0)
        box = (centre, (2 * r, 2 * r * rng.uniform(0.7, 1.0)), float(rng.uniform(0, 180)))
        cv2.ellipse(m, box, 1.0, -1, cv2.LINE_AA)
        chromatin = 0.25 * _smooth_noise(rng, size, 3)
        paint(m, _random_colour(rng, (0.45, 0.3, 0.6), 0.12), chromatin, 1)
    # rods: elongated capsules, may cross nuclei
    for _ in range(int(rng.integers(3, 4 + area // 1500))):
        m = np.zeros((size, size), np.float32)
        c = rng.uniform(0, size, 2)
        length, angle = rng.uniform(8.0, 18.0), rng.uniform(0, np.pi)
        dxy = length * np.array([np.cos(angle), np.sin(angle)])
        p0, p1 = (tuple(int(v) for v in np.rint(end)) for end in (c - dxy, c + dxy))
        cv2.line(m, p0, p1, 1.0, int(rng.integers(3, 6)), cv2.LINE_AA)
        colour = _random_colour(rng, (0.55, 0.35, 0.45), 0.12)
        paint(m, colour, 0.06 * _smooth_noise(rng, size, 5), 2)
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


def _write_files(out: Path, kind: str, num_images: int, size: int, seed: int) -> None:
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    multi_values = np.array(list(_LABELS["multiclass"].values()), np.uint8)
    for i in range(num_images):
        rng = np.random.default_rng([seed, i, GENERATOR_VERSION, KINDS.index(kind)])
        if kind == "binary":
            img, membrane = _membrane_sample(rng, size)
            mask = np.where(membrane, 0, 255).astype(np.uint8)
        else:
            rgb, labels = _multiclass_sample(rng, size)
            img = np.ascontiguousarray(rgb[:, :, ::-1])  # OpenCV writes BGR
            mask = multi_values[labels]
        for sub, array in (("images", img), ("masks", mask)):
            cv2.imwrite(str(out / sub / f"{i:04d}.png"), array)
    spec = {"labels": _LABELS[kind]}
    spec["description"] = (
        f"synthetic {kind} data made by unet_lib.data.synthetic.make_synthetic_dataset("
        f"kind={kind!r}, num_images={num_images}, size={size}, seed={seed}), "
        f"generator version {GENERATOR_VERSION}"
    )
    (out / "dataset.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuses an existing folder unless ``overwrite`` and it holds only a generated dataset."""
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out}: already exists; pass overwrite=True (--overwrite) or another folder"
        )
    generated = out.is_dir() and all(
        p.name in ("images", "masks", "dataset.json") for p in out.iterdir()
    )
    if not generated:
        raise FileExistsError(
            f"{out}: holds other files than a generated dataset; refusing to overwrite it, "
            "choose another folder"
        )


def make_synthetic_dataset(
    out_dir: str | Path,
    *,
    kind: str = "binary",
    num_images: int = 48,
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate a synthetic dataset folder (``images/``, ``masks/``, ``dataset.json``) of
    ``num_images`` pairs (stems ``0000``, ...) of ``kind`` (``"binary"`` or ``"multiclass"``),
    ``size`` x ``size`` pixels (>= 32), byte-identical for the same ``seed``; returns it as a
    Path. Files are written into a temporary sibling folder renamed at the end (never half a
    dataset); an existing ``out_dir`` raises FileExistsError unless ``overwrite`` and it holds
    only a generated dataset."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, value, low in (("num_images", num_images, 1), ("size", size, 32), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    out = Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_files(tmp, kind, int(num_images), int(size), int(seed))
        os.chmod(tmp, 0o755)
        if out.exists() and overwrite:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        try:
            os.rename(tmp, out)
        except OSError:
            raise FileExistsError(f"{out}: appeared while generating; not replaced") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_data_dir(kind: str = "binary") -> Path:
    """Where the built-in dataset of ``kind`` lives (whether or not it exists yet):
    ``$UNET_DATA_DIR/<kind>_v<version>`` when ``UNET_DATA_DIR`` is set, else
    ``<repo>/data/generated/<kind>_v<version>`` (``<repo>``: the checkout holding
    ``pyproject.toml``, else ``~/.cache/unet_lib``), e.g. ``.../binary_v1``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    env, repo = os.environ.get("UNET_DATA_DIR"), Path(__file__).resolve().parents[2]
    if not (repo / "pyproject.toml").is_file():
        repo = Path.home() / ".cache" / "unet_lib"
    root = Path(env).expanduser() if env else repo / "data" / "generated"
    return root / f"{kind}_v{GENERATOR_VERSION}"


def ensure_default_dataset(kind: str = "binary", root: str | Path | None = None) -> Path:
    """The folder of the built-in dataset of ``kind`` with default settings (48 images of
    128x128, seed 0), generated only if absent, in ``root`` instead of the default folder
    (:func:`default_data_dir`) when given."""
    path = default_data_dir(kind)
    path = path if root is None else Path(root) / path.name
    if (path / "dataset.json").is_file() and (path / "images").is_dir():
        return path
    try:
        make_synthetic_dataset(path, kind=kind, overwrite=path.exists())
    except FileExistsError:
        if not (path / "dataset.json").is_file():  # not a finished concurrent generation
            raise
    return path
