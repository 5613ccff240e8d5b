"""The run folder cannot be corrupted: one commit point per epoch (a crash after any write
leaves a folder that resumes to the uninterrupted result), one writer at a time (the lock),
the label mapping and every explicit option checked on resume."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from unet_lib.data import DatasetError
from unet_lib.data.synthetic import make_synthetic_dataset
from unet_lib.model import load_model
from unet_lib.training import runfolder
from unet_lib.training.callbacks import read_history, read_state
from unet_lib.training.loop import train
from unet_lib.training.resume import check_same_mapping
from unet_lib.training.runfolder import RunLock, RunLockedError, commit_epoch, recover

TINY = dict(depth=2, base_filters=4, batch_size=4, steps_per_epoch=3, verbose=0)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "membranes", num_images=8, size=32, seed=4
    )


class Crash(BaseException):
    """Stands for a kill: nothing in the library catches it."""


def _crash_at(monkeypatch, step: str):
    """The next commit step named ``step`` crashes (the commits before it ran normally)."""

    def hook(name):
        if name == step:
            raise Crash(step)

    monkeypatch.setattr(runfolder, "on_commit_step", hook)


def _leftovers(run):
    return sorted(p.name for p in run.iterdir() if p.name.startswith("."))


# --- the commit point, on plain files -----------------------------------------------------


def _text_writers(epoch):
    return {name: (lambda path, n=name: path.write_text(f"{n} of epoch {epoch}"))
            for name in ("best.keras", "last.keras", "history.csv")}  # fmt: skip


STEPS = ["staged best.keras", "staged last.keras", "staged history.csv", "state.json",
         "moved best.keras", "moved last.keras", "moved history.csv"]  # fmt: skip


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_after_any_write_recovers_to_one_whole_epoch(tmp_path, monkeypatch, step):
    run = tmp_path / "run"
    commit_epoch(run, 1, _text_writers(1), {"epochs_done": 1})
    _crash_at(monkeypatch, step)
    with pytest.raises(Crash):
        commit_epoch(run, 2, _text_writers(2), {"epochs_done": 2})
    monkeypatch.setattr(runfolder, "on_commit_step", None)
    state = json.loads((run / "state.json").read_text())
    recover(run, state)
    done = state["epochs_done"]
    assert done == (2 if STEPS.index(step) >= STEPS.index("state.json") else 1)
    for name in ("best.keras", "last.keras", "history.csv"):  # every file of that epoch
        assert (run / name).read_text() == f"{name} of epoch {done}", name
    assert _leftovers(run) == []
    assert recover(run, state) == []  # idempotent: nothing more to do


def test_recover_removes_uncommitted_epochs_and_temporary_files(tmp_path):
    run = tmp_path / "run"
    commit_epoch(run, 1, _text_writers(1), {"epochs_done": 1})
    (runfolder.staging_dir(run, 2)).mkdir()
    (runfolder.staging_dir(run, 2) / "best.keras").write_text("unrecorded")
    (run / ".best.abc123.tmp.keras").write_text("half")
    actions = recover(run, {"epochs_done": 1})
    assert any("never committed" in a for a in actions) and any("temporary" in a for a in actions)
    assert (run / "best.keras").read_text() == "best.keras of epoch 1"
    assert _leftovers(run) == []


def test_commit_refuses_a_state_of_another_epoch(tmp_path):
    with pytest.raises(ValueError, match="epochs_done=2"):
        commit_epoch(tmp_path, 3, {}, {"epochs_done": 2})


# --- the lock ------------------------------------------------------------------------------


def _write_lock(run, pid, host=None):
    run.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": time.time()}
    (run / runfolder.LOCK_FILE).write_text(json.dumps(owner))


def test_a_live_owner_keeps_the_lock(tmp_path):
    _write_lock(tmp_path, os.getppid())  # the process that started the tests: alive
    with pytest.raises(RunLockedError, match=rf"another training \(pid {os.getppid()} on"):
        RunLock(tmp_path).acquire()
    _write_lock(tmp_path, 12345, host="another-machine")  # cannot be checked: kept
    with pytest.raises(RunLockedError, match="delete .*\\.lock if that process is gone"):
        RunLock(tmp_path).acquire()


def test_a_dead_owners_lock_is_taken_over_and_released(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    _write_lock(tmp_path, int(gone.stdout))  # that process has exited
    with RunLock(tmp_path) as lock:
        owner = json.loads((tmp_path / runfolder.LOCK_FILE).read_text())
        assert lock.held and owner["pid"] == os.getpid()
    assert not (tmp_path / runfolder.LOCK_FILE).exists()


def test_a_second_training_on_a_locked_folder_is_refused_and_writes_nothing(tiny_data, tmp_path):
    run = tmp_path / "run"
    _write_lock(run, os.getppid())
    with pytest.raises(RunLockedError, match="being written by another training"):
        train(tiny_data, run, epochs=1, **TINY)
    assert sorted(p.name for p in run.iterdir()) == [runfolder.LOCK_FILE]


_SLOW_TRAINING = """
import sys
from unet_lib.training.loop import train
train(sys.argv[1], sys.argv[2], epochs=200, depth=2, base_filters=4, batch_size=2,
      steps_per_epoch=20, verbose=0)
"""


def test_two_concurrent_trainings_on_one_folder(tiny_data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen([sys.executable, "-c", _SLOW_TRAINING, str(tiny_data), str(run)],
                             env=env)  # fmt: skip
    try:
        deadline = time.time() + 240
        while not (run / "state.json").exists() and time.time() < deadline:
            assert first.poll() is None, "the first training ended early"
            time.sleep(0.2)
        params = len(load_model(run / "last.keras").get_weights())
        same = dict(epochs=200, depth=2, base_filters=4, batch_size=2, steps_per_epoch=20)
        with pytest.raises(RunLockedError, match=f"pid {first.pid}"):  # the same job twice
            train(tiny_data, run, verbose=0, **same)
        with pytest.raises(ValueError, match="other settings: base_filters=8"):
            train(tiny_data, run, verbose=0, **{**same, "base_filters": 8})
    finally:
        first.kill()
        first.wait(timeout=30)
    assert json.loads((run / "config.json").read_text())["base_filters"] == 4
    assert len(load_model(run / "last.keras").get_weights()) == params
    # the killed first run left its lock behind: stale now, so the next writer takes it
    assert (run / runfolder.LOCK_FILE).exists()
    with RunLock(run) as lock:
        assert lock.held
    assert not (run / runfolder.LOCK_FILE).exists()


# --- a crash inside training, at each write of the epoch commit ----------------------------


@pytest.mark.parametrize("step", STEPS)
def test_training_killed_at_each_write_resumes_to_the_uninterrupted_run(
    tiny_data, tmp_path, monkeypatch, step
):
    run = tmp_path / "run"
    _crash_at(monkeypatch, step)  # in epoch 1, which always writes best.keras
    with pytest.raises(Crash):
        train(tiny_data, run, epochs=2, **TINY)
    monkeypatch.setattr(runfolder, "on_commit_step", None)
    result = train(tiny_data, run, epochs=2, **TINY)
    state, history = read_state(run), read_history(run)
    assert state["epochs_done"] == 2 and state["finished"]
    assert history["epoch"] == [1.0, 2.0]  # no epoch twice, none missing
    last = load_model(run / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 2 * TINY["steps_per_epoch"]
    assert state["best_epoch"] in (1, 2) and (run / "best.keras").is_file()
    assert _leftovers(run) == [] and result.history["epoch"] == [1.0, 2.0]


# --- what the run recorded is checked --------------------------------------------------------


def test_an_explicit_option_equal_to_the_default_is_still_compared(tiny_data, tmp_path):
    run = tmp_path / "run"
    train(tiny_data, run, epochs=1, **TINY)
    with pytest.raises(ValueError, match=r"base_filters=32 \(the run has 4\)"):
        train(tiny_data, run, epochs=1, **{**TINY, "base_filters": 32})  # 32: the default
    # "auto" agrees with whatever the run decided
    again = train(tiny_data, run, epochs=1, eval_tta="auto", **TINY)
    assert again.history["epoch"] == [1.0]


def _swap(data, tmp_path):
    """A copy of ``data`` whose dataset.json lists the same classes in the other order."""
    swapped = tmp_path / "swapped"
    shutil.copytree(data, swapped)
    labels = json.loads((data / "dataset.json").read_text())["labels"]
    reordered = dict(reversed(list(labels.items())))
    (swapped / "dataset.json").write_text(json.dumps({"labels": reordered}))
    return swapped


def test_reordered_classes_are_refused_with_both_mappings():
    trained = {"labels": {"background": 255, "membrane": 0}}
    check_same_mapping({"labels": {"background": 255, "membrane": 0}}, trained, "a", "b")
    expected = (r'a maps \{"membrane": 0, "background": 255\} but the model was trained with '
                r'\{"background": 255, "membrane": 0\} \(b\)')  # fmt: skip
    with pytest.raises(DatasetError, match=expected):
        check_same_mapping({"labels": {"membrane": 0, "background": 255}}, trained, "a", "b")


def test_resume_and_evaluate_refuse_a_reordered_dataset_json(tiny_data, tmp_path, capsys):
    from unet_lib.cli import main

    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(tiny_data, data)
    train(data, run, epochs=1, **TINY)
    state = read_state(run)
    (run / "state.json").write_text(json.dumps({**state, "finished": False}))  # resumable
    swapped = _swap(data, tmp_path)
    shutil.copy(swapped / "dataset.json", data / "dataset.json")  # edited in place
    with pytest.raises(DatasetError, match="classes would be mixed up"):
        train(data, run, epochs=1, **TINY)
    code = main(["evaluate", "--model", str(run / "best.keras"), "--data", str(swapped)])
    assert code == 1 and "classes would be mixed up" in capsys.readouterr().err
    model_scores = main(["evaluate", "--model", str(run / "best.keras"), "--data", str(tiny_data),
                         "--split", "all"])  # fmt: skip
    assert model_scores == 0
    assert read_state(run)["epochs_done"] == 1  # the refused resume trained nothing


def test_fault_campaign_check_passes_a_whole_run_and_catches_a_replayed_epoch(tiny_data, tmp_path):
    from benchmarks.fault_campaign import STEPS, check_folder

    run = tmp_path / "run"
    train(tiny_data, run, epochs=2, **{**TINY, "steps_per_epoch": STEPS})
    found = check_folder(run)
    assert found["problems"] == [] and found["epochs_done"] == 2 and found["finished"]
    state = read_state(run)  # a state one epoch behind its files: what a replay looked like
    (run / "state.json").write_text(json.dumps({**state, "epochs_done": 1}))
    problems = check_folder(run)["problems"]
    assert "history.csv has 2 rows, state.json 1 epochs" in problems
    assert f"last.keras made {2 * STEPS} steps, not 1 x {STEPS}" in problems


def test_a_failed_data_check_leaves_no_config_behind(tiny_data, tmp_path):
    run, bad = tmp_path / "run", tmp_path / "empty_val"
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    with pytest.raises(DatasetError):
        train(tiny_data, run, epochs=1, val_data=bad, **TINY)
    assert not (run / "config.json").exists() and not (run / runfolder.LOCK_FILE).exists()


def test_workers_naming_different_run_folders_are_refused_at_the_start(tmp_path, monkeypatch):
    import types
    import zlib

    from unet_lib import runtime
    from unet_lib.training import TrainConfig, loop

    shared = tmp_path / "shared"
    code = zlib.crc32(str(shared.resolve()).encode()) % 2**20
    # a stand-in for the collective: the other worker names `shared` and read no state (-1)
    monkeypatch.setattr(runtime, "same_on_every_worker", lambda _, value: value in (code, -1))
    settings = types.SimpleNamespace(num_workers=2)
    loop._check_workers(settings, None, TrainConfig(), shared)  # the same folder: passes
    with pytest.raises(ValueError, match="workers name different run folders"):
        loop._check_workers(settings, None, TrainConfig(), tmp_path / "elsewhere")
