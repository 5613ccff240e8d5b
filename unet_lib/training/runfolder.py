"""The run folder's integrity: one commit point per epoch, one writer at a time.

An epoch's files (``last.keras``, ``best.keras`` when it improved, ``history.csv``) are first
written into a staging folder ``RUN/.epoch-NNNNN``; replacing ``state.json`` (atomic) is the
commit point; the staged files are then renamed into place. :func:`recover`, run before every
training on the folder, finishes the renames of a committed epoch (roll forward) and deletes
an uncommitted one's staging folder and the temporary files a kill left (roll back), so the
files in place are always those that ``state.json`` records: no epoch is trained twice and no
model is kept that no record describes.

:class:`RunLock` (``RUN/.lock``: pid, host, start time) refuses a second writer with one line;
a lock whose process is gone (same host) is stale and taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

from unet_lib.fileio import temporary_files, write_json_atomic

STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"
LAST_MODEL = "last.keras"
BEST_MODEL = "best.keras"
LOCK_FILE = ".lock"
STAGING_PREFIX = ".epoch-"
#: Order in which staged files are moved into place: the models before the history row.
_MOVE_ORDER = (BEST_MODEL, LAST_MODEL, HISTORY_FILE)

#: Called with the name of each step of a commit once it is done (``"staged best.keras"``,
#: ``"state.json"``, ``"moved last.keras"``, ...); fault-injection tests crash there.
on_commit_step: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if on_commit_step is not None:
        on_commit_step(name)


def staging_dir(run_dir: str | Path, epoch: int) -> Path:
    """Where epoch ``epoch``'s files wait for their commit: ``RUN/.epoch-00007``."""
    return Path(run_dir) / f"{STAGING_PREFIX}{epoch:05d}"


def commit_epoch(run_dir: str | Path, epoch: int, writers: dict, state: dict) -> None:
    """Writes an epoch atomically as a whole: each ``writers[name](path)`` writes file
    ``name`` into the staging folder, then ``state`` (which must say ``epochs_done=epoch``)
    replaces ``state.json`` (the commit), then the files move into place.

    Example:
        >>> commit_epoch(run, 3, {"last.keras": model.save}, {"epochs_done": 3})  # doctest: +SKIP
    """
    if state.get("epochs_done") != epoch:
        raise ValueError(f"the state of epoch {epoch} says epochs_done={state.get('epochs_done')}")
    stage = staging_dir(run_dir, epoch)
    shutil.rmtree(stage, ignore_errors=True)  # a failed earlier attempt at this epoch
    stage.mkdir(parents=True)
    for name, write in writers.items():
        write(stage / name)
        _step(f"staged {name}")
    write_json_atomic(Path(run_dir) / STATE_FILE, state)
    _step(STATE_FILE)
    _roll_forward(stage)


def _roll_forward(stage: Path) -> list[str]:
    """Moves a committed epoch's staged files into the run folder; returns their names."""
    rank = {name: i for i, name in enumerate(_MOVE_ORDER)}
    names = sorted((p.name for p in stage.iterdir()), key=lambda n: (rank.get(n, len(rank)), n))
    for name in names:
        os.replace(stage / name, stage.parent / name)
        _step(f"moved {name}")
    stage.rmdir()
    return names


def recover(run_dir: str | Path, state: dict | None) -> list[str]:
    """Brings a run folder back to what ``state`` (its ``state.json``, ``None``: no epoch
    committed) records, after a crash or a kill: the committed epoch's staged files are moved
    into place, later epochs' staging folders and leftover temporary files are deleted.
    Returns one line per action (empty when the folder was consistent). Call it only while
    holding the :class:`RunLock`."""
    run_dir, done, actions = Path(run_dir), (state or {}).get("epochs_done", 0), []
    if not run_dir.is_dir():
        return actions
    for stage in sorted(run_dir.glob(f"{STAGING_PREFIX}*")):
        epoch = stage.name.removeprefix(STAGING_PREFIX)
        if stage.is_dir() and epoch.isdigit() and int(epoch) == done and state is not None:
            moved = ", ".join(_roll_forward(stage)) or "nothing left to move"
            actions.append(f"completed epoch {done}'s commit ({moved})")
        elif stage.is_dir():
            shutil.rmtree(stage)
            actions.append(f"removed {stage.name} (an epoch that was never committed)")
    for leftover in temporary_files(run_dir):
        leftover.unlink()
        actions.append(f"removed the temporary file {leftover.name}")
    return actions


class RunLockedError(RuntimeError):
    """Another live process is writing the run folder."""


class RunLock:
    """``RUN/.lock`` held while a training writes the folder: created exclusively with the
    owner's pid, host and start time; a second writer gets :class:`RunLockedError` naming
    the owner. A lock left by a process that is gone (same host) is taken over.

    Example:
        >>> with RunLock("runs/first"):  # doctest: +SKIP
        ...     ...  # write the run folder
    """

    def __init__(self, run_dir: str | Path):
        self.path, self.held = Path(run_dir) / LOCK_FILE, False

    def acquire(self) -> RunLock:
        if self.held:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and not self._is_stale(owner, me):
                    raise RunLockedError(self._refusal(owner)) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
            self.held = True
            return self
        raise RunLockedError(f"{self.path}: could not take the lock; try again")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def close(self) -> None:
        """:meth:`release` (for ``contextlib.closing``: a lock taken later, if at all)."""
        self.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _owner(self) -> dict | None:
        """The lock's content; ``None`` when unreadable and old (a crash while writing it)."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            age = time.time() - self.path.stat().st_mtime if self.path.exists() else 1e9
            return None if age > 10 else {"pid": "?", "host": "?", "started": time.time()}

    @staticmethod
    def _is_stale(owner: dict, me: dict) -> bool:
        if owner.get("host") != me["host"] or not isinstance(owner.get("pid"), int):
            return False  # another machine's process cannot be checked from here
        if owner["pid"] == me["pid"]:
            return True  # this process's own lock, left by an interrupted call
        try:
            os.kill(owner["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, another user's
        return False

    def _refusal(self, owner: dict) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
        return (
            f"{self.path.parent} is being written by another training (pid {owner.get('pid')} "
            f"on {owner.get('host')}, since {since}); wait for it to finish, use another --out, "
            f"or delete {self.path} if that process is gone"
        )
