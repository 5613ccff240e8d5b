"""The U-Net of Ronneberger et al. (2015) as a Keras 3 functional model.

The network is put together from three small builders, so each part can be read, tested and
reused on its own:

* :func:`encoder_block` - convolutions, then 2x2 max pooling (the contracting path);
* :func:`decoder_block` - 2x up-sampling, concatenation with the skip connection (centre
  cropped when convolutions are unpadded), then convolutions (the expanding path);
* :func:`segmentation_head` - a 1x1 convolution to ``num_classes`` channels and the output
  activation, kept in float32 so mixed-precision training stays numerically safe.

With the defaults (depth 4, 64 base filters, two 3x3 convolutions per level, transposed-conv
up-sampling, no batch norm, one output class) the model has the paper's layout and exactly
31,030,593 parameters.

Sizes: with ``padding="same"`` every spatial size must divide by ``2**depth``
(:func:`padded_size` gives the size to pad to). With ``padding="valid"`` (the paper's
variant) the output is smaller than the input; :func:`valid_output_size` and
:func:`valid_input_size` convert between the two (572 -> 388 for the paper's network).

Only ``keras`` is imported, so the model runs on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from unet_lib.model.batchnorm import BatchNorm

UPSAMPLING_MODES = ("transpose", "bilinear")
PADDING_MODES = ("same", "valid")
_AUTO = "auto"


# ----------------------------------------------------------------------------- size helpers
def padded_size(size: int, depth: int) -> int:
    """Smallest size >= ``size`` that divides by ``2**depth`` (for ``padding="same"``).

    Example:
        >>> padded_size(360, 4)
        368
    """
    multiple = 2**depth
    return int(math.ceil(size / multiple) * multiple)


def valid_output_size(input_size: int, depth: int = 4, convs_per_level: int = 2) -> int:
    """Output size of a ``padding="valid"`` U-Net for a given input size.

    Each unpadded 3x3 convolution removes 2 pixels; each pooling halves the size, which must
    then be even so that the up-sampled maps align with the cropped skip connections.

    Args:
        input_size: Height or width of the input.
        depth: Number of pooling steps.
        convs_per_level: 3x3 convolutions per level.

    Returns:
        The output height or width.

    Raises:
        ValueError: If the size is too small or does not pool evenly; the message names the
            nearest input sizes that work.

    Example:
        >>> valid_output_size(572)  # the paper's tile
        388
    """
    shrink = 2 * convs_per_level
    size = input_size
    for _ in range(depth):
        size -= shrink
        if size <= 0 or size % 2:
            raise ValueError(_valid_size_message(input_size, depth, convs_per_level))
        size //= 2
    size -= shrink  # bottleneck
    if size <= 0:
        raise ValueError(_valid_size_message(input_size, depth, convs_per_level))
    for _ in range(depth):
        size = size * 2 - shrink
    if size <= 0:
        raise ValueError(_valid_size_message(input_size, depth, convs_per_level))
    return size


def valid_input_size(output_size: int, depth: int = 4, convs_per_level: int = 2) -> int:
    """Smallest ``padding="valid"`` input size whose output is at least ``output_size``.

    Example:
        >>> valid_input_size(388)
        572
    """
    if output_size < 1:
        raise ValueError(f"output_size must be >= 1, got {output_size}.")
    shrink = 2 * convs_per_level
    # Walk the expanding path backwards to the bottleneck's size, rounding up.
    size = output_size
    for _ in range(depth):
        size = math.ceil((size + shrink) / 2)
    size = max(size, 1) + shrink  # input of the bottleneck convolutions
    for _ in range(depth):
        size = size * 2 + shrink
    return size


def _valid_size_message(input_size: int, depth: int, convs_per_level: int) -> str:
    smallest = valid_input_size(1, depth, convs_per_level)
    step = 2**depth  # consecutive valid input sizes are 2**depth apart
    if input_size < smallest:
        hint = f"the smallest valid input is {smallest}"
    else:
        below = smallest + (input_size - smallest) // step * step
        hint = f"use {below} or {below + step} (valid sizes are {smallest} + k*{step})"
    return (
        f"input size {input_size} does not work with padding='valid', depth={depth}, "
        f"convs_per_level={convs_per_level}: {hint}; or use padding='same'."
    )


def _check_spatial_size(size, depth: int, padding: str, convs_per_level: int, axis: str):
    if size is None:
        return
    if padding == "same":
        if size % 2**depth:
            raise ValueError(
                f"input {axis} {size} does not divide by 2**depth = {2**depth}: pad the "
                f"image to {padded_size(size, depth)} (unet_lib.model.unet.padded_size), "
                f"or lower depth."
            )
    else:
        valid_output_size(size, depth, convs_per_level)


# ----------------------------------------------------------------------------- builders
def conv_block(
    x,
    filters: int,
    *,
    convs: int = 2,
    padding: str = "same",
    batch_norm: bool = False,
    name: str = "conv",
):
    """``convs`` times: 3x3 convolution, optional batch norm, ReLU.

    The convolution drops its bias when batch norm follows (the norm's offset replaces it).
    """
    for i in range(convs):
        x = layers.Conv2D(
            filters,
            3,
            padding=padding,
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{i + 1}",
        )(x)
        if batch_norm:
            x = BatchNorm(name=f"{name}_bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i + 1}")(x)
    return x


def encoder_block(x, filters: int, *, dropout: float = 0.0, name: str = "enc", **conv_kwargs):
    """One level of the contracting path.

    Returns:
        ``(skip, down)``: the features before pooling (for the skip connection) and after.
    """
    skip = conv_block(x, filters, name=name, **conv_kwargs)
    if dropout:
        skip = layers.Dropout(dropout, name=f"{name}_dropout")(skip)
    down = layers.MaxPooling2D(2, name=f"{name}_pool")(skip)
    return skip, down


def decoder_block(
    x,
    skip,
    filters: int,
    *,
    upsampling: str = "transpose",
    crop: int = 0,
    name: str = "dec",
    **conv_kwargs,
):
    """One level of the expanding path: up-sample, concatenate the skip, convolve.

    Args:
        x: Features from the level below.
        skip: Encoder features of this level.
        filters: Channels of this level.
        upsampling: ``"transpose"`` (2x2 transposed convolution, the paper's up-conv) or
            ``"bilinear"`` (bilinear resize then 1x1 convolution; no checkerboard
            artefacts).
        crop: Pixels to cut from each border of ``skip`` (``padding="valid"``).
        name: Layer name prefix.
        **conv_kwargs: Passed to :func:`conv_block`.
    """
    if upsampling == "transpose":
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, kernel_initializer="he_normal", name=f"{name}_upconv"
        )(x)
    else:
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsample")(x)
        x = layers.Conv2D(filters, 1, kernel_initializer="he_normal", name=f"{name}_upproj")(x)
    if crop:
        skip = layers.Cropping2D(crop, name=f"{name}_crop")(skip)
    x = layers.Concatenate(name=f"{name}_concat")([skip, x])
    return conv_block(x, filters, name=name, **conv_kwargs)


def segmentation_head(x, num_classes: int, output_activation, *, name: str = "head"):
    """1x1 convolution to ``num_classes`` channels and the output activation in float32."""
    x = layers.Conv2D(num_classes, 1, name=f"{name}_conv")(x)
    # float32 output even under a mixed-precision policy: losses stay numerically stable.
    return layers.Activation(output_activation or "linear", dtype="float32", name=name)(x)


# ----------------------------------------------------------------------------- the model
def build_unet(
    input_shape=(None, None, 1),
    num_classes: int = 1,
    *,
    depth: int = 4,
    base_filters: int = 64,
    convs_per_level: int = 2,
    batch_norm: bool = False,
    dropout: float = 0.0,
    upsampling: str = "transpose",
    padding: str = "same",
    output_activation=_AUTO,
    name: str = "unet",
) -> keras.Model:
    """Build a U-Net as a functional ``keras.Model``.

    Level ``i`` (0 at full resolution) has ``base_filters * 2**i`` channels; the bottleneck
    has ``base_filters * 2**depth``.

    Args:
        input_shape: ``(height, width, channels)``; height and width may be ``None``.
        num_classes: Output channels: 1 for binary (sigmoid), K >= 2 for K classes (softmax).
        depth: Number of poolings (the paper uses 4).
        base_filters: Channels of the first level (the paper uses 64).
        convs_per_level: 3x3 convolutions per level (the paper uses 2).
        batch_norm: Batch normalisation after each convolution.
        dropout: Dropout rate at the end of the contracting path (the deepest encoder level
            and the bottleneck), as in the paper; 0 disables it.
        upsampling: ``"transpose"`` (the paper's up-convolution) or ``"bilinear"``.
        padding: ``"same"`` (output size = input size; sizes must divide by ``2**depth``)
            or ``"valid"`` (the paper's unpadded convolutions with cropped skips).
        output_activation: ``"auto"`` (sigmoid for one class, softmax for several), any
            Keras activation name, or ``None`` for logits.
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(B, H, W, C)`` images to
        ``(B, H', W', num_classes)`` probabilities (or logits).

    Raises:
        ValueError: On an unknown option, non-positive sizes, or an input size the
            architecture cannot take (the message names the size to use).

    Example:
        >>> model = build_unet((256, 256, 1), num_classes=3, base_filters=16, batch_norm=True)
        >>> model.output_shape
        (None, 256, 256, 3)
    """
    _validate_arguments(
        input_shape, num_classes, depth, base_filters, convs_per_level, dropout, upsampling, padding
    )
    if output_activation == _AUTO:
        output_activation = "sigmoid" if num_classes == 1 else "softmax"

    conv_kwargs = dict(convs=convs_per_level, padding=padding, batch_norm=batch_norm)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    skips = []
    for level in range(depth):
        level_dropout = dropout if level == depth - 1 else 0.0
        skip, x = encoder_block(
            x,
            base_filters * 2**level,
            dropout=level_dropout,
            name=f"enc{level + 1}",
            **conv_kwargs,
        )
        skips.append(skip)

    x = conv_block(x, base_filters * 2**depth, name="bottleneck", **conv_kwargs)
    if dropout:
        x = layers.Dropout(dropout, name="bottleneck_dropout")(x)

    for level in reversed(range(depth)):
        x = decoder_block(
            x,
            skips[level],
            base_filters * 2**level,
            upsampling=upsampling,
            crop=_skip_crop(level, depth, convs_per_level) if padding == "valid" else 0,
            name=f"dec{level + 1}",
            **conv_kwargs,
        )

    outputs = segmentation_head(x, num_classes, output_activation)
    return keras.Model(inputs, outputs, name=name)


def _skip_crop(level: int, depth: int, convs_per_level: int) -> int:
    """Border to crop from the level-``level`` skip so it matches the up-sampled map.

    With unpadded convolutions both sizes shrink by fixed amounts, so their difference
    ``d`` does not depend on the input size. At the deepest level the bottleneck loses
    ``shrink`` pixels at half resolution, so ``d = 2 * shrink``; one level up,
    ``skip = 2 * (skip_below + shrink)`` and ``up = 2 * (up_below - shrink)``, so
    ``d = 2 * d_below + 4 * shrink`` (paper: 8, 32, 80, 176 -> crops 4, 16, 40, 88).
    """
    shrink = 2 * convs_per_level
    difference = 2 * shrink  # deepest level
    for _ in range(depth - 1 - level):
        difference = 2 * difference + 4 * shrink
    return difference // 2


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
    for label, value in (
        ("num_classes", num_classes),
        ("depth", depth),
        ("base_filters", base_filters),
        ("convs_per_level", convs_per_level),
    ):
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
        _check_spatial_size(size, depth, padding, convs_per_level, axis)
