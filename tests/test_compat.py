"""Models saved by earlier versions of the library still load and predict the same.

``tests/data/unet_0.1.0.keras`` was saved by unet_lib 0.1.0 before the package was split
into sub-packages: a depth-2 U-Net with ``BatchNorm``, compiled with ``DiceCELoss``,
``DiceMetric`` and ``IoUMetric``, trained one epoch on 2 random 16x16 images; its prediction
for the first image is stored beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import unet_lib

DATA = Path(__file__).resolve().parent / "data"


def test_a_model_saved_by_0_1_0_loads_with_its_loss_and_metrics():
    model = unet_lib.load_model(DATA / "unet_0.1.0.keras")
    assert isinstance(model.loss, unet_lib.DiceCELoss) and model.loss.ignore_class == -1
    assert any(isinstance(layer, unet_lib.BatchNorm) for layer in model.layers)
    x = np.load(DATA / "unet_0.1.0_input.npy")
    expected = np.load(DATA / "unet_0.1.0_output.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    logs = model.evaluate(x, (x > 0.5).astype("int32"), return_dict=True, verbose=0)
    assert sorted(logs) == ["dice", "iou", "loss"]  # the compiled metrics came back
