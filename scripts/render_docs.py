"""Writes docs/ImageSegmentation_U-NET.html from an executed copy of the notebook: this
checkout's path left out of the outputs, and the SHA-256 of the notebook's code cells in a
comment (``code_digest``), which tests/test_notebook_clean.py compares with the notebook's.

    .venv/bin/python scripts/render_docs.py outputs/ImageSegmentation_U-NET.ipynb
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "ImageSegmentation_U-NET.html"
MARK = "notebook-code-sha256"


def code_digest(notebook: dict) -> str:
    """SHA-256 of the notebook's code cells, in order, joined by NUL."""
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256("\0".join(cells).encode()).hexdigest()


def main(executed: str) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    notebook = json.loads(Path(executed).read_text())
    prefix = str(REPO) + "/"
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            for lines in (output.get("text"), output.get("data", {}).get("text/plain")):
                if isinstance(lines, list):
                    lines[:] = [line.replace(prefix, "") for line in lines]
    node = nbformat.reads(json.dumps(notebook), as_version=4)
    html, _ = HTMLExporter().from_notebook_node(node)
    PAGE.write_text(f"<!-- {MARK}: {code_digest(notebook)} -->\n{html}")
    print(f"render: {PAGE}")


if __name__ == "__main__":
    main(*sys.argv[1:])
