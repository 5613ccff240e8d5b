"""Sizes of the U-Net: the multiple to pad to (``padding="same"``) and the input / output sizes
of the paper's unpadded variant (``padding="valid"``: 572 -> 388), with the skip crops."""

import math


def padded_size(size: int, depth: int) -> int:
    """Smallest size >= ``size`` that divides by ``2**depth`` (for ``padding="same"``).

    Example:
        >>> padded_size(360, 4)
        368
    """
    return int(math.ceil(size / 2**depth) * 2**depth)


def valid_output_size(input_size: int, depth: int = 4, convs_per_level: int = 2) -> int:
    """Output height or width of a ``padding="valid"`` U-Net for an input height or width.

    Each unpadded 3x3 convolution removes 2 pixels; each pooling halves the size, which must
    be even. A size that does not work raises ValueError naming the nearest ones that do.

    Example:
        >>> valid_output_size(572)  # the paper's tile
        388
    """
    shrink, size, fits = 2 * convs_per_level, input_size, True
    for _ in range(depth):
        size -= shrink
        fits = fits and size > 0 and size % 2 == 0
        size //= 2
    size -= shrink  # bottleneck
    fits = fits and size > 0
    for _ in range(depth):
        size = size * 2 - shrink
    if not fits or size <= 0:
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
    shrink, size = 2 * convs_per_level, output_size
    for _ in range(depth):  # the expanding path backwards to the bottleneck, rounding up
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


def check_spatial_size(size, depth: int, padding: str, convs_per_level: int, axis: str):
    """Raises ValueError, naming the size to use, if ``size`` (None: any) cannot be input."""
    if size is not None and padding == "valid":
        valid_output_size(size, depth, convs_per_level)
    elif size is not None and size % 2**depth:
        raise ValueError(
            f"input {axis} {size} does not divide by 2**depth = {2**depth}: pad the image to "
            f"{padded_size(size, depth)} (unet_lib.model.padded_size), or lower depth."
        )


def skip_crop(level: int, depth: int, convs_per_level: int) -> int:
    """Border to crop from the level-``level`` skip (``padding="valid"``) to match the up-path:
    the size difference is ``2 * shrink`` at the deepest level and ``2 * d_below + 4 * shrink``
    one level up (paper: 8, 32, 80, 176 -> crops 4, 16, 40, 88)."""
    shrink = 2 * convs_per_level
    difference = 2 * shrink  # the deepest level
    for _ in range(depth - 1 - level):
        difference = 2 * difference + 4 * shrink
    return difference // 2
