"""Segmentation losses: soft Dice, Dice + cross-entropy, focal and Tversky.

Each loss is a pure ``keras.ops`` function (so it runs on every Keras backend) and a thin
registered :class:`keras.losses.Loss` around it. Conventions (see ``ARCHITECTURE.md``):

- ``y_pred``: ``(B, H, W, C)`` probabilities, or logits with ``from_logits=True``. ``C = 1`` is
  binary (sigmoid of the foreground); ``C >= 2`` is multi-class (softmax). Internally both
  become ``L = max(C, 2)`` label channels (binary: ``[1 - p, p]``). Any number of spatial axes.
- ``y_true``: an integer label map ``(B, H, W)`` / ``(B, H, W, 1)`` (float values are rounded)
  or one-hot ``(B, H, W, L)``.
- Invalid pixels count nowhere: pixels labelled ``ignore_class``, all-zero one-hot rows and
  labels outside ``0 .. L-1``.
- ``sample_weight``: a per-pixel map ``(B, H, W)`` / ``(B, H, W, 1)`` or one weight per image
  ``(B,)``. A pixel of weight ``w`` counts as ``w`` copies of itself: in the Dice / Tversky sums
  ``w`` multiplies ``p`` and ``g``; cross-entropy and focal terms are averaged as
  ``sum(w * term) / sum(w)``. Weight 0 is the same as an ignored pixel. The classes send the
  ``sample_weight`` Keras gives them (``fit(..., sample_weight=...)``) into these sums rather
  than letting Keras scale the already-reduced value, so class and function agree.

Example:
    >>> y_true = [[[1, 0], [1, 1]]]                                  # (1, 2, 2) label map
    >>> y_pred = [[[[0.9], [0.2]], [[0.6], [0.3]]]]                  # (1, 2, 2, 1) sigmoid
    >>> round(float(dice_loss(y_true, y_pred)), 4)  # 1 - (2 * 1.8 + 1) / (2.0 + 3 + 1)
    0.2333
"""

from __future__ import annotations

import math
import numbers

import keras
from keras import ops

_EPS = 1e-7


# --------------------------------------------------------------------------- validation
_SMOOTH_HINT = "Use smooth=0 for none, or a small value such as 1.0."
_CW_HINT = "Give [background, foreground] for num_classes=1, or None for equal weights."
_ALPHA_HINT = "A float weighs the foreground classes (background: 1 - alpha), a list each class."


def _is_number(value):
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


def _check_number(name, value, *, maximum=None, hint=""):
    """A finite float ``>= 0`` (and ``<= maximum``), else ValueError."""
    if not _is_number(value) or value < 0 or (maximum is not None and value > maximum):
        bounds = ">= 0" if maximum is None else f"in [0, {maximum}]"
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}. {hint}".strip())
    return float(value)


def _check_list(name, values, *, positive, hint):
    """A non-empty list of finite numbers ``> 0`` (or ``>= 0``) as floats, else ValueError."""
    items = values.tolist() if hasattr(values, "tolist") else values  # NumPy arrays too
    items = list(items) if isinstance(items, list | tuple) else []
    if not items or not all(_is_number(v) and (v > 0 if positive else v >= 0) for v in items):
        sign = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a list of {sign} numbers, got {values!r}. {hint}")
    return [float(v) for v in items]


def _check_class_weights(class_weights):
    if class_weights is None:
        return None
    return _check_list("class_weights", class_weights, positive=True, hint=_CW_HINT)


def _check_focal_alpha(alpha):
    if alpha is None or _is_number(alpha):
        return None if alpha is None else _check_number("alpha", alpha, maximum=1, hint=_ALPHA_HINT)
    return _check_list("alpha", alpha, positive=False, hint=_ALPHA_HINT)


def _check_ignore_class(ignore_class):
    if ignore_class is not None and (
        isinstance(ignore_class, bool) or not isinstance(ignore_class, int)
    ):
        raise ValueError(
            f"ignore_class must be an int label value such as unet_lib.IGNORE_LABEL "
            f"(-1), or None; got {ignore_class!r}."
        )
    return ignore_class


def _check_tversky(alpha, beta):
    alpha = _check_number("alpha", alpha, hint="alpha weighs false positives.")
    beta = _check_number("beta", beta, hint="beta weighs false negatives.")
    if alpha + beta <= 0:
        raise ValueError("alpha + beta must be > 0; alpha = beta = 0.5 is the Dice loss.")
    return alpha, beta


def _check_mix(dice_weight, ce_weight):
    dice_weight = _check_number("dice_weight", dice_weight)
    ce_weight = _check_number("ce_weight", ce_weight)
    if dice_weight + ce_weight <= 0:
        raise ValueError("dice_weight and ce_weight are both 0: give at least one a weight > 0.")
    return dice_weight, ce_weight


def _per_class(values, num_labels, name, dtype):
    if len(values) != num_labels:
        raise ValueError(
            f"{name} has {len(values)} entries but the prediction has {num_labels} classes "
            "(num_classes=1 is binary: give [background, foreground]). Give one per class."
        )
    return ops.convert_to_tensor(values, dtype=dtype)


# --------------------------------------------------------------------------- shared maths
def _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight):
    """One-hot truth, probabilities, log-probabilities ``(B, ..., L)``, pixel weights, binary."""
    _check_ignore_class(ignore_class)
    y_pred, y_true = ops.convert_to_tensor(y_pred), ops.convert_to_tensor(y_true)
    dtype = "float64" if keras.backend.standardize_dtype(y_pred.dtype) == "float64" else "float32"
    y_pred = ops.cast(y_pred, dtype)
    rank, channels = len(y_pred.shape), y_pred.shape[-1]
    if rank < 3 or channels is None:
        raise ValueError(
            f"y_pred must be (batch, *spatial, num_classes) with a known last "
            f"axis; got shape {y_pred.shape}."
        )
    num_labels, true_rank = max(channels, 2), len(y_true.shape)
    if true_rank == rank and y_true.shape[-1] == num_labels:  # one-hot
        truth = ops.cast(y_true, dtype)
        valid = ops.sum(truth, axis=-1) > 0
        if ignore_class is not None and 0 <= ignore_class < num_labels:
            valid = ops.logical_and(valid, truth[..., ignore_class] <= 0)
    elif true_rank == rank - 1 or (true_rank == rank and y_true.shape[-1] == 1):
        labels = y_true if true_rank == rank - 1 else ops.squeeze(y_true, axis=-1)
        if keras.backend.is_float_dtype(labels.dtype):
            labels = ops.round(labels)
        labels = ops.cast(labels, "int32")
        classes = ops.arange(num_labels, dtype="int32")
        truth = ops.cast(ops.equal(ops.expand_dims(labels, -1), classes), dtype)
        valid = ops.sum(truth, axis=-1) > 0  # labels outside 0 .. L-1 are invalid
        if ignore_class is not None:
            valid = ops.logical_and(valid, ops.not_equal(labels, ignore_class))
    else:
        raise ValueError(
            f"y_true must be a label map (batch, *spatial) or (..., 1), or one-hot "
            f"with {num_labels} channels, to match y_pred {tuple(y_pred.shape)}; "
            f"got shape {tuple(y_true.shape)}."
        )
    weight = ops.cast(valid, dtype)
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), dtype)
        if len(sample_weight.shape) == rank and sample_weight.shape[-1] == 1:
            sample_weight = ops.squeeze(sample_weight, axis=-1)
        elif len(sample_weight.shape) == 1:  # one weight per image
            sample_weight = ops.reshape(sample_weight, (-1,) + (1,) * (rank - 2))
        weight = weight * sample_weight
    if channels == 1:
        if from_logits:
            prob, log_p = ops.sigmoid(y_pred), ops.log_sigmoid(y_pred)
            log_q = ops.log_sigmoid(-y_pred)
        else:
            prob, clipped = y_pred, ops.clip(y_pred, _EPS, 1.0 - _EPS)
            log_p, log_q = ops.log(clipped), ops.log(1.0 - clipped)
        probs = ops.concatenate([1.0 - prob, prob], axis=-1)
        log_probs = ops.concatenate([log_q, log_p], axis=-1)
    elif from_logits:
        probs, log_probs = ops.softmax(y_pred, axis=-1), ops.log_softmax(y_pred, axis=-1)
    else:
        probs, log_probs = y_pred, ops.log(ops.clip(y_pred, _EPS, 1.0))
    return truth, probs, log_probs, weight, channels == 1


def _overlap_loss(prepared, alpha, beta, smooth, class_weights, include_background, batch_dice):
    """``1 - (2TP + s) / (2TP + 2a FP + 2b FN + s)`` averaged over classes (and images)."""
    smooth = _check_number("smooth", smooth, hint=_SMOOTH_HINT)
    class_weights = _check_class_weights(class_weights)
    truth, probs, _, weight, binary = prepared
    start = 1 if binary or not include_background else 0  # binary: the foreground Dice only
    g, p, w = truth[..., start:], probs[..., start:], ops.expand_dims(weight, -1)
    rank = len(truth.shape)
    axes = tuple(range(0 if batch_dice else 1, rank - 1))
    tp = ops.sum(w * p * g, axis=axes)
    fp, fn = ops.sum(w * p, axis=axes) - tp, ops.sum(w * g, axis=axes) - tp
    denominator = 2.0 * tp + 2.0 * alpha * fp + 2.0 * beta * fn + smooth
    defined = denominator > 0  # 0 / 0 (smooth = 0, class absent everywhere) scores 1
    score = (2.0 * tp + smooth) / ops.where(defined, denominator, ops.ones_like(denominator))
    loss = 1.0 - ops.where(defined, score, ops.ones_like(score))  # (B?, classes)
    if class_weights is None:
        loss = ops.mean(loss, axis=-1)
    else:
        cw = _per_class(class_weights, truth.shape[-1], "class_weights", loss.dtype)[start:]
        loss = ops.sum(loss * cw, axis=-1) / ops.sum(cw)
    if batch_dice:
        return loss
    has_pixels = ops.cast(ops.sum(weight, axis=tuple(range(1, rank - 1))) > 0, loss.dtype)
    return ops.divide_no_nan(ops.sum(loss * has_pixels), ops.sum(has_pixels))


def _pixel_loss(prepared, gamma, alpha, name="alpha"):
    """``sum(w * -alpha_t (1 - p_t)^gamma log p_t) / sum(w)``: CE for gamma 0, alpha None."""
    truth, probs, log_probs, weight, _ = prepared
    term = -ops.sum(truth * log_probs, axis=-1)
    if gamma > 0:
        p_t = ops.sum(truth * probs, axis=-1)
        term = term * ops.power(ops.clip(1.0 - p_t, _EPS, 1.0), gamma)
    if alpha is not None:
        num_labels = truth.shape[-1]
        if isinstance(alpha, float):
            alpha = [1.0 - alpha] + [alpha] * (num_labels - 1)
        term = term * ops.sum(truth * _per_class(alpha, num_labels, name, truth.dtype), axis=-1)
    return ops.divide_no_nan(ops.sum(weight * term), ops.sum(weight))


# --------------------------------------------------------------------------- functions
def dice_loss(
    y_true,
    y_pred,
    *,
    from_logits=False,
    smooth=1.0,
    class_weights=None,
    include_background=True,
    batch_dice=True,
    ignore_class=None,
    sample_weight=None,
):
    """Soft Dice loss.

    Formula, per class ``c`` with pixel weights ``w`` (valid mask times ``sample_weight``)::

        dice_c = (2 sum(w p_c g_c) + smooth) / (sum(w p_c) + sum(w g_c) + smooth)
        loss   = sum_c(cw_c (1 - dice_c)) / sum_c(cw_c)

    The sums run over the batch and space (``batch_dice=True``, as nnU-Net) or over each
    image, whose losses are then averaged over the images with valid pixels. Binary
    (``num_classes=1``) uses the foreground Dice only. With ``smooth=0`` a class absent from
    truth and prediction (``0 / 0``) scores Dice 1.

    Args:
        y_true: label map ``(B, H, W)`` / ``(B, H, W, 1)`` or one-hot ``(B, H, W, L)``.
        y_pred: ``(B, H, W, num_classes)`` probabilities (logits with ``from_logits``).
        from_logits: apply sigmoid (1 channel) or softmax (several) to ``y_pred`` first.
        smooth: additive smoothing ``>= 0``.
        class_weights: optional positive weight per class (``max(num_classes, 2)`` values)
            for the mean over classes.
        include_background: keep class 0 in the mean (multi-class only).
        batch_dice: one Dice over the whole batch (True) or one per image (False).
        ignore_class: label value whose pixels count nowhere (e.g. ``IGNORE_LABEL``).
        sample_weight: optional per-pixel ``(B, H, W[, 1])`` or per-image ``(B,)`` weights.

    Returns:
        Scalar loss in ``[0, 1]``.

    Example:
        >>> float(dice_loss([[[1, 0]]], [[[[1.0], [0.0]]]], smooth=0.0))
        0.0
    """
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    return _overlap_loss(prepared, 0.5, 0.5, smooth, class_weights, include_background, batch_dice)


def tversky_loss(
    y_true,
    y_pred,
    *,
    from_logits=False,
    alpha=0.5,
    beta=0.5,
    smooth=1.0,
    class_weights=None,
    include_background=True,
    batch_dice=True,
    ignore_class=None,
    sample_weight=None,
):
    """Tversky loss: Dice with separate weights for false positives and false negatives.

    Formula, per class with ``TP = sum(w p g)``, ``FP = sum(w p (1 - g))``,
    ``FN = sum(w (1 - p) g)``::

        T_c  = (2 TP + smooth) / (2 TP + 2 alpha FP + 2 beta FN + smooth)
        loss = sum_c(cw_c (1 - T_c)) / sum_c(cw_c)

    That is the usual index ``(TP + s) / (TP + alpha FP + beta FN + s)`` with ``s = smooth/2``,
    so that ``alpha = beta = 0.5`` is exactly :func:`dice_loss` with the same ``smooth``.
    ``beta > alpha`` penalises missed foreground more (favours recall).

    Args:
        y_true, y_pred, from_logits, smooth, class_weights, include_background, batch_dice,
            ignore_class, sample_weight: as in :func:`dice_loss`.
        alpha: weight ``>= 0`` of false positives.
        beta: weight ``>= 0`` of false negatives (``alpha + beta > 0``).

    Returns:
        Scalar loss in ``[0, 1]``.

    Example:
        >>> float(tversky_loss([[[1, 0]]], [[[[0.0], [1.0]]]], alpha=0.3, beta=0.7, smooth=0))
        1.0
    """
    alpha, beta = _check_tversky(alpha, beta)
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    return _overlap_loss(
        prepared, alpha, beta, smooth, class_weights, include_background, batch_dice
    )


def focal_loss(
    y_true,
    y_pred,
    *,
    from_logits=False,
    gamma=2.0,
    alpha=None,
    ignore_class=None,
    sample_weight=None,
):
    """Focal loss (Lin et al. 2017), averaged over the valid pixels.

    Formula, with ``p_t`` the probability of the pixel's true class (binary: ``p`` or
    ``1 - p``) and ``w`` the pixel weight::

        FL   = -alpha_t (1 - p_t)^gamma log(p_t)
        loss = sum(w FL) / sum(w)

    ``alpha``: None (``alpha_t = 1``); a float in ``[0, 1]``, ``alpha`` for every foreground
    class and ``1 - alpha`` for the background (the paper's binary form); or a list with one
    weight ``>= 0`` per class. ``alpha`` is not renormalised. ``gamma = 0`` and ``alpha=None``
    give the cross-entropy.

    Args:
        y_true, y_pred, from_logits, ignore_class, sample_weight: as in :func:`dice_loss`.
        gamma: focusing exponent ``>= 0``.
        alpha: class balance, see above.

    Returns:
        Scalar loss.

    Example:
        >>> round(float(focal_loss([[[1]]], [[[[0.5]]]], gamma=2.0)), 4)  # 0.5^2 ln 2
        0.1733
    """
    gamma = _check_number("gamma", gamma, hint="gamma=0 is the cross-entropy; 2.0 is usual.")
    alpha = _check_focal_alpha(alpha)
    return _pixel_loss(
        _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight), gamma, alpha
    )


def dice_ce_loss(
    y_true,
    y_pred,
    *,
    from_logits=False,
    smooth=1.0,
    class_weights=None,
    include_background=True,
    batch_dice=True,
    ignore_class=None,
    dice_weight=1.0,
    ce_weight=1.0,
    sample_weight=None,
):
    """Soft Dice + cross-entropy (as nnU-Net and MONAI ``DiceCELoss``).

    Formula, with ``w`` the pixel weight and ``g`` the pixel's true class::

        CE   = sum(w cw_g (-log p_g)) / sum(w)        (binary cross-entropy for 1 channel)
        loss = dice_weight dice_loss(...) + ce_weight CE

    ``class_weights`` weigh the Dice mean over classes and each pixel's CE by its true class
    (not renormalised, like Keras ``class_weight``). Ignored pixels count in neither term.

    Args:
        y_true, y_pred, from_logits, smooth, class_weights, include_background, batch_dice,
            ignore_class, sample_weight: as in :func:`dice_loss`.
        dice_weight: factor ``>= 0`` of the Dice term.
        ce_weight: factor ``>= 0`` of the cross-entropy term.

    Returns:
        Scalar loss.

    Example:
        >>> round(float(dice_ce_loss([[[1]]], [[[[0.5]]]], smooth=0.0)), 4)  # 1/3 + ln 2
        1.0265
    """
    dice_weight, ce_weight = _check_mix(dice_weight, ce_weight)
    class_weights = _check_class_weights(class_weights)
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    dice = _overlap_loss(prepared, 0.5, 0.5, smooth, class_weights, include_background, batch_dice)
    ce = _pixel_loss(prepared, 0.0, class_weights, name="class_weights")
    return dice_weight * dice + ce_weight * ce


# --------------------------------------------------------------------------- classes
class _SegmentationLoss(keras.losses.Loss):
    """Sends Keras' ``sample_weight`` into the loss maths (see the module docstring).

    Keras would multiply a weight map into per-pixel loss values; these losses are sums over
    the batch, so the weight goes into the sums instead. The scalar then passes through Keras'
    own reduction as a 1-element vector, so ``tf.distribute`` replica scaling still applies.
    ``reduction`` is accepted for Keras compatibility; the value is already one number.
    """

    def __call__(self, y_true, y_pred, sample_weight=None):
        self._sample_weight = sample_weight
        try:
            return super().__call__(y_true, y_pred)
        finally:
            self._sample_weight = None

    def call(self, y_true, y_pred):
        sample_weight = getattr(self, "_sample_weight", None)
        return ops.reshape(
            self.function(y_true, y_pred, sample_weight=sample_weight, **self._options()), (1,)
        )

    def _options(self):
        return {key: getattr(self, key) for key in self._option_names}

    def get_config(self):
        return {**super().get_config(), **self._options()}


@keras.saving.register_keras_serializable(package="unet_lib")
class DiceLoss(_SegmentationLoss):
    """Soft Dice loss; see :func:`dice_loss` for the formula and arguments.

    Keras' ``sample_weight`` multiplies ``p`` and ``g`` in the Dice sums. ``name``,
    ``reduction`` and ``dtype`` go to :class:`keras.losses.Loss`.

    Example:
        >>> loss = DiceLoss(from_logits=True, ignore_class=-1)  # model.compile(loss=loss)
    """

    function = staticmethod(dice_loss)
    _option_names = ("from_logits", "smooth", "class_weights", "include_background")
    _option_names += ("batch_dice", "ignore_class")

    def __init__(
        self,
        *,
        from_logits=False,
        smooth=1.0,
        class_weights=None,
        include_background=True,
        batch_dice=True,
        ignore_class=None,
        name="dice_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.smooth = _check_number("smooth", smooth, hint=_SMOOTH_HINT)
        self.class_weights = _check_class_weights(class_weights)
        self.include_background = bool(include_background)
        self.batch_dice = bool(batch_dice)
        self.ignore_class = _check_ignore_class(ignore_class)


@keras.saving.register_keras_serializable(package="unet_lib")
class DiceCELoss(DiceLoss):
    """Soft Dice + cross-entropy; see :func:`dice_ce_loss`.

    Keras' ``sample_weight`` multiplies ``p`` and ``g`` in the Dice sums and each pixel's CE
    term (CE = ``sum(w ce) / sum(w)``).

    Example:
        >>> loss = DiceCELoss(from_logits=True, ce_weight=0.5)  # model.compile(loss=loss)
    """

    function = staticmethod(dice_ce_loss)
    _option_names = (*DiceLoss._option_names, "dice_weight", "ce_weight")

    def __init__(
        self,
        *,
        from_logits=False,
        smooth=1.0,
        class_weights=None,
        include_background=True,
        batch_dice=True,
        ignore_class=None,
        dice_weight=1.0,
        ce_weight=1.0,
        name="dice_ce_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            from_logits=from_logits,
            smooth=smooth,
            class_weights=class_weights,
            include_background=include_background,
            batch_dice=batch_dice,
            ignore_class=ignore_class,
            name=name,
            reduction=reduction,
            dtype=dtype,
        )
        self.dice_weight, self.ce_weight = _check_mix(dice_weight, ce_weight)


@keras.saving.register_keras_serializable(package="unet_lib")
class TverskyLoss(DiceLoss):
    """Tversky loss (``alpha`` weighs FP, ``beta`` FN); see :func:`tversky_loss`.

    Keras' ``sample_weight`` multiplies ``p`` and ``g`` in the TP / FP / FN sums.

    Example:
        >>> loss = TverskyLoss(alpha=0.3, beta=0.7)  # favour recall
    """

    function = staticmethod(tversky_loss)
    _option_names = (*DiceLoss._option_names, "alpha", "beta")

    def __init__(
        self,
        *,
        from_logits=False,
        alpha=0.5,
        beta=0.5,
        smooth=1.0,
        class_weights=None,
        include_background=True,
        batch_dice=True,
        ignore_class=None,
        name="tversky_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            from_logits=from_logits,
            smooth=smooth,
            class_weights=class_weights,
            include_background=include_background,
            batch_dice=batch_dice,
            ignore_class=ignore_class,
            name=name,
            reduction=reduction,
            dtype=dtype,
        )
        self.alpha, self.beta = _check_tversky(alpha, beta)


@keras.saving.register_keras_serializable(package="unet_lib")
class FocalLoss(_SegmentationLoss):
    """Focal loss; see :func:`focal_loss`.

    Keras' ``sample_weight`` multiplies each pixel's term: the loss is ``sum(w FL) / sum(w)``.

    Example:
        >>> loss = FocalLoss(gamma=2.0, alpha=0.25, from_logits=True)
    """

    function = staticmethod(focal_loss)
    _option_names = ("from_logits", "gamma", "alpha", "ignore_class")

    def __init__(
        self,
        *,
        from_logits=False,
        gamma=2.0,
        alpha=None,
        ignore_class=None,
        name="focal_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)
        self.gamma = _check_number("gamma", gamma, hint="gamma=0 is the cross-entropy.")
        self.alpha = _check_focal_alpha(alpha)
        self.ignore_class = _check_ignore_class(ignore_class)
