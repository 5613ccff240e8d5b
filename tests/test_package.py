"""The package surface: public names, lazy imports, backend independence."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import unet_lib

REPO = Path(__file__).resolve().parents[1]


def test_public_names_resolve():
    for name in unet_lib.__all__:
        assert getattr(unet_lib, name) is not None, name
    assert unet_lib.IGNORE_LABEL == -1
    assert "build_unet" in dir(unet_lib)


def test_import_is_lazy():
    """``import unet_lib`` alone loads neither TensorFlow nor Keras."""
    code = "import sys, unet_lib; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False False"


@pytest.mark.parametrize(
    "module", ["model/unet", "model/batchnorm", "model/saving", "metrics", "losses"]
)
def test_backend_independent_modules_import_only_keras(module):
    """Model, metrics and losses must run on the JAX and torch backends too."""
    tree = ast.parse((REPO / "unet_lib" / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {"tensorflow", "torch", "jax", "unet_lib.data", "cv2"}
    assert not imported & forbidden, f"{module}.py imports {imported & forbidden}"


def test_unknown_attribute_raises():
    try:
        unet_lib.not_a_name  # noqa: B018
    except AttributeError as error:
        assert "not_a_name" in str(error)
    else:
        raise AssertionError("expected AttributeError")
