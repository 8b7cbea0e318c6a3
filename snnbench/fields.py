"""Checked configuration fields, shared by ``NetworkConfig`` and ``TrainConfig``.

Each helper returns the value as a plain Python ``int`` / ``float`` / ``bool`` (so equal settings serialise and
hash equally whatever numeric type they came in) or raises a one-line ``ValueError`` naming the config and field.
Numpy integer, floating and bool scalars are accepted; Python ``bool`` is not a number here, and complex is not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

def is_integer(value: Any, low: int = 1) -> bool:
    """``value`` is an ``int`` or numpy integer (not a ``bool``) >= ``low``."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and bool(value >= low)


def is_real(value: Any) -> bool:
    """``value`` is a finite ``int``/``float`` or numpy number (not a ``bool``)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
            and math.isfinite(value))


def integer(config: str, name: str, value: Any, low: int = 1, high: int | None = None) -> int:
    """``value`` as an ``int`` >= ``low`` (and <= ``high`` when given)."""
    if not is_integer(value, low):
        raise ValueError(f"{config} config: {name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{config} config: {name} must be at most {high:,}, got {value!r}")
    return int(value)


def real(config: str, name: str, value: Any) -> float:
    """``value`` as a finite ``float``."""
    if not is_real(value):
        raise ValueError(f"{config} config: {name} must be a finite number, got {value!r}")
    return float(value)


def boolean(config: str, name: str, value: Any) -> bool:
    """``value`` as a ``bool``; 0 and 1 are refused, not read as false and true."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{config} config: {name} must be true or false, got {value!r}")
    return bool(value)
