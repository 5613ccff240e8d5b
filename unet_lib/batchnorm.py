"""Batch normalisation that keeps mixed-bfloat16 training fast on CPUs.

Keras's :class:`keras.layers.BatchNormalization` casts a ``bfloat16`` input to ``float32``,
reduces it with two mean reductions, normalises in ``float32`` and casts back: on a CPU this
memory traffic (and the gradient through it) cost as much as the convolutions of a U-Net's
full-resolution levels (``benchmarks/README.md``, profile). :class:`BatchNorm` computes the
same thing with less traffic when training in ``bfloat16``:

* the per-channel sums come from two matrix products with a row of ones (``1 @ x`` and
  ``1 @ x**2`` over the ``(N*H*W, C)`` view), which the matmul kernels accumulate in
  ``float32`` without a ``float32`` copy of the activation;
* the input is first shifted by a gradient-free estimate of its mean (the mean of a
  strided sample of the pixels), so that the variance ``E[(x - s)**2] - E[x - s]**2`` does
  not cancel catastrophically when the mean is large against the spread;
* the normalisation itself is one multiply-add in the compute dtype with per-channel
  ``float32`` factors (``scale = gamma / sqrt(var + eps)``, ``offset = beta - mean * scale``)
  rounded to ``bfloat16`` once.

Formula (training, channels last, ``s`` = sampled mean, ``n = N*H*W``)::

    d    = (1 / n) 1^T (x - s)            msq = (1 / n) 1^T (x - s)**2
    mean = s + d                          var = max(msq - d**2, 0)
    y    = x * gamma / sqrt(var + eps) + (beta - mean * gamma / sqrt(var + eps))

Everything else (inference, ``float32`` / ``float16`` inputs, masks, renorm, synchronised
statistics, a channel axis other than the last) is Keras's own code path, so a ``float32``
model is bit-for-bit Keras's, and weights, config and ``.keras`` files are interchangeable
with :class:`keras.layers.BatchNormalization`. Pure ``keras.ops``: any backend.

Example:
    >>> x = BatchNorm(name="enc1_bn1")(keras.layers.Conv2D(32, 3, use_bias=False)(inputs))
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["BatchNorm"]

# The shift is the mean of every 61st pixel (a prime, so no image-width aliasing): close
# enough to the batch mean that the variance keeps ~8 bits, at 1/61 of a reduction's cost.
SHIFT_STRIDE = 61


@keras.saving.register_keras_serializable(package="unet_lib")
class BatchNorm(keras.layers.BatchNormalization):
    """:class:`keras.layers.BatchNormalization` with a lean ``bfloat16`` training path.

    Takes exactly the arguments of :class:`keras.layers.BatchNormalization` (``momentum``,
    ``epsilon``, ``center``, ``scale``, initializers, ...). The fast path is used when
    training with a ``bfloat16`` input on the last axis without mask, renorm or synchronised
    statistics; the batch statistics then match Keras's within ``bfloat16`` rounding (about
    0.5 % relative on the variance, see ``tests/test_batchnorm.py``).

    Example:
        >>> keras.mixed_precision.set_global_policy("mixed_bfloat16")
        >>> layer = BatchNorm()
        >>> y = layer(x, training=True)  # statistics from two matmuls, bfloat16 output
    """

    def _lean_path(self, inputs, training, mask) -> bool:
        return bool(
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and self.axis in (-1, len(inputs.shape) - 1)
            and keras.backend.standardize_dtype(inputs.dtype) == "bfloat16"
        )

    def batch_statistics(self, inputs):
        """Per-channel ``(mean, variance)`` of a channels-last batch, ``float32``.

        Args:
            inputs: ``(..., C)`` tensor (``bfloat16`` on the fast path).

        Returns:
            Two ``(C,)`` ``float32`` tensors: mean and (biased) variance over all other axes.
        """
        rows = ops.reshape(inputs, (-1, inputs.shape[-1]))
        sample = ops.cast(ops.stop_gradient(rows[::SHIFT_STRIDE]), "float32")
        shift = ops.cast(ops.mean(sample, axis=0), rows.dtype)
        rows = rows - shift
        count = ops.shape(rows)[0]
        ones = ops.ones((1, count), dtype=rows.dtype)
        inv_count = 1.0 / ops.cast(count, "float32")
        delta = ops.cast(ops.matmul(ones, rows)[0], "float32") * inv_count
        mean_square = ops.cast(ops.matmul(ones, ops.square(rows))[0], "float32") * inv_count
        mean = ops.cast(shift, "float32") + delta
        return mean, ops.maximum(mean_square - ops.square(delta), 0.0)

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
