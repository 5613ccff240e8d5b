"""Atomic file writes: a crash or Ctrl-C never leaves a half-written file behind.

Every file the library writes goes through :func:`atomic_path`: written to a temporary file
in the same folder, then renamed over the target (atomic on POSIX), so a reader sees either
the old file or the new one.
"""

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the target's suffix, so writers that choose the format from
    the extension (``model.save``, ``cv2.imwrite``, ``fig.savefig``) still work.

    Example:
        >>> with atomic_path("run/best.keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{target.suffix}"
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def temporary_files(folder: str | os.PathLike) -> list[Path]:
    """The temporary files that :func:`atomic_path` left in ``folder`` (``.NAME.*.tmp.EXT``:
    a process killed between writing and renaming), sorted."""
    return sorted(p for p in Path(folder).glob(".*.tmp*") if p.is_file())


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (NaN written as ``NaN``)."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, fix: str):
    """The JSON in ``path``; an unreadable or invalid file raises one ``ValueError`` that names
    the file, the problem and ``fix`` (e.g. ``"start again with --overwrite"``), instead of a
    bare "Expecting value: line 1 column 1"."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot be read ({error}); {fix}") from None
    except json.JSONDecodeError as error:
        empty = "empty file" if not path.read_bytes().strip() else f"not valid JSON ({error})"
        raise ValueError(f"{path}: {empty}; {fix}") from None
