"""The model that :mod:`unet_lib.inference.predictor` runs: batch norm folded, bfloat16, compiled.

Prediction does not need the training graph, so :func:`inference_copy` makes a copy of a
functional (or Sequential) Keras model for inference only:

* **batch norm folded**: a ``Conv2D`` whose only consumer is a ``BatchNormalization`` gets
  the normalisation folded into its kernel and bias (``k' = k * s``,
  ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``) and the batch-norm
  layer becomes a pass-through: four passes over every activation map fewer (bias, the
  float32 up-cast Keras does for batch norm under mixed precision, scale, shift);
* **bfloat16** (``precision="bfloat16"``): every layer computes under Keras's
  ``mixed_bfloat16`` policy (weights stay float32) except two cheap ends that stay float32:
  the head (the output layers and the 1x1 convolutions / activations that feed them) and
  the stem (a convolution reading the float32 input of at most 4 channels: rounding the
  input to bfloat16 caused most label flips);
* **compiled**: on the TensorFlow backend the copy runs through ``predict_on_batch``, a
  ``tf.function`` graph (Grappler / oneDNN fusions), instead of op-by-op eager calls.

:func:`runner` caches the copy per model and precision, and copies the weights again when the
model's weights changed since (checked once per :func:`~unet_lib.inference.predictor.predict` call).

``precision="auto"`` (:func:`resolve_precision`) picks bfloat16 on a CPU with AVX-512 BF16 or
AMX (``avx512_bf16`` / ``amx_bf16`` in ``/proc/cpuinfo``) when TensorFlow runs the model on
the CPU: measured on a 2-core Zen 5 (``benchmarks/README.md``) it predicts about twice as fast
as float32 with at least 99.9 % of the labels of float32 on a trained U-Net. Everywhere else
(GPUs, CPUs without BF16 units, the JAX and PyTorch backends) ``"auto"`` is float32.

Only ``keras`` and ``numpy`` are imported (TensorFlow only when it is the Keras backend).

Example:
    >>> run = runner(model, "bfloat16")
    >>> probabilities = run(batch)  # float32 numpy, (B, H, W, num_classes)
"""

from __future__ import annotations

import functools
import weakref

import keras
import numpy as np

PRECISIONS = ("auto", "float32", "bfloat16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_HEAD_LAYERS = (keras.layers.Activation, keras.layers.Softmax, keras.layers.ReLU)
_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ----------------------------------------------------------------------------- precision
@functools.cache
def default_precision() -> tuple[str, str]:
    """``(precision, reason)`` that ``precision="auto"`` resolves to on this machine."""
    if keras.backend.backend() != "tensorflow":
        return "float32", f"the {keras.backend.backend()} backend: float32 (bfloat16 not measured)"
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return "float32", "an accelerator runs the model: float32 (bfloat16 not measured there)"
    from unet_lib import runtime

    flags = runtime.read_cpu_flags() & {"avx512_bf16", "amx_bf16"}
    if flags:
        return "bfloat16", f"CPU with {', '.join(sorted(flags))}: bfloat16 (about 2x float32)"
    return "float32", "CPU without AVX-512 BF16 / AMX: float32 (bfloat16 would be emulated)"


def resolve_precision(precision: str = "auto") -> str:
    """``"float32"`` or ``"bfloat16"`` for ``precision`` in :data:`PRECISIONS`.

    Raises:
        ValueError: for any other value.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return default_precision()[0] if precision == "auto" else precision


# ----------------------------------------------------------------------------- the copy
class FoldedBatchNorm(keras.layers.Layer):
    """Pass-through left where a batch norm was folded into the convolution before it."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _source(tensor):
    return tensor._keras_history.operation


def _is_linear(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or getattr(activation, "__name__", "") == "linear"


def fold_plan(model) -> dict[str, str]:
    """``{batch_norm_name: conv_name}`` for the foldable ``Conv2D -> BatchNormalization`` pairs."""
    plan = {}
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization) or len(bn._inbound_nodes) != 1:
            continue
        conv = _source(bn._inbound_nodes[0].input_tensors[0])
        axis = bn.axis if isinstance(bn.axis, int) else None
        if (
            type(conv) is keras.layers.Conv2D
            and conv.data_format == "channels_last"
            and axis in (-1, 3)
            and _is_linear(conv)
            and len(conv._inbound_nodes) == 1
            and len(conv._outbound_nodes) == 1
        ):
            plan[bn.name] = conv.name
    return plan


def _float32_head(model) -> set[str]:
    """The output layers and the cheap layers (1x1 convolutions, activations) feeding them."""
    keep, todo = set(), [_source(t) for t in model.outputs]
    while todo:
        layer = todo.pop()
        if layer.name in keep:
            continue
        keep.add(layer.name)
        cheap = isinstance(layer, _HEAD_LAYERS) or (
            isinstance(layer, keras.layers.Conv2D | keras.layers.Dense)
            and all(k == 1 for k in getattr(layer, "kernel_size", (1,)))
        )
        if cheap and len(layer._inbound_nodes) == 1:
            todo += [_source(t) for t in layer._inbound_nodes[0].input_tensors]
    return keep


def _float32_stem(model) -> set[str]:
    """Convolutions reading the model's input with at most 4 channels (a few % of the FLOPs).

    The input rounded to bfloat16 (8 significant bits) is the largest single source of label
    flips; computing the first convolution from the float32 input removes most of them.
    """
    inputs = {id(t) for t in model.inputs}
    keep = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D) or len(layer._inbound_nodes) != 1:
            continue
        tensors = layer._inbound_nodes[0].input_tensors
        if len(tensors) == 1 and id(tensors[0]) in inputs and (tensors[0].shape[-1] or 99) <= 4:
            keep.add(layer.name)
    return keep


def _clonable(model) -> bool:
    inner = getattr(model, "_functional", None)  # a built Sequential keeps one
    graph = model if inner is None else inner
    if not isinstance(graph, keras.Model) or not hasattr(graph, "_nodes_by_depth"):
        return False  # a subclassed model: no graph to copy
    return not any(isinstance(layer, keras.Model) for layer in model.layers)


def inference_copy(
    model, precision: str = "float32", *, fold_batch_norm: bool = True, float32_layers=()
):
    """A copy of ``model`` for inference: batch norm folded, layers in ``precision``.

    Args:
        model: A functional or Sequential Keras model without nested models.
        precision: ``"float32"`` or ``"bfloat16"`` (computed under ``mixed_bfloat16``,
            float32 head).
        fold_batch_norm: Fold ``Conv2D -> BatchNormalization`` pairs.
        float32_layers: Names of further layers to keep in float32.

    Returns:
        The copy (weights copied), or ``None`` where the model cannot be copied (subclassed
        models, nested models).

    Example:
        >>> fast = inference_copy(model, "bfloat16")
        >>> fast.predict_on_batch(x)
    """
    policy = _POLICY[resolve_precision(precision)]
    if not _clonable(model):
        return None
    plan = fold_plan(model) if fold_batch_norm else {}
    convs = set(plan.values())
    head = _float32_head(model) | _float32_stem(model) | set(float32_layers)

    def clone(layer):
        config = layer.get_config()
        if layer.name not in head:
            config["dtype"] = policy
        if layer.name in plan:
            return FoldedBatchNorm(name=layer.name, dtype=config.get("dtype"))
        if layer.name in convs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy._unet_fold_plan = plan
    copy_weights(model, copy)
    return copy


def copy_weights(model, copy) -> None:
    """Copies ``model``'s weights into its :func:`inference_copy`, folding batch norms."""
    plan = getattr(copy, "_unet_fold_plan", {})
    layers = {layer.name: layer for layer in model.layers}
    folded = {conv: _fold(layers[conv], layers[bn]) for bn, conv in plan.items()}
    for layer in copy.layers:
        if layer.name in folded:
            layer.set_weights(folded[layer.name])
        elif layer.weights:
            layer.set_weights(layers[layer.name].get_weights())


def _fold(conv, bn) -> list[np.ndarray]:
    def value(v):
        return keras.ops.convert_to_numpy(v).astype(np.float64)

    weights = conv.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if conv.use_bias else 0.0
    gamma = value(bn.gamma) if bn.scale else 1.0
    beta = value(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(value(bn.moving_variance) + bn.epsilon)
    new_bias = (bias - value(bn.moving_mean)) * scale + beta
    return [(kernel * scale).astype(np.float32), np.asarray(new_bias, np.float32)]


# ----------------------------------------------------------------------------- running
def _fingerprint(model) -> tuple:
    """Cheap summary of the weights (sum and sum of squares per array): changes on training."""
    out = []
    for w in model.get_weights():
        flat = np.asarray(w, np.float32).ravel()
        out.append((flat.size, float(flat.sum()), float(np.dot(flat, flat))))
    return tuple(out)


class Runner:
    """Runs a model (or its inference copy) on a float32 batch; returns float32 numpy."""

    def __init__(self, model, precision: str):
        self.precision = precision
        self.copy = None
        self._fingerprint = None
        wanted = _POLICY[precision]
        dtypes = {getattr(layer.dtype_policy, "name", "float32") for layer in model.layers}
        needs_copy = bool(fold_plan(model)) if _clonable(model) else False
        needs_copy = needs_copy or dtypes - {"float32"} != ({wanted} - {"float32"})
        if needs_copy:
            self.copy = inference_copy(model, precision)
            if self.copy is None and precision == "bfloat16":
                raise ValueError(
                    "precision='bfloat16' needs a functional or Sequential model without "
                    "nested models (it is copied under a bfloat16 policy); use "
                    "precision='float32'."
                )
            self._fingerprint = _fingerprint(model) if self.copy is not None else None
        self._compiled = keras.backend.backend() == "tensorflow"

    def refresh(self, model) -> None:
        """Copies the weights again if ``model``'s weights changed since the last call."""
        if self.copy is None:
            return
        current = _fingerprint(model)
        if current != self._fingerprint:
            copy_weights(model, self.copy)
            self._fingerprint = current

    def __call__(self, model, x: np.ndarray) -> np.ndarray:
        target = self.copy if self.copy is not None else model
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._compiled:
            y = target.predict_on_batch(x)
        else:
            y = keras.ops.convert_to_numpy(target(x, training=False))
        return np.asarray(y).astype(np.float32, copy=False)


def runner(model, precision: str = "auto") -> Runner:
    """The cached :class:`Runner` of ``model`` in ``precision``, weights up to date."""
    precision = resolve_precision(precision)
    try:
        cache = _RUNNERS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        cache = {}
    run = cache.get(precision)
    if run is None:
        run = cache[precision] = Runner(model, precision)
    else:
        run.refresh(model)
    return run
