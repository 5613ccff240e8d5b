"""Distributed training on this CPU: MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy across two worker processes on 127.0.0.1 (TF_CONFIG each).

Every run happens in a subprocess (TensorFlow's device layout and the multi-worker strategy
are fixed when TensorFlow starts), with a bounded time; worker processes are always ended
by the test. Model and data are tiny: depth 2, 4 base filters, 32 x 32 images.

Tolerances: with ``loss="ce"``, no batch norm and SGD, the loss of a global batch is exactly
the mean of the replicas' losses, so one device and two replicas differ only by float
rounding (loss within 0.5 % relative, Dice / IoU within 0.02 absolute; Adam would turn
rounding-level gradient differences into +-learning-rate steps at its first step). With
batch norm and the batch Dice of ``dice_ce`` each replica normalises over its half batch, a
real difference (measured ~1.5 % in loss after 3 epochs) that ``docs/distributed.md``
describes. Two workers and one process with two replicas compute the same halves, so they
agree to 1e-4.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from unet_lib.data.synthetic import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]
# Exact-maths configuration (see the module docstring). Class weights would break it: each
# replica's weighted CE is normalised by its own weight sum.
EXACT = dict(
    loss="ce",
    batch_norm=False,
    optimizer="sgd",  # Adam's first steps turn rounding-level gradient differences into
    learning_rate=0.01,  # +-lr steps (m / sqrt(v) = sign(g)); SGD keeps them at rounding level
    depth=2,
    base_filters=4,
    seed=1,
    deterministic=True,
    verbose=0,
    # the fixed defaults: the self-configuration sizes epochs from the per-replica batch,
    # so one device (batch 4) and two replicas (2 each) would get different epoch lengths
    auto_configure=False,
)
KEYS = ("loss", "dice", "iou", "val_loss", "val_dice", "val_iou")

MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from unet_lib.runtime.devices import select_devices
    from unet_lib.runtime.settings import configure_threads
    configure_threads(intra_op=1, inter_op=1)
    select_devices("cpu:2")   # before TensorFlow starts
    import tensorflow as tf
    from unet_lib.metrics import DiceMetric, IoUMetric, dice_score
    from unet_lib.runtime.settings import device_settings
    from unet_lib.training.loop import train

    # 1. streaming metrics sum their counts over the replicas
    settings = device_settings("cpu:2", per_device_batch_size=1)
    strategy = settings.strategy
    rng = np.random.default_rng(0)
    truth = (rng.random((2, 8, 8)) < np.array([0.9, 0.1])[:, None, None]).astype("int32")
    pred = rng.random((2, 8, 8, 1)).astype("float32")
    with strategy.scope():
        metrics = [DiceMetric(1), IoUMetric(1)]
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((truth, pred)).batch(2))
    for t, p in data:
        strategy.run(lambda t, p: [m.update_state(t, p) for m in metrics], args=(t, p))
    halves = [float(dice_score(truth[i:i + 1], pred[i:i + 1], 1)) for i in range(2)]
    print("METRIC", json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "distributed": float(metrics[0].result()),
        "whole": float(dice_score(truth, pred, 1)),
        "mean_of_halves": float(np.mean(halves)),
    }))
    for m in metrics:
        m.reset_state()
    print("RESET", float(np.sum(metrics[0].true_positives.numpy())))
    try:
        select_devices("cpu:3")  # TensorFlow has started with 2: a clear error
    except RuntimeError as err:
        print("LATE", json.dumps(str(err)))

    # 2. one device vs. two replicas, the same global batch (4) and seed
    data_dir, out, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    histories = {}
    for name, devices, batch in (("one", ["/device:CPU:0"], 4), ("two", "cpu:2", 2)):
        result = train(data_dir, f"{out}/{name}", devices=devices, batch_size=batch, **options)
        histories[name] = {"history": result.history, "devices": result.config.devices}
    print("HISTORIES", json.dumps(histories))

    # 3. 5 validation images on two replicas: padded with an ignored copy, same scores
    uneven = {}
    for name, devices, batch in (("one", ["/device:CPU:0"], 4), ("two", "cpu:2", 2)):
        run = dict(options, epochs=1, val_fraction=0.5)
        result = train(data_dir, f"{out}/uneven_{name}", devices=devices, batch_size=batch, **run)
        uneven[name] = result.history
    print("UNEVEN", json.dumps(uneven))

    # 4. self-configured on two replicas: the derived epoch counts global batches
    from unet_lib.training import plan as configure
    from unet_lib.data import load_dataset
    auto = train(data_dir, f"{out}/auto", devices="cpu:2", epochs=1, verbose=0,
                 val_fraction=0.4)  # 4 validation images: a 3-step epoch on one replica
    plan = configure.plan_training(configure.fingerprint(load_dataset(data_dir)),
                                   device_kind="CPU", bf16_cpu=False, val_fraction=0.4)
    print("AUTO", json.dumps({"steps": auto.config.steps_per_epoch,
                              "one_replica": plan.options["steps_per_epoch"],
                              "reason": auto.config.plan["derived"]["steps_per_epoch"]}))
    """
)

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from unet_lib.runtime.settings import configure_threads
    configure_threads(intra_op=1, inter_op=1)
    import keras
    import numpy as np
    from unet_lib.training.callbacks import read_state
    from unet_lib.training.loop import train

    class Seen(keras.callbacks.Callback):
        # what this process itself computed: its epoch logs and its final weights
        logs, weights, initial, steps = [], None, None, []
        def on_train_begin(self, logs=None):
            Seen.initial = float(sum(np.abs(w).sum() for w in self.model.get_weights()))
        def on_train_batch_end(self, batch, logs=None):
            Seen.steps.append(float(logs["loss"]))
        def on_epoch_end(self, epoch, logs=None):
            Seen.logs.append({k: float(v) for k, v in (logs or {}).items()})
        def on_train_end(self, logs=None):
            Seen.weights = float(sum(np.abs(w).sum() for w in self.model.get_weights()))

    data_dir, run_dir, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    state = read_state(run_dir)
    print("START", json.dumps(state and state["epochs_done"]), flush=True)
    result = train(data_dir, run_dir, callbacks=[Seen()], **options)
    print("RESULT", json.dumps({"history": result.history, "devices": result.config.devices,
                                "state": result.state, "seen": Seen.logs,
                                "weights": Seen.weights, "initial": Seen.initial,
                                "steps": Seen.steps}), flush=True)
    """
)


def _env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env.pop("TF_CONFIG", None)
    env.pop("UNET_DEVICES", None)
    env["KERAS_BACKEND"] = "tensorflow"
    return env


def _line(output: str, tag: str):
    for line in output.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    raise AssertionError(f"no {tag} line in the output:\n{output[-3000:]}")


def _free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tf_config(ports: list[int], index: int) -> str:
    workers = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


class Workers:
    """Worker processes started by a test, ended by it whatever happens."""

    def __init__(self, script: Path, tmp_path: Path):
        self.script, self.tmp_path, self.procs = script, tmp_path, []

    def start(self, args: list[str], tf_config: str | None, name: str, **extra_env):
        env = dict(_env(), **extra_env)
        if tf_config is not None:
            env["TF_CONFIG"] = tf_config
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed in _end)
        proc = subprocess.Popen(
            [sys.executable, str(self.script), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.tmp_path,
            start_new_session=True,
        )
        proc.log, proc.log_path = log, self.tmp_path / f"{name}.log"
        self.procs.append(proc)
        return proc

    def wait(self, proc, timeout: float) -> str:
        try:
            proc.wait(timeout=timeout)
        finally:
            self._end(proc)
        output = proc.log_path.read_text()
        assert proc.returncode == 0, f"{proc.log_path.name} failed:\n{output[-4000:]}"
        return output

    def kill(self, proc):
        self._end(proc)

    def _end(self, proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.log.close()

    def end_all(self):
        for proc in self.procs:
            self._end(proc)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("data") / "membranes", num_images=10, size=32, seed=3
    )


@pytest.fixture
def workers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    group = Workers(script, tmp_path)
    try:
        yield group
    finally:
        group.end_all()


def _close(a, b, *, rtol, atol, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    assert np.allclose(a, b, rtol=rtol, atol=atol), f"{what}: {a.tolist()} vs {b.tolist()}"


def test_mirrored_two_cpus_match_one_device(tiny_data, tmp_path):
    options = dict(EXACT, epochs=3)
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(tiny_data), str(tmp_path), json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metric = _line(result.stdout, "METRIC")
    assert metric["replicas"] == 2
    # counts are summed over the replicas: the whole batch's Dice, not a mean of halves
    assert metric["distributed"] == pytest.approx(metric["whole"], abs=1e-6)
    assert abs(metric["mean_of_halves"] - metric["whole"]) > 0.05
    assert _line(result.stdout, "RESET") == 0.0
    assert "UNET_DEVICES=cpu:3" in _line(result.stdout, "LATE")

    runs = _line(result.stdout, "HISTORIES")
    one, two = runs["one"], runs["two"]
    assert one["devices"]["strategy"] == "default" and one["devices"]["replicas"] == 1
    assert two["devices"]["strategy"] == "mirrored" and two["devices"]["replicas"] == 2
    assert one["devices"]["global_batch_size"] == two["devices"]["global_batch_size"] == 4
    assert two["devices"]["per_replica_batch_size"] == 2
    for key in ("loss", "val_loss"):
        _close(one["history"][key], two["history"][key], rtol=5e-3, atol=0, what=key)
    for key in ("dice", "iou", "val_dice", "val_iou"):
        _close(one["history"][key], two["history"][key], rtol=0, atol=0.02, what=key)
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    assert config["devices"]["device_names"] == ["/device:CPU:0", "/device:CPU:1"]
    uneven = _line(result.stdout, "UNEVEN")  # the padding adds no pixel to the counts
    for key in ("val_dice", "val_iou"):
        _close(uneven["one"][key], uneven["two"][key], rtol=0, atol=0.02, what=f"uneven {key}")
    auto = _line(result.stdout, "AUTO")
    assert auto["one_replica"] == 3 and auto["steps"] == 2, auto  # ceil(3 / 2) steps
    assert "/ 2 replicas" in auto["reason"]


def test_two_workers_match_one_process(tiny_data, tmp_path, workers):
    # The sharding rewrite of the input pipeline under MultiWorkerMirroredStrategy re-seeds
    # its shuffle and augmentation (deterministically: the workers agree), so the data order
    # differs from a single process's. One step per epoch over all 8 training images without
    # augmentation makes the result independent of that order.
    options = dict(EXACT, epochs=3, batch_size=4, augment=False, steps_per_epoch=1)
    args = [str(tiny_data), str(tmp_path / "multi"), json.dumps(options)]
    ports = _free_ports(2)
    procs = [workers.start(args, _tf_config(ports, i), f"worker{i}") for i in range(2)]
    # the reference: one process, two replicas of the same per-replica batch
    reference_args = [str(tiny_data), str(tmp_path / "single"), json.dumps(options)]
    single = workers.start(reference_args, None, "single", UNET_DEVICES="cpu:2")
    outputs = [workers.wait(p, timeout=240) for p in (*procs, single)]
    results = [_line(out, "RESULT") for out in outputs]
    for result in results[:2]:
        assert result["devices"]["strategy"] == "multi_worker_mirrored"
        assert (result["devices"]["replicas"], result["devices"]["workers"]) == (2, 2)
        assert result["devices"]["global_batch_size"] == 8
    assert results[2]["devices"]["strategy"] == "mirrored"
    # each worker computed the same (global) epoch logs and weights as the other, and as
    # the single process
    seen = [{key: [e[key] for e in r["seen"]] for key in KEYS} for r in results]
    assert results[0]["initial"] == results[2]["initial"]  # same seeded start
    assert seen[0] == seen[1]
    assert results[0]["weights"] == results[1]["weights"]
    for key in KEYS:
        _close(seen[0][key], seen[2][key], rtol=1e-4, atol=1e-5, what=key)
        _close(seen[0][key], results[0]["history"][key], rtol=1e-6, atol=0, what=key)
    _close(results[0]["weights"], results[2]["weights"], rtol=1e-4, atol=0, what="weights")
    # only the chief wrote the run folder; it records the strategy
    config = json.loads((tmp_path / "multi" / "config.json").read_text())
    assert config["devices"]["strategy"] == "multi_worker_mirrored"


def test_killed_worker_resumes_from_the_last_checkpoint(tiny_data, tmp_path, workers):
    epochs = 6
    options = dict(EXACT, epochs=epochs, batch_size=2)
    run = tmp_path / "run"
    args = [str(tiny_data), str(run), json.dumps(options)]
    ports = _free_ports(2)
    first = [workers.start(args, _tf_config(ports, i), f"first{i}") for i in range(2)]
    deadline = time.monotonic() + 180
    done = 0
    while time.monotonic() < deadline and done < 2:
        assert all(p.poll() is None for p in first), "a worker ended before it was killed"
        state_file = run / "state.json"
        done = json.loads(state_file.read_text())["epochs_done"] if state_file.exists() else 0
        time.sleep(0.2)
    assert done >= 2, "no checkpoint within the time allowed"
    workers.kill(first[1])  # one worker dies mid-run ...
    time.sleep(2)
    workers.kill(first[0])  # ... the other is stuck in a collective: end it too
    state = json.loads((run / "state.json").read_text())
    assert not state["finished"] and 2 <= state["epochs_done"] < epochs
    before = (run / "history.csv").read_text().splitlines()

    ports = _free_ports(2)
    again = [workers.start(args, _tf_config(ports, i), f"again{i}") for i in range(2)]
    outputs = [workers.wait(p, timeout=240) for p in again]
    for out in outputs:  # both resumed from the chief's last checkpoint
        assert _line(out, "START") == state["epochs_done"]
    results = [_line(out, "RESULT") for out in outputs]
    assert len(results[0]["seen"]) == epochs - state["epochs_done"]
    assert results[0]["seen"] == results[1]["seen"]
    assert results[0]["weights"] == results[1]["weights"]
    assert results[0]["state"]["finished"] and results[0]["state"]["epochs_done"] == epochs
    after = (run / "history.csv").read_text().splitlines()
    assert len(after) == epochs + 1
    assert after[: state["epochs_done"] + 1] == before[: state["epochs_done"] + 1]
