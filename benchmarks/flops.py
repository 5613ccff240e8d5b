"""Forward FLOPs of a Keras model, counted layer by layer from the shapes it sees.

Convention (the one used to quote GFLOP/s against a matmul peak): a multiply-add is 2 FLOPs.

* ``Conv2D``: ``2 * H_out * W_out * kh * kw * C_in / groups * C_out`` (+ ``H_out W_out C_out``
  for the bias);
* ``Conv2DTranspose``: ``2 * H_in * W_in * kh * kw * C_in * C_out`` (every input pixel
  scatters a ``kh x kw x C_out`` patch) (+ bias);
* ``Dense``: ``2 * rows * C_in * C_out`` (+ bias);
* element-wise layers (batch norm 2 / element at inference, activations, pooling windows,
  additions) are counted separately as ``elementwise``: they are memory-bound, and a matmul
  peak says nothing about them.

Training costs about 3x the forward pass (forward, gradient with respect to the activations,
gradient with respect to the weights, each the size of the forward convolution).

Example:
    >>> counts = count_flops(model, (1, 256, 256, 1))
    >>> counts.matmul / 1e9  # GFLOP per image, forward
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class FlopCount:
    """Forward FLOPs of one model call: ``matmul`` (convolutions, dense) and ``elementwise``."""

    matmul: int = 0
    elementwise: int = 0
    per_layer: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.matmul + self.elementwise


def _size(shape) -> int:
    return int(math.prod(int(d) for d in shape))


def layer_flops(layer, input_shapes, output_shapes) -> tuple[int, int]:
    """``(matmul, elementwise)`` FLOPs of one layer call, given concrete shapes."""
    import keras

    layers = keras.layers
    out = output_shapes[0]
    x = input_shapes[0] if input_shapes else out
    if isinstance(layer, layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        b, h, w, cin = x
        cout = out[-1]
        bias = _size(out) if layer.use_bias else 0
        return 2 * b * h * w * kh * kw * cin * cout, bias + _activation(layer, out)
    if isinstance(layer, layers.Conv2D | layers.Conv1D | layers.Conv3D):
        groups = getattr(layer, "groups", 1) or 1
        cin = x[-1]
        kernel = math.prod(layer.kernel_size)
        bias = _size(out) if layer.use_bias else 0
        macs = _size(out) * kernel * (cin // groups)
        return 2 * macs, bias + _activation(layer, out)
    if isinstance(layer, layers.Dense):
        rows = _size(x[:-1])
        bias = _size(out) if layer.use_bias else 0
        return 2 * rows * x[-1] * out[-1], bias + _activation(layer, out)
    if isinstance(layer, layers.BatchNormalization):
        return 0, 2 * _size(out)  # scale and shift (folded statistics)
    if isinstance(layer, layers.MaxPooling2D | layers.AveragePooling2D):
        return 0, _size(out) * math.prod(layer.pool_size)
    if isinstance(layer, layers.Activation | layers.ReLU | layers.Softmax):
        return 0, _size(out)
    if isinstance(layer, layers.Add | layers.Multiply | layers.Subtract | layers.Average):
        return 0, _size(out) * (len(input_shapes) - 1)
    if isinstance(layer, layers.UpSampling2D):
        return 0, _size(out) * (4 if layer.interpolation == "bilinear" else 0)
    return 0, 0  # reshaping, concatenation, cropping, dropout, input


def _activation(layer, out) -> int:
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "linear")
    return 0 if name == "linear" else _size(out)


def count_flops(model, input_shape) -> FlopCount:
    """Forward FLOPs of ``model`` on inputs of ``input_shape`` (batch included).

    Args:
        model: A functional (or built Sequential) Keras model; nested models are descended.
        input_shape: Concrete ``(B, H, W, C)``.

    Returns:
        A :class:`FlopCount`; ``per_layer`` maps layer names to their matmul + elementwise.
    """
    import keras

    count = FlopCount()
    _walk(model, [keras.KerasTensor(tuple(input_shape), dtype="float32")], count)
    return count


def _functional(model):
    inner = getattr(model, "_functional", None)  # a built Sequential keeps one
    return inner if inner is not None else model


def _walk(model, inputs, count: FlopCount, prefix: str = ""):
    import keras
    from keras import tree

    graph = _functional(model)

    def call(op, *args, **kwargs):
        if isinstance(op, keras.Model):
            flat_in = [a for a in tree.flatten((args, kwargs)) if isinstance(a, keras.KerasTensor)]
            return _walk(op, flat_in, count, prefix + op.name + "/")
        spec = op.compute_output_spec(*args, **kwargs)
        ins = [a.shape for a in tree.flatten((args, kwargs)) if isinstance(a, keras.KerasTensor)]
        outs = [s.shape for s in tree.flatten(spec)]
        matmul, elementwise = layer_flops(op, ins, outs)
        count.matmul += matmul
        count.elementwise += elementwise
        if matmul or elementwise:
            count.per_layer[prefix + op.name] = matmul + elementwise
        return spec

    return graph._run_through_graph(inputs, operation_fn=lambda op: op, call_fn=call)
