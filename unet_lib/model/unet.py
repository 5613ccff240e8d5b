"""The U-Net of Ronneberger et al. (2015) as a Keras 3 functional model (``keras`` only, so
any backend): ``depth`` encoder levels, a bottleneck, ``depth`` decoder levels and the head, from
:mod:`unet_lib.model.blocks`. The defaults give the paper's layout, 31,030,593 parameters."""

import keras
from keras import layers

from unet_lib.model.blocks import conv_block, decoder_block, encoder_block, segmentation_head
from unet_lib.model.blocks import intensity_scaling as scaling_layer
from unet_lib.model.encoders import ENCODER_DEPTH, decoder_filters, encoder_features
from unet_lib.model.sizes import check_spatial_size, skip_crop

UPSAMPLING_MODES = ("transpose", "bilinear")
PADDING_MODES = ("same", "valid")


def build_unet(input_shape=(None, None, 1), num_classes: int = 1, *, depth: int = 4,
               base_filters: int = 64, convs_per_level: int = 2, batch_norm: bool = False,
               dropout: float = 0.0, upsampling: str = "transpose", padding: str = "same",
               output_activation="auto", intensity_scaling=None, encoder: str | None = None,
               encoder_weights=None, freeze_encoder: bool = False,
               name: str = "unet") -> keras.Model:  # fmt: skip
    """Build an uncompiled U-Net; level ``i`` (0 at full resolution) has
    ``base_filters * 2**i`` channels, the bottleneck ``base_filters * 2**depth``.

    Args:
        input_shape: ``(height, width, channels)``; height and width may be ``None``.
        num_classes: Output channels: 1 for binary (sigmoid), K >= 2 for K classes (softmax).
        depth: Number of poolings (paper: 4).
        base_filters: Channels of the first level (paper: 64).
        convs_per_level: 3x3 convolutions per level (paper: 2).
        batch_norm: :class:`BatchNorm` after each convolution.
        dropout: Dropout rate of the deepest encoder level and the bottleneck (as the paper).
        upsampling: ``"transpose"`` (the paper's up-convolution) or ``"bilinear"``.
        padding: ``"same"`` (output size = input size, which must divide by ``2**depth``)
            or ``"valid"`` (the paper's unpadded convolutions and cropped skips).
        output_activation: ``"auto"`` (sigmoid for one class, softmax for several), a Keras
            activation name, or ``None`` for logits.
        intensity_scaling: ``None``, or one ``(low, high)`` per channel mapped to ``(0, 1)``
            by the model's first layer (:func:`~unet_lib.model.blocks.intensity_scaling`).
        encoder: ``None`` (the paper's encoder) or a ``keras.applications`` backbone from
            :data:`~unet_lib.model.encoders.ENCODERS` (``"resnet50"``, ``"vgg16"``,
            ``"mobilenetv2"``, ``"efficientnetb0"``): its strides 2-16 are the skips, five
            decoder levels of ``base_filters * (16, 8, 4, 2, 1)`` channels follow, sizes divide
            by 32 and ``depth`` is not used.
        encoder_weights: ``None`` (random), ``"imagenet"`` (downloaded by Keras) or the path
            of the backbone's weights file (an offline machine).
        freeze_encoder: the backbone's layers are not trainable.
        name: Model name.

    Example:
        >>> build_unet((256, 256, 1), num_classes=3, base_filters=16).output_shape
        (None, 256, 256, 3)
    """
    if encoder is not None:
        depth = ENCODER_DEPTH
        if padding != "same":
            raise ValueError("an encoder U-Net takes padding='same' only; drop padding='valid'")
    _validate_arguments(
        input_shape, num_classes, depth, base_filters, convs_per_level, dropout, upsampling, padding
    )
    if output_activation == "auto":
        output_activation = "sigmoid" if num_classes == 1 else "softmax"
    conv_kwargs = dict(convs=convs_per_level, padding=padding, batch_norm=batch_norm)
    inputs = x = keras.Input(shape=tuple(input_shape), name="image")
    if intensity_scaling is not None:
        x = scaling_layer(intensity_scaling, input_shape[-1])(x)
    if encoder is not None:
        x = _encoder_path(x, encoder, input_shape[-1], encoder_weights, freeze_encoder,
                          base_filters, upsampling, conv_kwargs)  # fmt: skip
    else:
        x = _paper_path(x, depth, base_filters, dropout, upsampling, conv_kwargs)
    outputs = segmentation_head(x, num_classes, output_activation)
    return keras.Model(inputs, outputs, name=name)


def _paper_path(x, depth, base_filters, dropout, upsampling, conv_kwargs):
    """The paper's contracting path, bottleneck and expanding path on ``x``."""
    skips = []
    for level in range(depth):
        rate = dropout if level == depth - 1 else 0.0
        filters = base_filters * 2**level
        skip, x = encoder_block(x, filters, dropout=rate, name=f"enc{level + 1}", **conv_kwargs)
        skips.append(skip)
    x = conv_block(x, base_filters * 2**depth, name="bottleneck", **conv_kwargs)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)
    valid = conv_kwargs["padding"] == "valid"
    for level in reversed(range(depth)):
        crop = skip_crop(level, depth, conv_kwargs["convs"]) if valid else 0
        x = decoder_block(
            x, skips[level], base_filters * 2**level, upsampling=upsampling, crop=crop,
            name=f"dec{level + 1}", **conv_kwargs,
        )  # fmt: skip
    return x


def _encoder_path(x, encoder, channels, weights, freeze, base_filters, upsampling, conv_kwargs):
    """A backbone's skips and bottleneck on ``x``, then five decoder levels (the last one
    without a skip: no backbone keeps a full-resolution feature map)."""
    skips, x = encoder_features(x, encoder, channels, weights, freeze)
    widths = decoder_filters(base_filters)
    for level, skip in zip(range(ENCODER_DEPTH, 0, -1), [*reversed(skips), None], strict=True):
        x = decoder_block(x, skip, widths[ENCODER_DEPTH - level], upsampling=upsampling,
                          name=f"dec{level}", **conv_kwargs)  # fmt: skip
    return x


def _validate_arguments(
    input_shape, num_classes, depth, base_filters, convs_per_level, dropout, upsampling, padding
):
    if len(tuple(input_shape)) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}; "
            "for grey images use (None, None, 1)."
        )
    height, width, channels = input_shape
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"the channel count must be a positive int, got {channels!r}.")
    counts = dict(num_classes=num_classes, depth=depth, base_filters=base_filters)
    for label, value in {**counts, "convs_per_level": convs_per_level}.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {upsampling!r}.")
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}.")
    for axis, size in (("height", height), ("width", width)):
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"input {axis} must be None or a positive int, got {size!r}.")
        check_spatial_size(size, depth, padding, convs_per_level, axis)
