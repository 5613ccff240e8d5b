"""Pretrained encoders: a U-Net decoder on a ``keras.applications`` backbone (as
segmentation_models does), with ImageNet weights from Keras' server or from a local file.

The backbone's feature maps at strides 2, 4, 8 and 16 are the skips and its stride-32 output
the bottleneck (:data:`ENCODERS`, one line per backbone); five decoder levels bring the
result back to full size, so inputs must divide by 32 (:data:`ENCODER_STRIDE`). The model
takes images in [0, 1] like every U-Net here: its first layer, ``encoder_input``, a fixed
1x1 convolution, does the backbone's own preprocessing (``caffe``: x 255, RGB -> BGR, minus
the ImageNet means; ``tf``: 2x - 1; ``efficientnet``: x 255, and the ImageNet standard
deviations when its weights are loaded) and maps the channels:

- 3 channels: RGB as the backbone expects;
- 1 channel: the grey value fed to all three colour inputs (exactly a grey RGB image);
- 4 or more: the first three as RGB, the others with weight 0 at first; the layer is then
  trainable, so the network can learn to use them.

Example:
    >>> model = build_encoder_unet((None, None, 3), 2, encoder="resnet50")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

ENCODER_STRIDE = 32
ENCODER_DEPTH = int(math.log2(ENCODER_STRIDE))  # the halvings of every encoder: 5
#: The momentum every backbone batch norm trains at: PyTorch's default (0.1 there), where
#: Keras builds these backbones with 0.99 or 0.999, at which the statistics that inference
#: uses lag a short run by hundreds of steps (docs/design.md).
BN_MOMENTUM = 0.9
WEIGHTS = (None, "imagenet")
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


@dataclass(frozen=True)
class Encoder:
    """A ``keras.applications`` backbone: its builder, the layers whose outputs are the skips
    (strides 2, 4, 8, 16) and the bottleneck (stride 32), its preprocessing, and where Keras
    keeps its ImageNet weights without the classifier (``url``)."""

    application: str
    skips: tuple[str, str, str, str]
    bottleneck: str
    preprocessing: str  # "caffe", "tf" or "efficientnet"
    url: str

    def build(self, input_tensor=None, weights=None):
        make = getattr(keras.applications, self.application)
        shape = None if input_tensor is not None else (None, None, 3)
        return make(include_top=False, weights=weights, input_tensor=input_tensor,
                    input_shape=shape)  # fmt: skip


_GCS = "https://storage.googleapis.com/tensorflow/keras-applications"
#: name -> backbone; the skip layers are checked by a test that builds each.
ENCODERS = {
    "resnet50": Encoder(
        "ResNet50", ("conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out"),
        "conv5_block3_out", "caffe",
        f"{_GCS}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "vgg16": Encoder(
        "VGG16", ("block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"),
        "block5_pool", "caffe",
        f"{_GCS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "mobilenetv2": Encoder(
        "MobileNetV2",
        ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu",
         "block_13_expand_relu"),
        "out_relu", "tf",
        f"{_GCS}/mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "efficientnetb0": Encoder(
        "EfficientNetB0",
        ("block2a_expand_activation", "block3a_expand_activation",
         "block4a_expand_activation", "block6a_expand_activation"),
        "top_activation", "efficientnet",
        "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
    ),
}  # fmt: skip


def check_encoder(encoder: str, encoder_weights) -> Encoder:
    """The :class:`Encoder` named ``encoder``; raises ValueError naming the choices."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {sorted(ENCODERS)} (or None: the plain U-Net), "
                         f"got {encoder!r}")  # fmt: skip
    if encoder_weights not in WEIGHTS and not isinstance(encoder_weights, str | os.PathLike):
        raise ValueError(f"encoder_weights must be None, 'imagenet' or the path of a weights "
                         f"file, got {encoder_weights!r}")  # fmt: skip
    if encoder_weights not in WEIGHTS and not Path(encoder_weights).is_file():
        url = ENCODERS[encoder].url
        raise ValueError(f"encoder_weights: no file at {encoder_weights}; give the .h5 weights "
                         f"of {encoder} without its classifier ({url})")  # fmt: skip
    return ENCODERS[encoder]


def input_adapter(spec: Encoder, channels: int, pretrained: bool) -> layers.Conv2D:
    """The fixed 1x1 convolution ``encoder_input`` (module docstring): [0, 1] images of
    ``channels`` channels to what the backbone expects."""
    rgb = np.zeros((channels, 3))
    if channels >= 3:
        rgb[[0, 1, 2], [0, 1, 2]] = 1.0  # extra channels: weight 0 until trained
    else:
        rgb[0, :] = 1.0  # grey: the same value to every colour
    if spec.preprocessing == "caffe":  # x 255, BGR order, minus the means
        kernel, bias = 255.0 * rgb[:, ::-1], -np.array(_CAFFE_MEAN_RGB[::-1])
    elif spec.preprocessing == "tf":  # 2x - 1
        kernel, bias = 2.0 * rgb, -np.ones(3)
    else:  # x 255; with ImageNet weights also what Keras adds after its own normalisation
        std = np.sqrt(_IMAGENET_STD_RGB) if pretrained else np.ones(3)
        mean = np.array(_IMAGENET_MEAN_RGB)
        kernel, bias = 255.0 * rgb / std, 255.0 * mean * (1.0 - 1.0 / std)
    layer = layers.Conv2D(3, 1, name="encoder_input", dtype="float32")
    layer.build((None, None, None, channels))
    layer.set_weights([kernel[None, None].astype("float32"), bias.astype("float32")])
    layer.trainable = channels not in (1, 3)  # learns to use the extra channels
    return layer


def imagenet_weights(name: str, spec: Encoder, weights) -> keras.Model:
    """A plain backbone holding the requested weights (``"imagenet"``: Keras downloads them;
    a path: that file), to copy from; offline, one line says how to pass a local file."""
    if weights == "imagenet":
        try:
            return spec.build(weights="imagenet")
        except Exception as error:  # noqa: BLE001 - urllib, OSError, ... on an offline machine
            raise ValueError(
                f"encoder_weights='imagenet': the {name} weights could not be downloaded "
                f"({type(error).__name__}); download {spec.url} on a machine that is online "
                "and pass its path instead: encoder_weights='PATH' (--encoder-weights PATH)"
            ) from None
    backbone = spec.build()
    try:
        backbone.load_weights(os.fspath(weights))
    except Exception as error:  # noqa: BLE001 - h5py / Keras raise many kinds for a wrong file
        raise ValueError(
            f"encoder_weights: {weights} does not hold the {name} backbone's weights without "
            f"its classifier ({error}); the right file is {spec.url.rsplit('/', 1)[1]}"
        ) from None
    return backbone


def copy_backbone_weights(source, target, skip=("encoder_input",)) -> int:
    """Copies the weighted layers of ``source`` into those of ``target`` (but ``skip``), in
    graph order: automatic names (``normalization_1``) differ between two builds in one
    process, the order and shapes do not. Returns how many layers; raises on a mismatch."""
    sources = [layer for layer in source.layers if layer.weights]
    targets = [layer for layer in target.layers if layer.weights and layer.name not in skip]
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} weighted layers to copy into {len(targets)}")
    for a, b in zip(sources, targets, strict=True):
        values = a.get_weights()
        if type(a) is not type(b) or [v.shape for v in values] != [
                tuple(w.shape) for w in b.weights]:  # fmt: skip
            raise ValueError(f"layer {a.name} does not match {b.name}")
        b.set_weights(values)
    return len(sources)


def encoder_features(x, name: str, channels: int, encoder_weights=None, freeze: bool = False):
    """The backbone applied to ``x`` (images in [0, 1]): ``(skips, bottleneck)`` tensors at
    strides 2, 4, 8, 16 and 32. Its layers join the calling graph (no nested model), named
    as in ``keras.applications``, their batch norms' momentum :data:`BN_MOMENTUM`;
    ``freeze`` makes them not trainable."""
    spec = check_encoder(name, encoder_weights)
    pretrained = encoder_weights is not None
    x = input_adapter(spec, channels, pretrained)(x)
    backbone = spec.build(input_tensor=x)
    if pretrained:
        copy_backbone_weights(imagenet_weights(name, spec, encoder_weights), backbone)
    stem = {"encoder_input"}
    for layer in backbone.layers:
        if layer.name not in stem and not isinstance(layer, keras.layers.InputLayer):
            layer.trainable = not freeze
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    skips = [backbone.get_layer(n).output for n in spec.skips]
    return skips, backbone.get_layer(spec.bottleneck).output


def decoder_filters(base_filters: int) -> tuple[int, ...]:
    """Decoder widths from stride 16 to full size: ``base_filters * (16, 8, 4, 2, 1)``."""
    return tuple(base_filters * 2**k for k in range(4, -1, -1))


def backbone_layers(model: keras.Model, encoder: str) -> list:
    """The layers of ``encoder``'s backbone in an encoder U-Net (all up to its bottleneck but
    the input and its adapters), e.g. to freeze them for a warm-up.

    Example:
        >>> model = build_unet((64, 64, 3), 1, encoder="vgg16")  # doctest: +SKIP
        >>> [layer.name for layer in backbone_layers(model, "vgg16")][:2]  # doctest: +SKIP
        ['block1_conv1', 'block1_conv2']
    """
    names = [layer.name for layer in model.layers]
    bottleneck = check_encoder(encoder, None).bottleneck
    if bottleneck not in names:
        raise ValueError(f"{model.name} is not a U-Net on a {encoder} encoder (no {bottleneck})")
    own = {"encoder_input", "intensity_scaling"}
    layers_ = model.layers[: names.index(bottleneck) + 1]
    return [x for x in layers_ if x.name not in own and not isinstance(x, keras.layers.InputLayer)]
