"""Batch normalisation that keeps mixed-bfloat16 training fast on CPUs.

Keras's :class:`keras.layers.BatchNormalization` casts a ``bfloat16`` input to ``float32``,
reduces it with two mean reductions, normalises in ``float32`` and casts back: on a CPU this
memory traffic (and the gradient through it) cost as much as the convolutions of a U-Net's
full-resolution levels (``benchmarks/README.md``, profile). :class:`BatchNorm` computes the
same thing with less traffic when training in ``bfloat16``:

* the per-channel sums come from two matrix products with a row of ones (``1 @ x`` and
  ``1 @ x**2`` over the ``(N*H*W, C)`` view), which the matmul kernels accumulate in
  ``float32`` without a ``float32`` copy of the activation;
* the input is first shifted by a gradient-free estimate of its mean (the mean of its
  first ``SHIFT_ROWS`` pixels), so that the variance ``E[(x - s)**2] - E[x - s]**2`` does
  not cancel catastrophically when the mean is large against the spread;
* the normalisation itself is one multiply-add in the compute dtype with per-channel
  ``float32`` factors (``scale = gamma / sqrt(var + eps)``, ``offset = beta - mean * scale``)
  rounded to ``bfloat16`` once.

Formula (training, channels last, ``s`` = that shift, ``n = N*H*W``)::

    d    = (1 / n) 1^T (x - s)            msq = (1 / n) 1^T (x - s)**2
    mean = s + d                          var = max(msq - d**2, 0)
    y    = x * gamma / sqrt(var + eps) + (beta - mean * gamma / sqrt(var + eps))

Everything else (inference, ``float32`` / ``float16`` inputs, masks, renorm, synchronised
statistics, a channel axis other than the last) is Keras's own code path, so a ``float32``
model is bit-for-bit Keras's, and the weights are those of
:class:`keras.layers.BatchNormalization`. Pure ``keras.ops``: runs on any backend; by default
the fast path is on only where it was measured (TensorFlow on a CPU, see ``lean``).

Example:
    >>> x = BatchNorm(name="enc1_bn1")(keras.layers.Conv2D(32, 3, use_bias=False)(inputs))
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["BatchNorm"]

# The shift is the mean of the first 1024 pixels: within about one standard deviation of the
# batch mean, which keeps the variance to ~1 % (bfloat16 has 8 bits). A contiguous slice is
# free; a strided sample of the whole batch cost 20 % of the layer's time in TensorFlow.
SHIFT_ROWS = 1024


@keras.saving.register_keras_serializable(package="unet_lib")
class BatchNorm(keras.layers.BatchNormalization):
    """:class:`keras.layers.BatchNormalization` with a lean ``bfloat16`` training path.

    The fast path is used when training with a ``bfloat16`` input on the last axis without
    mask, renorm or synchronised statistics, where allowed (``lean``); the batch statistics
    then match Keras's within ``bfloat16`` rounding (about 0.5 % relative on the variance),
    and the gradient, which flows through the statistics in ``bfloat16``, within a few
    percent (``tests/test_batchnorm.py``).

    Args:
        lean: ``None`` (default): the fast path on the TensorFlow backend on machines
            without GPUs, where it was measured (``benchmarks/README.md``); ``True``:
            wherever the conditions above hold; ``False``: never (Keras's code only).
        **kwargs: Those of :class:`keras.layers.BatchNormalization` (``momentum``,
            ``epsilon``, ``center``, ``scale``, initializers, ``name``, ``dtype``, ...).

    Example:
        >>> keras.mixed_precision.set_global_policy("mixed_bfloat16")
        >>> layer = BatchNorm()
        >>> y = layer(x, training=True)  # statistics from two matmuls, bfloat16 output
    """

    def __init__(self, *, lean: bool | None = None, **kwargs):
        super().__init__(**kwargs)
        if lean not in (None, True, False):
            raise ValueError(f"lean must be None (auto), True or False, got {lean!r}")
        self.lean = lean

    def _lean_allowed(self) -> bool:
        """``lean=None``: where it was measured, TensorFlow on a machine without GPUs (on
        GPUs XLA fuses Keras's batch norm; the torch / JAX CPU defaults are float32)."""
        if self.lean is not None:
            return self.lean
        if keras.backend.backend() != "tensorflow":
            return False
        return not keras.distribution.list_devices("gpu")

    def _lean_path(self, inputs, training, mask) -> bool:
        return bool(
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis in (-1, len(inputs.shape) - 1)
            and keras.backend.standardize_dtype(inputs.dtype) == "bfloat16"
            and self._lean_allowed()
        )

    def batch_statistics(self, inputs):
        """Per-channel ``(mean, variance)`` of a channels-last batch, ``float32``.

        Args:
            inputs: ``(..., C)`` tensor (``bfloat16`` on the fast path).

        Returns:
            Two ``(C,)`` ``float32`` tensors: mean and (biased) variance over all other axes.
        """
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
