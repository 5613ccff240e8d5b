"""The model that prediction runs: a copy with batch norm folded, in bfloat16, compiled.

:func:`inference_copy` folds each batch norm into the ``Conv2D`` before it (``k' = k * s``,
``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``); in ``"bfloat16"`` its layers
compute under ``mixed_bfloat16`` except the head (output layers and the cheap layers feeding
them) and the stem (a convolution reading an input of <= 4 channels). On TensorFlow it runs
compiled (``predict_on_batch``). :func:`runner` caches it per model and precision.
"""

import functools
import weakref

import keras
import numpy as np

PRECISIONS = ("auto", "float32", "bfloat16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_HEAD_LAYERS = (keras.layers.Activation, keras.layers.Softmax, keras.layers.ReLU)
_STEM_LAYERS = (keras.layers.Rescaling, keras.layers.Conv2D)
_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    """``"float32"`` or ``"bfloat16"`` for ``precision`` in :data:`PRECISIONS` (else ValueError)."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {PRECISIONS}, got {precision!r}; 'auto' picks "
            "bfloat16 on CPUs with AVX-512 BF16, else float32."
        )
    return default_precision()[0] if precision == "auto" else precision


class FoldedBatchNorm(keras.layers.Layer):
    """Pass-through left where a batch norm was folded into the convolution before it."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _source(tensor):
    return tensor._keras_history.operation


def fold_plan(model) -> dict[str, str]:
    """``{batch_norm_name: conv_name}`` for the foldable ``Conv2D -> BatchNormalization`` pairs."""
    plan = {}
    for bn in model.layers:
        if not isinstance(bn, keras.layers.BatchNormalization) or len(bn._inbound_nodes) != 1:
            continue
        conv = _source(bn._inbound_nodes[0].input_tensors[0])
        activation = getattr(conv, "activation", None)
        if (
            type(conv) is keras.layers.Conv2D
            and conv.data_format == "channels_last"
            and (isinstance(bn.axis, int) and bn.axis in (-1, 3))
            and (activation is None or getattr(activation, "__name__", "") == "linear")
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
    """Convolutions reading an input of <= 4 channels (its bfloat16 rounding flips most
    labels), and the ``Rescaling`` layers between them and the input (which count as it)."""
    inputs = {id(t) for t in model.inputs}
    keep = set()
    for layer in model.layers:  # in graph order: a Rescaling comes before the conv it feeds
        nodes = layer._inbound_nodes if isinstance(layer, _STEM_LAYERS) else ()
        tensors = nodes[0].input_tensors if len(nodes) == 1 else ()
        if len(tensors) == 1 and id(tensors[0]) in inputs and (tensors[0].shape[-1] or 99) <= 4:
            keep.add(layer.name)
            if isinstance(layer, keras.layers.Rescaling):
                inputs |= {id(t) for t in nodes[0].outputs}
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
    """A copy of ``model`` (functional or Sequential without nested models, else ``None``)
    with batch norm folded, layers in ``precision`` except ``float32_layers``; weights copied.
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

    kernel = value(conv.kernel)
    bias = value(conv.bias) if conv.use_bias else 0.0
    gamma = value(bn.gamma) if bn.scale else 1.0
    beta = value(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(value(bn.moving_variance) + bn.epsilon)
    new_bias = (bias - value(bn.moving_mean)) * scale + beta
    return [(kernel * scale).astype(np.float32), np.asarray(new_bias, np.float32)]


def _fingerprint(model) -> tuple:
    """Cheap summary of the weights (sum and sum of squares per array): changes on training."""
    flats = [np.asarray(w, np.float32).ravel() for w in model.get_weights()]
    return tuple((f.size, float(f.sum()), float(np.dot(f, f))) for f in flats)


class Runner:
    """Runs a model (or its inference copy) on a float32 batch; returns float32 numpy."""

    def __init__(self, model, precision: str):
        self.precision, self.copy, self._fingerprint = precision, None, None
        dtypes = {getattr(layer.dtype_policy, "name", "float32") for layer in model.layers}
        foldable = _clonable(model) and bool(fold_plan(model))
        if foldable or dtypes - {"float32"} != {_POLICY[precision]} - {"float32"}:
            self.copy = inference_copy(model, precision)
            if self.copy is None and precision == "bfloat16":
                raise ValueError(
                    "precision='bfloat16' needs a functional or Sequential model without nested "
                    "models (it is copied under a bfloat16 policy); use precision='float32'."
                )
            self._fingerprint = _fingerprint(model) if self.copy is not None else None
        self._compiled = keras.backend.backend() == "tensorflow"

    def refresh(self, model) -> None:
        """Copies the weights again if ``model``'s weights changed since the last call."""
        if self.copy is not None and (current := _fingerprint(model)) != self._fingerprint:
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


def model_forward(model, precision: str, from_logits: bool = False):
    """``x -> probabilities`` (writeable float32): ``model`` run by its :func:`runner`,
    sigmoid / softmax on logits."""
    run = runner(model, precision)

    def forward(x: np.ndarray) -> np.ndarray:
        y = run(model, x)
        y = y if y.flags.writeable else y.copy()
        if from_logits:
            if y.shape[-1] == 1:
                return 0.5 * (1.0 + np.tanh(0.5 * y))
            y = np.exp(y - y.max(axis=-1, keepdims=True))
            y /= y.sum(axis=-1, keepdims=True)
        return y

    return forward


def runner(model, precision: str = "auto") -> Runner:
    """The cached :class:`Runner` of ``model`` in ``precision``, weights up to date."""
    precision = resolve_precision(precision)
    try:
        cache = _RUNNERS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        cache = {}
    if precision in cache:
        cache[precision].refresh(model)
    else:
        cache[precision] = Runner(model, precision)
    return cache[precision]
