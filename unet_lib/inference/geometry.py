"""The input sizes a model takes: its pooling grid, its ``padding="valid"`` margin, its minimum.

U-Nets made by :func:`unet_lib.build_unet` are recognised from their layers and measured with
the size rules of :mod:`unet_lib.model`; other models are probed (``compute_output_shape``).
"""

import math
import re
import weakref
from dataclasses import dataclass

import keras

from unet_lib.model import ENCODER_STRIDE, padded_size, valid_input_size, valid_output_size

_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_UNET_CONV = re.compile(r"(enc|dec)\d+_conv\d+|bottleneck_conv\d+")
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Geometry:
    """Per axis a model takes the sizes ``offset + k * multiple >= min_input``."""

    channels: int | None  # None: any
    multiple: int  # the pooling grid: tiles start on multiples of it
    margin: int  # (input - output) / 2 per side, 0 for padding="same"
    offset: int
    min_input: int
    fixed: tuple[int, int] | None  # the model's fixed input (height, width), if any

    def input_size(self, out_needed: int) -> int:
        """Smallest size the model takes whose output covers ``out_needed`` pixels."""
        need = max(out_needed + 2 * self.margin, self.min_input)
        return need + (self.offset - need) % self.multiple

    @property
    def fixed_tile(self) -> tuple[int, int] | None:
        """The output tile of a model with a fixed input size, else ``None``."""
        return None if self.fixed is None else tuple(f - 2 * self.margin for f in self.fixed)

    def check_tile(self, tile: tuple[int, int]) -> tuple[int, int]:
        """``tile`` (output pixels) if the model can predict tiles of that size, else raise."""
        if self.fixed is not None:
            if tile != self.fixed_tile:
                raise ValueError(
                    f"this model takes fixed inputs {self.fixed}: use "
                    f"tile_size={self.fixed_tile} or tile_size=None."
                )
            return tile
        m = self.multiple
        for t in tile:
            if t % m:
                lo, hi = max(m, t // m * m), (t // m + 1) * m
                raise ValueError(
                    f"tile_size {t} must be a multiple of {m} (2**depth, the model's pooling "
                    f"grid): use {lo} or {hi}."
                )
        return tile


def unet_structure(model) -> tuple[int, int, str] | None:
    """``(depth, convs_per_level, padding)`` of a :func:`unet_lib.build_unet` model, known by its
    layer names and checked on the layers (2x2 pools, 3x3 convolutions); else ``None``."""
    layers = {layer.name: layer for layer in getattr(model, "layers", ())}
    pools = [layer for layer in layers.values() if isinstance(layer, _POOLS)]
    convs = [layer for name, layer in layers.items() if _UNET_CONV.fullmatch(name)]
    depth, per_level = len(pools), sum(bool(re.fullmatch(r"enc1_conv\d+", n)) for n in layers)
    paddings = {getattr(c, "padding", None) for c in convs}
    if (
        not pools
        or "head" not in layers
        or {p.name for p in pools} != {f"enc{i}_pool" for i in range(1, depth + 1)}
        or any((p.pool_size, p.strides) != ((2, 2), (2, 2)) for p in pools)
        or len(convs) != (2 * depth + 1) * per_level
        or any(getattr(c, "kernel_size", None) != (3, 3) for c in convs)
        or len(paddings) != 1
    ):
        return None
    return depth, per_level, paddings.pop()


def model_geometry(model, multiple=None) -> Geometry:
    """The :class:`Geometry` of a one-input model (cached); ``multiple=None``: the pools'."""
    if multiple is not None and (not isinstance(multiple, int) or multiple < 1):
        raise ValueError(f"multiple must be None (infer it) or an int >= 1, got {multiple!r}.")
    try:
        cached = _CACHE.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        cached = {}
    if multiple not in cached:
        cached[multiple] = _measure(model, multiple)
    return cached[multiple]


def _measure(model, multiple) -> Geometry:
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError("predict needs a model with one image input.")
    channels, (h, w) = shape[-1], shape[1:3]
    encoder = any(layer.name == "encoder_input" for layer in getattr(model, "layers", ()))
    pools = math.prod(int(p.strides[0]) for _, p in _pool_layers(model))
    m = multiple or (ENCODER_STRIDE if encoder else pools)  # backbones also stride convolutions
    if h is not None and w is not None:
        oh, ow = model.output_shape[1:3]
        if h - oh != w - ow or (h - oh) % 2 or oh > h:
            raise ValueError(f"model output {(oh, ow)} is not its input {(h, w)} minus a margin.")
        return Geometry(channels, m, (h - oh) // 2, h % m, h, (h, w))
    unet = unet_structure(model)
    if unet is None or m != 2 ** unet[0]:
        return _probe(model, channels, m)
    depth, convs, padding = unet
    low = padded_size(1, depth) if padding == "same" else valid_input_size(1, depth, convs)
    margin = 0 if padding == "same" else (low - valid_output_size(low, depth, convs)) // 2
    return Geometry(channels, m, margin, low % m, low, None)


def _pool_layers(layer):
    for sub in getattr(layer, "layers", []):
        if isinstance(sub, _POOLS):
            yield layer, sub
        yield from _pool_layers(sub)


def _probe(model, channels, m: int) -> Geometry:
    """Margin and smallest input of a free-size model, by trying sizes: the output must be the
    size minus twice the margin and every pooling layer's input even."""
    groups: dict = {}
    for parent, pool in _pool_layers(model):
        groups.setdefault(parent, []).append(pool)
    probes = []
    for parent, pools in groups.items():
        try:
            probes.append(keras.Model(parent.inputs, [p.input for p in pools]))
        except Exception:  # noqa: BLE001 - e.g. a shared layer: skip the check for it
            pass

    def runs(size: int, margin: int) -> bool:
        try:
            out = model.compute_output_shape((1, size, size, channels))
            if out[1] != size - 2 * margin or out[1] < 1:
                return False
            for probe in probes:
                shapes = probe.compute_output_shape((1, size, size, probe.input_shape[-1]))
                shapes = [shapes] if isinstance(shapes[0], int | None) else shapes
                if any(s[1] % 2 or s[2] % 2 for s in shapes):
                    return False
        except Exception:  # noqa: BLE001 - any failure means "this size does not run"
            return False
        return True

    for s in (m * 32, m * 64, m * 128, m * 256):
        try:
            out = model.compute_output_shape((1, s, s, channels))[1]
        except Exception:  # noqa: BLE001 - too small for a valid model: try larger
            continue
        if out > s or (s - out) % 2:
            raise ValueError(
                f"predict needs an output the size of the input or smaller "
                f"by an even margin; this model maps {s} to {out}."
            )
        margin = (s - out) // 2
        low = next((s + r for r in range(m) if runs(s + r, margin)), None)
        if low is None:
            break
        while low - m > 2 * margin and runs(low - m, margin):
            low -= m
        return Geometry(channels, m, margin, low % m, low, None)
    return Geometry(channels, m, 0, 0, m, None)  # fallback: output size = input size
