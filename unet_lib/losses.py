"""Segmentation losses: soft Dice, Dice + cross-entropy, focal and Tversky.

Each loss is a pure ``keras.ops`` function (any Keras backend) and a thin registered
:class:`keras.losses.Loss` around it. ``y_pred`` is ``(B, H, W, C)`` probabilities (logits with
``from_logits=True``); binary ``C = 1`` becomes the two channels ``[1 - p, p]``. ``y_true`` is a
label map or one-hot (:func:`unet_lib.targets.prepare_truth`; ``ignore_class`` pixels count
nowhere). ``sample_weight`` (per pixel or per image ``(B,)``): a pixel of weight ``w`` counts
as ``w`` copies of itself, in the Dice / Tversky sums and in ``sum(w * term) / sum(w)``.

Example:
    >>> y_true = [[[1, 0], [1, 1]]]                                  # (1, 2, 2) label map
    >>> y_pred = [[[[0.9], [0.2]], [[0.6], [0.3]]]]                  # (1, 2, 2, 1) sigmoid
    >>> round(float(dice_loss(y_true, y_pred)), 4)  # 1 - (2 * 1.8 + 1) / (2.0 + 3 + 1)
    0.2333
"""

import inspect
from functools import partial

import keras
from keras import ops

from unet_lib.checks import is_number
from unet_lib.targets import check_ignore_class, check_prediction, prepare_truth

_EPS = 1e-7
_CW_HINT = "Give [background, foreground] for num_classes=1, or None for equal weights."
_ALPHA_HINT = "A float weighs the foreground classes (background: 1 - alpha), a list each class."


def _check_number(name, value, *, maximum=None, hint=""):
    """A finite float ``>= 0`` (and ``<= maximum``), else ValueError."""
    if not is_number(value) or value < 0 or (maximum is not None and value > maximum):
        bounds = ">= 0" if maximum is None else f"in [0, {maximum}]"
        raise ValueError(f"{name} must be a number {bounds}, got {value!r}. {hint}".strip())
    return float(value)


def _check_list(name, values, *, positive, hint, number_max=None):
    """None, a number in ``[0, number_max]`` or a list of finite numbers > 0 (or >= 0)."""
    if values is None:
        return None
    if number_max is not None and is_number(values):
        return _check_number(name, values, maximum=number_max, hint=hint)
    items = values.tolist() if hasattr(values, "tolist") else values  # NumPy arrays too
    items = list(items) if isinstance(items, list | tuple) else []
    if not items or not all(is_number(v) and (v > 0 if positive else v >= 0) for v in items):
        sign = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a list of {sign} numbers, got {values!r}. {hint}")
    return [float(v) for v in items]


#: One validator per option name (``alpha`` is Tversky's; focal_loss replaces it).
_CHECKS = {
    **dict.fromkeys(("from_logits", "include_background", "batch_dice"), bool),
    "ignore_class": check_ignore_class,
    "class_weights": partial(_check_list, "class_weights", positive=True, hint=_CW_HINT),
    "smooth": partial(_check_number, "smooth", hint="Use 0 for none, or a small value (1.0)."),
    "gamma": partial(_check_number, "gamma", hint="gamma=0 is the cross-entropy; 2.0 is usual."),
    "alpha": partial(_check_number, "alpha", hint="alpha weighs false positives."),
    "beta": partial(_check_number, "beta", hint="beta weighs false negatives."),
    "dice_weight": partial(_check_number, "dice_weight"),
    "ce_weight": partial(_check_number, "ce_weight"),
}
_FOCAL_ALPHA = partial(_check_list, "alpha", positive=False, hint=_ALPHA_HINT, number_max=1)
_FOCAL_CHECKS = {**_CHECKS, "alpha": _FOCAL_ALPHA}
_PAIRS = (  # options of which at least one must be > 0
    ("alpha", "beta", "alpha + beta must be > 0; alpha = beta = 0.5 is the Dice loss."),
    ("dice_weight", "ce_weight", "dice_weight and ce_weight are both 0: give one a weight > 0."),
)


def _checked(checks=_CHECKS, **options):
    """The options validated by ``checks`` (name -> validator) and the pair rules."""
    out = {key: checks[key](value) for key, value in options.items()}
    for first, second, message in _PAIRS:
        if first in out and second in out and out[first] + out[second] <= 0:
            raise ValueError(message)
    return out


def _per_class(values, num_labels, name, dtype):
    if len(values) != num_labels:
        raise ValueError(
            f"{name} has {len(values)} entries but the prediction has {num_labels} classes "
            "(num_classes=1 is binary: give [background, foreground]). Give one per class."
        )
    return ops.convert_to_tensor(values, dtype=dtype)


def _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight):
    """One-hot truth, probabilities, log-probabilities ``(B, ..., L)``, pixel weights, binary."""
    ignore_class = check_ignore_class(ignore_class)
    y_pred = ops.convert_to_tensor(y_pred)
    dtype = "float64" if keras.backend.standardize_dtype(y_pred.dtype) == "float64" else "float32"
    y_pred = check_prediction(y_pred, dtype=dtype)
    channels = y_pred.shape[-1]
    truth, weight = prepare_truth(
        y_true, y_pred.shape, max(channels, 2), ignore_class=ignore_class,
        sample_weight=sample_weight, dtype=dtype,
    )  # fmt: skip
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
    smooth, class_weights = _checked(smooth=smooth, class_weights=class_weights).values()
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


def dice_loss(y_true, y_pred, *, from_logits=False, smooth=1.0, class_weights=None,
              include_background=True, batch_dice=True, ignore_class=None,
              sample_weight=None):  # fmt: skip
    """Soft Dice loss.

    Per class ``c``, with pixel weights ``w`` (valid mask times ``sample_weight``) and
    positive ``class_weights`` ``cw`` (one per label class; default equal)::

        dice_c = (2 sum(w p_c g_c) + smooth) / (sum(w p_c) + sum(w g_c) + smooth)
        loss   = sum_c(cw_c (1 - dice_c)) / sum_c(cw_c)

    The sums run over the batch (``batch_dice=True``, as nnU-Net) or each image, then averaged
    over the images with valid pixels. Binary uses the foreground Dice only;
    ``include_background=False`` drops class 0 of a multi-class model. With ``smooth=0`` a
    class absent from truth and prediction scores 1.

    Example:
        >>> float(dice_loss([[[1, 0]]], [[[[1.0], [0.0]]]], smooth=0.0))
        0.0
    """
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    return _overlap_loss(prepared, 0.5, 0.5, smooth, class_weights, include_background, batch_dice)


def tversky_loss(y_true, y_pred, *, from_logits=False, alpha=0.5, beta=0.5, smooth=1.0,
                 class_weights=None, include_background=True, batch_dice=True,
                 ignore_class=None, sample_weight=None):  # fmt: skip
    """Tversky loss: Dice with separate weights for false positives and false negatives.

    Per class, with ``TP = sum(w p g)``, ``FP = sum(w p (1 - g))``, ``FN = sum(w (1 - p) g)``,
    ``T_c = (2 TP + smooth) / (2 TP + 2 alpha FP + 2 beta FN + smooth)``, and the loss is
    ``sum_c(cw_c (1 - T_c)) / sum_c(cw_c)`` (the usual index with ``s = smooth / 2``): ``alpha =
    beta = 0.5`` is :func:`dice_loss`, ``beta > alpha`` favours recall. Other arguments: as there.

    Example:
        >>> float(tversky_loss([[[1, 0]]], [[[[0.0], [1.0]]]], alpha=0.3, beta=0.7, smooth=0))
        1.0
    """
    alpha, beta = _checked(alpha=alpha, beta=beta).values()
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    return _overlap_loss(
        prepared, alpha, beta, smooth, class_weights, include_background, batch_dice
    )


def focal_loss(y_true, y_pred, *, from_logits=False, gamma=2.0, alpha=None, ignore_class=None,
               sample_weight=None):  # fmt: skip
    """Focal loss (Lin et al. 2017), averaged over the valid pixels.

    With ``p_t`` the probability of the pixel's true class and ``w`` the pixel weight,
    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)`` and the loss is ``sum(w FL) / sum(w)``.
    ``gamma >= 0`` focuses on hard pixels. ``alpha``: None (``alpha_t = 1``); a float in
    ``[0, 1]`` for every foreground class, ``1 - alpha`` for the background (the paper's
    binary form); or one weight ``>= 0`` per class (not renormalised). ``gamma = 0`` and
    ``alpha=None`` give the cross-entropy. Other arguments: as in :func:`dice_loss`.

    Example:
        >>> round(float(focal_loss([[[1]]], [[[[0.5]]]], gamma=2.0)), 4)  # 0.5^2 ln 2
        0.1733
    """
    gamma, alpha = _checked(_FOCAL_CHECKS, gamma=gamma, alpha=alpha).values()
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    return _pixel_loss(prepared, gamma, alpha)


def dice_ce_loss(y_true, y_pred, *, from_logits=False, smooth=1.0, class_weights=None,
                 include_background=True, batch_dice=True, ignore_class=None, dice_weight=1.0,
                 ce_weight=1.0, sample_weight=None):  # fmt: skip
    """Soft Dice + cross-entropy (as nnU-Net and MONAI ``DiceCELoss``).

    ``loss = dice_weight * dice_loss(...) + ce_weight * CE`` with
    ``CE = sum(w cw_g (-log p_g)) / sum(w)`` (``g`` the pixel's true class; binary
    cross-entropy for one channel). ``class_weights`` weigh the Dice mean over classes and
    each pixel's CE by its true class (not renormalised, like Keras ``class_weight``). Other
    arguments: as in :func:`dice_loss`.

    Example:
        >>> round(float(dice_ce_loss([[[1]]], [[[[0.5]]]], smooth=0.0)), 4)  # 1/3 + ln 2
        1.0265
    """
    dice_weight, ce_weight, class_weights = _checked(
        dice_weight=dice_weight, ce_weight=ce_weight, class_weights=class_weights
    ).values()
    prepared = _prepare(y_true, y_pred, from_logits, ignore_class, sample_weight)
    dice = _overlap_loss(prepared, 0.5, 0.5, smooth, class_weights, include_background, batch_dice)
    ce = _pixel_loss(prepared, 0.0, class_weights, name="class_weights")
    return dice_weight * dice + ce_weight * ce


class _SegmentationLoss(keras.losses.Loss):
    """A loss class around ``function``, registered as ``unet_lib>ClassName``.

    Subclasses declare only ``function``, whose keyword arguments (but ``sample_weight``) and
    defaults are the options: one attribute each, validated, in ``get_config`` and
    ``inspect.signature``. Keras' ``sample_weight`` goes into the loss's sums; the scalar
    passes Keras' reduction as a 1-element vector (``tf.distribute`` scaling still applies).
    """

    function = None
    checks = _CHECKS

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = inspect.signature(cls.function).parameters.values()
        cls.defaults = {p.name: p.default for p in params if p.kind is keyword}
        cls.defaults.pop("sample_weight")
        own = {"name": cls.function.__name__, "reduction": "sum_over_batch_size", "dtype": None}
        cls.__signature__ = inspect.Signature(
            [inspect.Parameter(k, keyword, default=v) for k, v in {**cls.defaults, **own}.items()]
        )
        keras.saving.register_keras_serializable(package="unet_lib")(cls)

    def __init__(self, *, name=None, reduction="sum_over_batch_size", dtype=None, **options):
        name = name or self.function.__name__
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {unknown}; its options are "
                f"{list(self.defaults)} (see unet_lib.losses.{self.function.__name__})."
            )
        for key, value in _checked(self.checks, **{**self.defaults, **options}).items():
            setattr(self, key, value)

    def __call__(self, y_true, y_pred, sample_weight=None):
        self._sample_weight = sample_weight
        try:
            return super().__call__(y_true, y_pred)
        finally:
            self._sample_weight = None

    def call(self, y_true, y_pred):
        weight = getattr(self, "_sample_weight", None)
        loss = self.function(y_true, y_pred, sample_weight=weight, **self._options())
        return ops.reshape(loss, (1,))

    def _options(self):
        return {key: getattr(self, key) for key in self.defaults}

    def get_config(self):
        return {**super().get_config(), **self._options()}


class DiceLoss(_SegmentationLoss):
    """Soft Dice loss (:func:`dice_loss`): ``DiceLoss(from_logits=True, ignore_class=-1)``."""

    function = staticmethod(dice_loss)


class DiceCELoss(DiceLoss):
    """Soft Dice + cross-entropy (:func:`dice_ce_loss`)."""

    function = staticmethod(dice_ce_loss)


class TverskyLoss(DiceLoss):
    """Tversky loss (:func:`tversky_loss`): ``TverskyLoss(alpha=0.3, beta=0.7)`` favours recall."""

    function = staticmethod(tversky_loss)


class FocalLoss(_SegmentationLoss):
    """Focal loss (:func:`focal_loss`): ``FocalLoss(gamma=2.0, alpha=0.25)``."""

    function = staticmethod(focal_loss)
    checks = _FOCAL_CHECKS
