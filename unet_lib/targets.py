"""The one core behind every metric, loss and score: truth preparation and confusion counts.

``label_confusion_counts`` is the NumPy twin of :func:`unet_lib.metrics.confusion_counts`
(which works on tensors with ``keras.ops``): it counts integer label maps that are already
decided, as evaluation and post-training calibration hold them. Both follow the same rules
(ARCHITECTURE.md): a pixel counts only where its truth is a class ``0 .. L-1``; pixels that
hold ``IGNORE_LABEL`` (or any other value outside that range) count nowhere.

Example:
    >>> import numpy as np
    >>> truth = np.array([[0, 1, 1, -1]])
    >>> pred = np.array([[0, 1, 0, 1]])
    >>> tp, fp, fn = label_confusion_counts(truth, pred, 2)
    >>> tp.tolist(), fp.tolist(), fn.tolist()   # class 1: one hit, one miss; -1 ignored
    ([1, 1], [1, 0], [0, 1])
"""

from __future__ import annotations

import numpy as np


def label_confusion_counts(truth, prediction, num_labels: int, *, per_image: bool = False):
    """Per-class true positives, false positives and false negatives of label maps.

    Args:
        truth: Integer label map(s), any shape; values outside ``0 .. num_labels-1``
            (``IGNORE_LABEL``) are left out.
        prediction: Integer label map(s) of the same shape, values ``0 .. num_labels-1``.
        num_labels: ``L``, the number of label classes (2 for a binary model).
        per_image: Count each entry of the first axis separately.

    Returns:
        ``(tp, fp, fn)``: int64 arrays of shape ``(L,)``, or ``(N, L)`` with ``per_image``.
        From the confusion matrix ``C[t, p]``: ``tp = diag(C)``, ``fp = C.sum(0) - tp``,
        ``fn = C.sum(1) - tp``.

    Raises:
        ValueError: shapes differ, or a counted prediction lies outside ``0 .. L-1``.
    """
    truth, prediction = np.asarray(truth), np.asarray(prediction)
    if truth.shape != prediction.shape:
        raise ValueError(
            f"truth {truth.shape} and prediction {prediction.shape} must have the same shape."
        )
    if per_image:
        counts = [
            label_confusion_counts(t, p, num_labels) for t, p in zip(truth, prediction, strict=True)
        ]
        return tuple(
            np.stack(c).reshape(len(counts), num_labels) for c in zip(*counts, strict=True)
        )
    valid = (truth >= 0) & (truth < num_labels)
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_labels):
        bad = np.unique(p[(p < 0) | (p >= num_labels)]).tolist()
        raise ValueError(f"prediction holds labels {bad} outside 0..{num_labels - 1}.")
    confusion = np.bincount(t * num_labels + p, minlength=num_labels * num_labels)
    confusion = confusion.reshape(num_labels, num_labels)
    tp = np.diag(confusion).copy()
    return tp, confusion.sum(0) - tp, confusion.sum(1) - tp
