"""The U-Net's building blocks (as MONAI's TwoConv / Down / UpCat); layer names such as
``{name}_conv1`` and ``{name}_pool`` are what saved models, inference and tests look up."""

from keras import layers

from unet_lib.model.batchnorm import BatchNorm


def intensity_scaling(window, channels: int, *, name: str = "intensity_scaling"):
    """A standard ``keras.layers.Rescaling`` that maps each channel's ``(low, high)`` of
    ``window`` to ``(0, 1)``: ``x' = (x - low) / (high - low)``, computed in float32.

    Images are read into [0, 1] by their stored range (8-bit / 255, 16-bit / 65535); data that
    use a small part of it (12-bit values in 16-bit files sit in [0, 0.0625]) are stretched by
    the model itself, so training, evaluation and prediction all see the same scaling, and a
    saved model carries it. Nothing is clipped (nnU-Net's percentile scaling, unclipped).

    Example:
        >>> layer = intensity_scaling([(0.0, 0.0625)], 1)  # 12-bit grey in 16-bit files
        >>> float(layer(np.full((1, 2, 2, 1), 0.03125, "float32"))[0, 0, 0, 0])
        0.5
    """
    window = [tuple(float(v) for v in pair) for pair in window]
    if len(window) != channels or any(len(p) != 2 or not p[1] > p[0] for p in window):
        raise ValueError(
            f"intensity_scaling must be one (low, high) pair per channel ({channels}) with "
            f"high > low, got {window!r}; e.g. [(0.0, 0.0625)] for 12-bit grey in 16-bit files"
        )
    scale = [1.0 / (high - low) for low, high in window]
    offset = [-low / (high - low) for low, high in window]
    return layers.Rescaling(scale, offset, dtype="float32", name=name)


def conv_block(x, filters: int, *, convs: int = 2, padding: str = "same", batch_norm: bool = False,
               name: str = "conv"):  # fmt: skip
    """``convs`` times: 3x3 convolution, optional batch norm, ReLU.

    The convolution drops its bias when batch norm follows (the norm's offset replaces it).
    """
    for i in range(1, convs + 1):
        x = layers.Conv2D(
            filters, 3, padding=padding, use_bias=not batch_norm, kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)  # fmt: skip
        if batch_norm:
            x = BatchNorm(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def encoder_block(x, filters: int, *, dropout: float = 0.0, name: str = "enc", **conv_kwargs):
    """One level of the contracting path: :func:`conv_block`, dropout, 2x2 max pooling.

    Returns:
        ``(skip, down)``: the features before pooling (for the skip connection) and after.
    """
    skip = conv_block(x, filters, name=name, **conv_kwargs)
    if dropout:
        skip = layers.Dropout(dropout, name=f"{name}_dropout")(skip)
    return skip, layers.MaxPooling2D(2, name=f"{name}_pool")(skip)


def decoder_block(x, skip, filters: int, *, upsampling: str = "transpose", crop: int = 0,
                  name: str = "dec", **conv_kwargs):  # fmt: skip
    """One level of the expanding path: up-sample, concatenate the skip (``None``: no skip,
    the last level of an encoder U-Net), convolve.

    ``upsampling``: ``"transpose"`` (2x2 transposed convolution, the paper's up-conv) or
    ``"bilinear"`` (resize, then 1x1 convolution: no checkerboard artefacts). ``crop``: pixels
    cut from each border of ``skip`` (``padding="valid"``). ``conv_kwargs`` go to
    :func:`conv_block`.
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
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([skip, x])
    return conv_block(x, filters, name=name, **conv_kwargs)


def segmentation_head(x, num_classes: int, output_activation, *, name: str = "head"):
    """1x1 convolution to ``num_classes`` channels and the output activation, in float32
    even under a mixed-precision policy so that the losses stay numerically stable."""
    x = layers.Conv2D(num_classes, 1, name=f"{name}_conv")(x)
    return layers.Activation(output_activation or "linear", dtype="float32", name=name)(x)
