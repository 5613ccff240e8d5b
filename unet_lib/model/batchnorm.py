"""Batch normalisation that keeps mixed-bfloat16 training fast on CPUs.

Keras's :class:`keras.layers.BatchNormalization` casts a ``bfloat16`` input to ``float32`` for
its reductions and normalisation, which on a CPU costs as much as a U-Net's full-resolution
convolutions (docs/design.md). When training in ``bfloat16``, :class:`BatchNorm` takes the
per-channel sums from two matrix products with a row of ones (accumulated in ``float32``
without a ``float32`` copy), shifts the input first by a gradient-free estimate ``s`` of its
mean (the mean of its first ``SHIFT_ROWS`` pixels, so the variance does not cancel), and
normalises with one multiply-add in the compute dtype (``n = N*H*W``)::

    d    = (1 / n) 1^T (x - s)            msq = (1 / n) 1^T (x - s)**2
    mean = s + d                          var = max(msq - d**2, 0)
    y    = x * gamma / sqrt(var + eps) + (beta - mean * gamma / sqrt(var + eps))

Everything else (inference, ``float32`` / ``float16``, masks, renorm, synchronised statistics,
another channel axis) is Keras's own code, so a ``float32`` model is bit-for-bit Keras's.
"""

import keras
from keras import ops

__all__ = ["BatchNorm"]

SHIFT_ROWS = 1024  # pixels whose mean is the shift (a contiguous slice is free)


@keras.saving.register_keras_serializable(package="unet_lib")
class BatchNorm(keras.layers.BatchNormalization):
    """:class:`keras.layers.BatchNormalization` with a lean ``bfloat16`` training path.

    The fast path runs when training with a ``bfloat16`` input on the last axis without
    mask, renorm or synchronised statistics, where allowed (``lean``); its statistics match
    Keras's within ``bfloat16`` rounding, its gradient within a few percent.

    Args:
        lean: ``None`` (default): the fast path on the TensorFlow backend on machines
            without GPUs (where it was measured; on GPUs XLA fuses Keras's batch norm);
            ``True``: wherever the conditions above hold; ``False``: never.
        **kwargs: Those of :class:`keras.layers.BatchNormalization`.

    """

    def __init__(self, *, lean: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        if lean not in (None, True, False):
            raise ValueError(f"lean must be None (auto), True or False, got {lean!r}")
        self.lean = lean

    def _lean_allowed(self) -> bool:
        if self.lean is not None:
            return self.lean
        tensorflow = keras.backend.backend() == "tensorflow"
        return tensorflow and not keras.distribution.list_devices("gpu")

    def _lean_path(self, inputs, training, mask) -> bool:
        plain = mask is None and not self.renorm and not self.synchronized
        last_axis = self.axis in (-1, len(inputs.shape) - 1)
        bfloat16 = keras.backend.standardize_dtype(inputs.dtype) == "bfloat16"
        return bool(training and self.trainable and plain and last_axis and bfloat16
                    and self._lean_allowed())  # fmt: skip

    def batch_statistics(self, inputs):
        """Per-channel ``float32`` mean and (biased) variance ``(C,)`` of a ``(..., C)`` batch."""
        rows = ops.reshape(inputs, (-1, inputs.shape[-1]))
        sample = ops.cast(ops.stop_gradient(rows[:SHIFT_ROWS]), "float32")
        shift = ops.cast(ops.mean(sample, axis=0), rows.dtype)
        rows = rows - shift
        count = ops.shape(rows)[0]
        ones = ops.ones((1, count), dtype=rows.dtype)
        inv_count = 1.0 / ops.cast(count, "float32")
        delta = ops.cast(ops.matmul(ones, rows)[0], "float32") * inv_count
        mean_square = ops.cast(ops.matmul(ones, ops.square(rows))[0], "float32") * inv_count
        mean = ops.cast(shift, "float32") + delta
        return mean, ops.maximum(mean_square - ops.square(delta), 0.0)

    def get_config(self):
        return {**super().get_config(), "lean": self.lean}

    def call(self, inputs, training=None, mask=None):
        if not self._lean_path(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        mean, variance = self.batch_statistics(inputs)
        keep = self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))
        factor = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            factor = factor * ops.cast(self.gamma, "float32")
        offset = -mean * factor
        if self.center:
            offset = offset + ops.cast(self.beta, "float32")
        return inputs * ops.cast(factor, inputs.dtype) + ops.cast(offset, inputs.dtype)
