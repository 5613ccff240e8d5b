"""The U-Net: builder and blocks (:mod:`.unet`, :mod:`.blocks`), size rules (:mod:`.sizes`),
the batch norm it uses (:mod:`.batchnorm`), and ``.keras`` saving and loading (:mod:`.saving`).
Backend-neutral: Keras and NumPy only.

Example:
    >>> from unet_lib.model import build_unet, valid_output_size
    >>> valid_output_size(572)  # the paper's valid-padding U-Net
    388
"""

from unet_lib.model.batchnorm import BatchNorm
from unet_lib.model.blocks import (
    conv_block,
    decoder_block,
    encoder_block,
    intensity_scaling,
    segmentation_head,
)
from unet_lib.model.encoders import ENCODER_STRIDE, ENCODERS, backbone_layers
from unet_lib.model.saving import load_model, portable_copy, save_model
from unet_lib.model.sizes import padded_size, valid_input_size, valid_output_size
from unet_lib.model.unet import PADDING_MODES, UPSAMPLING_MODES, build_unet

__all__ = [
    "UPSAMPLING_MODES", "PADDING_MODES", "padded_size", "valid_output_size", "valid_input_size",
    "intensity_scaling", "conv_block", "encoder_block", "decoder_block", "segmentation_head",
    "build_unet",
    "BatchNorm", "load_model", "save_model", "portable_copy", "ENCODERS", "ENCODER_STRIDE",
    "backbone_layers",
]  # fmt: skip
