"""Writes the bundled nuclei sample, ``data/nuclei/``, from the shared DSB2018 folder.

    .venv/bin/python scripts/make_nuclei_sample.py ../shared/data/dsb2018_nuclei

The 107 stained-tissue tiles of BBBC038v1 (CC0): images as RGB PNG (the source's alpha is
always 255 and is dropped), masks as they are (0 background, 255 nucleus), both re-encoded
losslessly at the smallest size Pillow finds; then ``dataset.json`` and ``MANIFEST.sha256``,
which :func:`unet_lib.data.sample_dataset` checks.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "data" / "nuclei"


def main(source: str) -> None:
    source = Path(source)
    for sub in ("images", "masks"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((source / sub).glob("*.png")):
            image = Image.open(path)
            if sub == "images":
                if not (np.asarray(image)[..., 3] == 255).all():
                    raise SystemExit(f"{path}: the alpha channel is not opaque; not dropping it")
                image = image.convert("RGB")
            image.save(OUT / sub / path.name, "PNG", optimize=True)
    labels = {"labels": {"background": 0, "nucleus": 255}}
    (OUT / "dataset.json").write_text(json.dumps(labels) + "\n")
    files = sorted(p for p in OUT.rglob("*") if p.is_file() and p.name != "MANIFEST.sha256")
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(OUT)}" for p in files]
    (OUT / "MANIFEST.sha256").write_text("\n".join(lines) + "\n")
    print(f"{OUT}: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB")


if __name__ == "__main__":
    main(*sys.argv[1:])
