"""Type checks behind the library's argument validation (standard library only, so NumPy /
OpenCV modules such as :mod:`unet_lib.weightmap` use them without importing Keras)."""

import dataclasses
import math
import numbers


def is_int(value) -> bool:
    """Whether ``value`` is an integer (NumPy integers too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether ``value`` is a finite real number (NumPy scalars too), not a bool."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return real and math.isfinite(value)


def from_fields(cls, values: dict, what: str):
    """``cls(**values)`` for a dataclass read from JSON; unknown keys raise one ``ValueError``
    that names them (``what``: e.g. ``"training options:"``)."""
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}")
    return cls(**values)
