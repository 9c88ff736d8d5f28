"""Finite-difference reference for the engine's analytic gradients (test helper)."""

from __future__ import annotations

import numpy as np


def numerical_gradient(func, xyz: np.ndarray, step: float = 1e-5) -> np.ndarray:
    """Central finite-difference gradient of ``func(xyz) -> float`` (same shape as xyz)."""
    xyz = np.array(xyz, dtype=np.float64, copy=True)
    grad = np.empty_like(xyz)
    flat = xyz.reshape(-1)
    out = grad.reshape(-1)
    for q in range(flat.size):
        keep = flat[q]
        flat[q] = keep + step
        plus = func(xyz)
        flat[q] = keep - step
        minus = func(xyz)
        flat[q] = keep
        out[q] = (plus - minus) / (2.0 * step)
    return grad
