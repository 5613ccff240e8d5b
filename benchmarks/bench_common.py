"""Shared pieces of the benchmark suite: the report (tables, targets, exit code), timing
helpers, the matmul peak, subprocess workers and memory readings.

Every figure the suite reports is a ratio or a median against a baseline measured in the
same run; absolute times only appear beside their baseline.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# ----------------------------------------------------------------------------- report
@dataclass
class Target:
    """One pass/fail check: ``value`` against ``limit`` (``>=`` or ``<=``)."""

    name: str
    value: float
    limit: float
    op: str = ">="
    note: str = ""

    @property
    def passed(self) -> bool:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return False
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit


@dataclass
class Report:
    """Rows of named tables plus the targets; prints them and gives the exit code."""

    tables: dict[str, tuple[list[str], list[list]]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self, name: str, header: list[str]) -> list[list]:
        if name not in self.tables:
            self.tables[name] = (header, [])
        return self.tables[name][1]

    def target(self, name, value, limit, op=">=", note="") -> Target:
        t = Target(name, value, limit, op, note)
        self.targets.append(t)
        return t

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def failed(self) -> list[Target]:
        return [t for t in self.targets if not t.passed]

    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def render(self, markdown: bool = False) -> str:
        out = []
        for name, (header, rows) in self.tables.items():
            if not rows:
                continue
            out.append(f"\n### {name}\n" if markdown else f"\n== {name} ==")
            out.append(format_table(header, rows, markdown))
        if self.targets:
            out.append("\n### Targets\n" if markdown else "\n== Targets ==")
            rows = [
                [
                    "PASS" if t.passed else "FAIL",
                    t.name,
                    fmt(t.value),
                    f"{t.op} {fmt(t.limit)}",
                    t.note,
                ]
                for t in self.targets
            ]
            out.append(format_table(["", "target", "measured", "required", "note"], rows, markdown))
        if self.notes:
            out.append("")
            out += [f"- {n}" if markdown else f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def to_json(self) -> dict:
        return {
            "tables": {k: {"header": h, "rows": r} for k, (h, r) in self.tables.items()},
            "targets": [{**t.__dict__, "passed": t.passed} for t in self.targets],
            "notes": self.notes,
        }


def fmt(value) -> str:
    """Compact number formatting for the tables (3 significant digits, ints as they are)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value == 0:
            return "0"
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 0.01:
            return f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"
        return f"{value:.2e}"
    return str(value)


def format_table(header: list[str], rows: list[list], markdown: bool = False) -> str:
    """A plain-text (aligned) or Markdown table."""
    cells = [[fmt(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "-" * len(line), *body])


def with_autotune(ds, enabled: bool):
    """``ds`` with tf.data autotuning on or off. With it on, TF 2.21 waits for the autotune
    thread when fit() drops the iterator (seconds idle; README); step times do not change."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = bool(enabled)
    return ds.with_options(options)


# ----------------------------------------------------------------------------- timing
def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else math.nan


def steady(times: list[float], skip: int = 3) -> list[float]:
    """Step times without the first ``skip`` (tracing, warm-up); keeps at least 3."""
    return times[skip:] if len(times) - skip >= 3 else times[-3:]


def interleaved(functions: dict, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Times each function ``rounds`` times, round-robin (so drifting load hits all alike)."""
    for f in functions.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in functions}
    for _ in range(rounds):
        for name, f in functions.items():
            start = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - start)
    return times


def make_step_timer():
    """A Keras callback recording each training step's duration (``.times``, seconds)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []
            self.train_end = None
            self.train_end_cpu = None
            self._start = None

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._start)

        def on_train_end(self, logs=None):
            self.train_end = time.perf_counter()
            self.train_end_cpu = cpu_seconds()

    return StepTimer()


def cpu_seconds() -> float:
    """CPU time of this process (all threads), user + system."""
    t = os.times()
    return t.user + t.system


def matmul_peak(dtype: str = "float32", n: int = 4096, reps: int = 5) -> float:
    """GFLOP/s of an ``n x n`` matmul in TensorFlow (median of ``reps``, after a warm-up)."""
    import tensorflow as tf

    a = tf.cast(tf.random.uniform((n, n), seed=1), dtype)
    f = tf.function(lambda x: tf.linalg.matmul(x, x))
    f(a).numpy()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f(a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / median(times) / 1e9


# ----------------------------------------------------------------------------- workers
def run_worker(name: str, spec: dict, *, timeout: float = 600) -> dict:
    """Runs ``python -m benchmarks.run --worker NAME --spec JSON`` in a fresh Python; returns its
    JSON result.

    Fresh processes are needed where a setting is fixed at TensorFlow's start (threads) and
    for clean memory peaks. Raises ``RuntimeError`` with the tail of its output on failure.
    """
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", name, "--spec", json.dumps(spec)]
    proc = subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stdout + proc.stderr)[-2000:]
    raise RuntimeError(f"worker {name} {spec} failed (exit {proc.returncode}):\n{tail}")


def emit(result: dict) -> None:
    """A worker's last line: ``RESULT {json}``."""
    print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- memory
def memory_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak resident) of this process, bytes (Linux)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak_rss() -> bool:
    """Resets ``VmHWM`` to the current RSS (writes 5 to ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


MiB = 1024 * 1024
