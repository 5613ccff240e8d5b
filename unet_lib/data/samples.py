"""Real data bundled with the repository, in ``data/<name>/``, each checked against its
``MANIFEST.sha256`` (``sha256sum`` format) before use, so that a changed, missing or stray
file is reported instead of silently trained on.

``nuclei``: the 107 stained-tissue 320x256 tiles of the 2018 Data Science Bowl (BBBC038v1,
licence CC0) as RGB PNG, with binary masks (0 background, 255 nucleus) and ``dataset.json``;
source, citation and caveats in ``data/README.md``.

Example:
    >>> dataset = load_dataset(sample_dataset("nuclei"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .labels import DatasetError

SAMPLES = {"nuclei": "DSB2018 stained-tissue nuclei, 107 RGB tiles of 320x256 (CC0)"}
MANIFEST = "MANIFEST.sha256"
_DATA = Path(__file__).resolve().parents[2] / "data"  # the repository's data/ folder


def sample_dataset(name: str = "nuclei", *, verify: bool = True, root=None) -> Path:
    """The folder of the bundled sample ``name`` (:data:`SAMPLES`), after checking every
    file against its manifest (:func:`check_manifest`; ``verify=False`` skips that).

    ``root``: where the samples live (default: the repository's ``data/``). Raises
    :class:`DatasetError` naming the folder and the fix when it is absent or altered."""
    if name not in SAMPLES:
        raise ValueError(f"no bundled sample {name!r}; choose from {sorted(SAMPLES)}")
    folder = Path(root if root is not None else _DATA) / name
    if not (folder / MANIFEST).is_file():
        raise DatasetError(
            f"{folder}: the bundled {name} sample is not there; it comes with a clone of the "
            "repository (git clone, not pip install); or give your own folder instead",
            header=f"sample_dataset({name!r}):",
        )
    if verify:
        check_manifest(folder)
    return folder


def check_manifest(folder: str | Path) -> int:
    """Checks that ``folder`` holds exactly the files its ``MANIFEST.sha256`` lists, with
    those SHA-256 sums; returns how many. Raises :class:`DatasetError` listing every
    missing, changed or unlisted file, and how to restore the folder."""
    folder = Path(folder)
    expected = {}
    for line in (folder / MANIFEST).read_text().splitlines():
        digest, _, relative = line.partition("  ")
        if line.strip():
            expected[relative.strip()] = digest.strip()
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")}  # fmt: skip
    problems = [f"{name}: missing" for name in sorted(set(expected) - present)]
    digest = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
              for name in sorted(set(expected) & present)}  # fmt: skip
    changed = [name for name, value in digest.items() if value != expected[name]]
    problems += [f"{name}: changed (its SHA-256 differs from {MANIFEST})" for name in changed]
    problems += [f"{name}: not in {MANIFEST}" for name in sorted(present - set(expected))]
    if problems:
        raise DatasetError(
            problems,
            header=f"{folder} differs from its {MANIFEST} in {len(problems)} file(s); restore "
            f"it with `git checkout -- {folder}` and remove the files it does not list:",
        )
    return len(expected)
