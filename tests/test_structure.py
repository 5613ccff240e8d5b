"""The layer and size rules of ARCHITECTURE.md, held by scripts/check_structure.py.

Each rule is its own test so a failure names the rule; the detector itself is tested on
small made-up packages (a cycle, a private import, a layer violation, a repeated block).
The package's total size is a figure to watch, not a rule: the script reports it against
``MAX_TOTAL_LINES`` and ``--strict`` fails above it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scripts import check_structure as cs

PACKAGE = Path(__file__).resolve().parent.parent / "unet_lib"


@pytest.fixture(scope="module")
def report():
    return cs.measure(PACKAGE)


@pytest.mark.parametrize(
    "rule",
    ["long_modules", "long_functions", "private_imports", "cycles", "layer_violations"],
)
def test_rule_holds(report, rule):
    assert report[rule] == [], "\n".join(report[rule])


def test_no_repeated_blocks(report):
    assert report["duplicates"] == [], "\n".join(report["duplicates"])


def _package(tmp_path, files: dict[str, str]) -> Path:
    root = tmp_path / "unet_lib"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_detects_cycles_private_imports_and_layers(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "metrics.py": "from unet_lib.training import fit\n",  # model layer -> workflow
            "training/__init__.py": "from unet_lib.training.loop import fit\n",
            "training/loop.py": "from unet_lib.training.plan import _rule\n\ndef fit(): ...\n",
            "training/plan.py": "from unet_lib.training import loop\n\ndef _rule(): ...\n",
            "losses.py": "import tensorflow\n",  # the neutral core may not import TF
        },
    )
    report = cs.measure(root)
    assert any("training.plan._rule" in p for p in report["private_imports"])
    assert any("unet_lib.training.loop" in c and "plan" in c for c in report["cycles"])
    assert any(p.startswith("unet_lib.metrics (model) imports higher layer") for p in
               report["layer_violations"])  # fmt: skip
    assert any("losses.py:1 (backend-neutral) imports tensorflow" in p for p in
               report["layer_violations"])  # fmt: skip


def test_detects_long_functions_and_same_shape_blocks(tmp_path):
    body = "\n".join(f"    x{i} = x{i - 1} + {i}" for i in range(1, 62))
    block = """
        def {name}(a, b):
            total = a + b
            if total > {n}:
                total = total - {n}
            values = [a, b, total]
            result = sum(values) * {n}
            return result, values
    """
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "long.py": f"def long(x0):\n{body}\n    return x61\n",
            "one.py": block.format(name="first", n=3),
            "two.py": block.format(name="second", n=7),  # same shape, other names/numbers
        },
    )
    report = cs.measure(root)
    assert report["long_functions"] == [f"{root / 'long.py'}:1 long (63 lines)"]
    assert any("unet_lib.one" in d and "unet_lib.two" in d for d in report["duplicates"])
