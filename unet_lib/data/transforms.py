"""The batched TensorFlow cores of augmentation and patch sampling (for ``augment`` and
``pipeline``): ``(B, H, W, C)`` images, ``(B, H, W, 1)`` masks and weight maps (``None`` when
absent); each sample's parameters drawn with stateless ops from one shape-``[2]`` seed; only
XLA-friendly ops, so they run in ``tf.data`` maps and compiled steps.
"""

import math

import tensorflow as tf

from unet_lib import IGNORE_LABEL


def reflect_coord(c, size):
    """Reflect-101 of (float or int) coordinates into ``[0, size - 1]`` (``-1 -> 1``)."""
    size = tf.cast(size, c.dtype)
    period = tf.maximum(2 * (size - 1), tf.ones_like(size))
    c = tf.math.floormod(c, period)
    c = tf.where(c > size - 1, period - c, c)
    return tf.clip_by_value(c, tf.zeros_like(size), size - 1)


def _dihedral(image, mask, weights, config, seed):
    """Random flips and 90-degree rotations per sample as one optional transpose (``k`` odd)
    and two optional flips; non-square images only get ``k in {0, 2}`` (shape kept)."""
    batch = tf.shape(image)[0]
    bits = tf.random.stateless_uniform([batch, 3], seed, minval=0, maxval=4, dtype=tf.int32)
    lr = ud = tf.zeros([batch], tf.bool)
    if config.flip:
        lr = bits[:, 0] % 2 == 1
        ud = bits[:, 1] % 2 == 1 if config.flip_vertical else ud
    tensors = [t for t in (image, mask, weights) if t is not None]

    def select(cond, fn, xs):
        return [tf.where(cond[:, None, None, None], fn(x), x) for x in xs]

    if config.rotate90:
        height, width = image.shape[1], image.shape[2]
        if height is not None and width is not None:
            square = tf.constant(height == width)
        else:
            square = tf.shape(image)[1] == tf.shape(image)[2]
        k = tf.where(square, bits[:, 2], bits[:, 2] // 2 * 2)
        transpose = k % 2 == 1
        lr, ud = lr ^ (k >= 2), ud ^ ((k == 1) | (k == 2))

        def transposed():
            return select(transpose, lambda x: tf.transpose(x, [0, 2, 1, 3]), tensors)

        if height is None or width is None:
            tensors = tf.cond(square, transposed, lambda: tensors)
        elif height == width:
            tensors = transposed()
    tensors = select(lr, lambda x: tf.reverse(x, [2]), tensors)
    tensors = select(ud, lambda x: tf.reverse(x, [1]), tensors)
    out = iter(tensors)
    return [next(out) if t is not None else None for t in (image, mask, weights)]


def _keys_cubic(d):
    """Keys' bicubic convolution kernel (a = -0.5)."""
    d = tf.abs(d)
    near = 1.5 * d**3 - 2.5 * d**2 + 1.0
    far = -0.5 * d**3 + 2.5 * d**2 - 4.0 * d + 2.0
    return tf.where(d <= 1.0, near, tf.where(d < 2.0, far, tf.zeros_like(d)))


def _cubic_matrix(size, grid):
    """``(size, grid)`` bicubic weights from ``grid`` evenly spaced nodes to ``size`` pixels."""
    t = tf.cast(tf.range(size), tf.float32) * (grid - 1)
    t = t / tf.cast(tf.maximum(size - 1, 1), tf.float32)
    columns = [tf.zeros_like(t) for _ in range(grid)]
    for k in range(-2, grid + 2):
        columns[min(max(k, 0), grid - 1)] += _keys_cubic(t - k)
    return tf.stack(columns, axis=1)


def _warp(image, mask, weights, config, seed):
    """Affine + elastic in one resampling: bilinear image, nearest mask and weights."""
    batch = tf.shape(image)[0]
    h, w = tf.unstack(tf.shape(image)[1:3])
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    yy, xx = tf.meshgrid(tf.range(hf), tf.range(wf), indexing="ij")
    sy, sx = yy[None], xx[None]  # (1, H, W) source coordinates of each output pixel
    s_affine, s_elastic = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if config.affine:
        angle_scale = tf.random.stateless_uniform([2, batch], s_affine)
        angle = (2 * angle_scale[0] - 1) * math.radians(config.rotation_degrees)
        lo, hi = config.scale_range
        scale = lo + (hi - lo) * angle_scale[1]
        cos, sin = [(f(angle) / scale)[:, None, None] for f in (tf.cos, tf.sin)]
        dy, dx = yy - (hf - 1) / 2, xx - (wf - 1) / 2
        sy = cos * dy + sin * dx + (hf - 1) / 2
        sx = -sin * dy + cos * dx + (wf - 1) / 2
    if config.elastic:
        g = config.elastic_grid
        coarse = tf.random.stateless_normal([batch, g, g, 2], s_elastic) * config.elastic_sigma
        field = tf.einsum("hi,bijc,wj->bhwc", _cubic_matrix(h, g), coarse, _cubic_matrix(w, g))
        sy, sx = sy + field[..., 0], sx + field[..., 1]
    sy, sx = sy + tf.zeros([batch, 1, 1]), sx + tf.zeros([batch, 1, 1])
    ry, rx = reflect_coord(sy, h), reflect_coord(sx, w)

    def gather(x, iy, ix):
        flat = tf.reshape(x, [batch, -1, tf.shape(x)[-1]])
        idx = tf.reshape(iy * w + ix, [batch, -1])
        return tf.reshape(tf.gather(flat, idx, batch_dims=1), tf.shape(x))

    y0f, x0f = tf.floor(ry), tf.floor(rx)
    fy, fx = (ry - y0f)[..., None], (rx - x0f)[..., None]
    y0, x0 = tf.cast(y0f, tf.int32), tf.cast(x0f, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, h - 1), tf.minimum(x0 + 1, w - 1)
    top = gather(image, y0, x0) * (1 - fx) + gather(image, y0, x1) * fx
    bottom = gather(image, y1, x0) * (1 - fx) + gather(image, y1, x1) * fx
    image_out = top * (1 - fy) + bottom * fy
    ny, nx = tf.cast(tf.round(ry), tf.int32), tf.cast(tf.round(rx), tf.int32)
    outside = None
    if config.mask_fill == "ignore":
        oy, ox = tf.round(sy), tf.round(sx)
        outside = ((oy < 0) | (oy > hf - 1) | (ox < 0) | (ox > wf - 1))[..., None]
    outs = [image_out]
    for x, fill in ((mask, IGNORE_LABEL), (weights, 0)):
        if x is not None:
            x = gather(x, ny, nx)
            outs.append(x if outside is None else tf.where(outside, tf.cast(fill, x.dtype), x))
        else:
            outs.append(None)
    return outs


def _intensity(image, config, seed):
    """Gamma, contrast, brightness, noise in the units of ``config.intensity_window`` (each
    channel's ``(low, high)`` as ``(0, 1)``; ``None``: the stored range), clipped to [0, 1]
    of the stored range. Gamma sees values below ``low`` as ``low``."""
    batch = tf.shape(image)[0]
    s_int, s_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    low, width = 0.0, 1.0
    if config.intensity_window is not None:
        low = tf.constant([lo for lo, _ in config.intensity_window], tf.float32)
        width = tf.constant([hi - lo for lo, hi in config.intensity_window], tf.float32)
    x = tf.clip_by_value((image - low) / width, -low / width, (1.0 - low) / width)
    if config.intensity:
        u = 2 * tf.random.stateless_uniform([3, batch, 1, 1, 1], s_int) - 1  # in [-1, 1)
        x = tf.maximum(x, 0.0) ** tf.exp(u[0] * math.log1p(config.gamma))
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        x = (x - mean) * (1 + u[1] * config.contrast) + mean + u[2] * config.brightness
    if config.noise:
        x = x + tf.random.stateless_normal(tf.shape(x), s_noise) * config.noise_std
    return tf.clip_by_value(x * width + low, 0.0, 1.0)  # back to the stored units


def augment_batch(image, mask, weights, config, seed):
    """Flips / rotations, affine + elastic warp, intensity: ``(image, mask, weights)``."""
    s_dihedral, s_warp, s_intensity = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    shapes = [None if t is None else t.shape for t in (image, mask, weights)]
    image = tf.cast(image, tf.float32)
    if config.flip or config.rotate90:
        image, mask, weights = _dihedral(image, mask, weights, config, s_dihedral)
    if config.affine or config.elastic:
        image, mask, weights = _warp(image, mask, weights, config, s_warp)
    if config.intensity or config.noise:
        image = _intensity(image, config, s_intensity)
    for t, shape in zip((image, mask, weights), shapes, strict=True):
        if t is not None:
            t.set_shape(shape)  # every transform keeps the shape
    return image, mask, weights


def crop_batch(image, mask, weights, size, seed, foreground: float = 0.0):
    """A random ``size`` window of each sample (smaller ones centred and reflect-padded, mask
    ``IGNORE_LABEL``, weights 0); a ``foreground`` share of windows hold a foreground pixel."""
    ph, pw = (size, size) if isinstance(size, int) else tuple(size)
    batch = tf.shape(image)[0]
    h, w = tf.unstack(tf.shape(image)[1:3])
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    if foreground > 0:
        fg_start, found = _foreground_starts(mask, ph, pw, seeds[2])
        draw = tf.random.stateless_uniform([batch], seeds[3])
        use_fg = found & (draw < foreground)
    picks = []
    for axis, (size_in, size_out, s) in enumerate(((h, ph, seeds[0]), (w, pw, seeds[1]))):
        room = tf.maximum(size_in - size_out, 0)
        start = tf.random.stateless_uniform([batch], s, minval=0, maxval=room + 1, dtype=tf.int32)
        if foreground > 0:
            start = tf.where(use_fg, tf.clip_by_value(fg_start[:, axis], 0, room), start)
        start = tf.where(size_in >= size_out, start, -((size_out - size_in) // 2))
        raw = start[:, None] + tf.range(size_out)[None]  # (B, size_out)
        picks.append((reflect_coord(raw, size_in), (raw >= 0) & (raw < size_in)))
    (rows, valid_r), (cols, valid_c) = picks
    valid = (valid_r[:, :, None] & valid_c[:, None, :])[..., None]

    def window(x, fill=None):
        if x is None:
            return None
        x = tf.gather(tf.gather(x, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
        x = x if fill is None else tf.where(valid, x, tf.cast(fill, x.dtype))
        x.set_shape([None, ph, pw, x.shape[-1]])
        return x

    return window(image), window(mask, IGNORE_LABEL), window(weights, 0)


def _foreground_starts(mask, ph: int, pw: int, seed):
    """Window starts ``(B, 2)`` that put a foreground pixel inside the window (nnU-Net's
    oversampling; ``found (B,)`` is False without foreground): per sample a foreground class
    drawn uniformly among those present (rare classes count as much as common ones), one of its
    pixels, and a uniformly random position of that pixel inside the window."""

    def one(args):
        m, s = args
        m = m[..., 0]
        s_class, s_pixel, s_y, s_x = tf.unstack(tf.random.experimental.stateless_split(s, 4))
        counts = tf.math.bincount(tf.reshape(tf.maximum(m, 0), [-1]))
        classes = tf.cast(tf.where(counts[1:] > 0)[:, 0] + 1, tf.int32)
        n = tf.size(classes)

        def pick():
            c = classes[tf.random.stateless_uniform([], s_class, 0, n, tf.int32)]
            where = tf.cast(tf.where(tf.equal(m, c)), tf.int32)
            i = tf.random.stateless_uniform([], s_pixel, 0, tf.shape(where)[0], tf.int32)
            dy = tf.random.stateless_uniform([], s_y, 0, ph, tf.int32)
            dx = tf.random.stateless_uniform([], s_x, 0, pw, tf.int32)
            return tf.stack([where[i, 0] - dy, where[i, 1] - dx])

        start = tf.cond(n > 0, pick, lambda: tf.zeros([2], tf.int32))
        return start, n > 0

    batch = tf.shape(mask)[0]
    seeds = tf.random.experimental.stateless_split(seed, batch)
    return tf.map_fn(
        one,
        (tf.cast(mask, tf.int32), seeds),
        fn_output_signature=(tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.bool)),
    )
