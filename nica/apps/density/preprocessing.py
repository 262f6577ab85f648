"""The preprocessing map ``T`` of a density model, from data units to the model's space.

``T`` is the identity, or dequantisation + logit for bounded or discrete data; its
log-Jacobian is counted in every log-density (see :mod:`nica.apps.density`). For discrete data
``v`` is the dequantised datum ``x + U``, ``U ~ U(0, 1)^D``, whose density in the data's
integer units bounds the log-probability of ``x`` from below (Theis et al. 2016).

Logit preprocessing (Real NVP's, with MAF's alpha-shrink), data in ``[low, high]``:

    y = (v - low) / width               width = high - low (+ 1 when dequantised)
    p = alpha + (1 - 2 alpha) y         in [alpha, 1 - alpha]: the logit stays finite
    z = log p - log(1 - p)
    log|dz/dv| = log(1 - 2 alpha) - log width - log p - log(1 - p)     (per dimension)

Float64 NumPy throughout.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from nica.fitting.data import check_observations

__all__ = ["DEQUANTISATION_COPIES", "Preprocessing", "resolve_copies"]

#: Noise draws of each training row when dequantising (more copies, a better test
#: log-likelihood on the digits: docs/density.md).
DEQUANTISATION_COPIES = 8


def resolve_copies(copies: int | None, preprocessing: Preprocessing) -> int:
    """``copies``, or its default: :data:`DEQUANTISATION_COPIES` when dequantising, else 1."""
    if copies is None:
        return DEQUANTISATION_COPIES if preprocessing.dequantise else 1
    return copies


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The map ``T`` from data units to the model's space, with its log-Jacobian.

    Attributes:
      logit: apply the logit map on ``[low, high]`` (else ``T`` is the identity).
      low, high: the data's bounds (required with ``logit``; ``low < high``).
      dequantise: the data are integers in ``[low, high]``: add ``U(0, 1)`` noise first
        (the bin ``[x, x + 1)``), so the width is ``high - low + 1``.
      alpha: the logit's shrink towards ``1/2``, in ``(0, 1/2)`` (default MAF's 1e-6 for
        MNIST; Real NVP used 0.05; on the digits 1e-6 gave the higher test likelihood, for the
        Gaussian as for nica).
    """

    logit: bool = False
    low: float | None = None
    high: float | None = None
    dequantise: bool = False
    alpha: float = 1e-6

    def validate(self) -> Preprocessing:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        if not self.logit:
            if self.dequantise or self.low is not None or self.high is not None:
                raise ValueError("bounds and dequantisation need the logit preprocessing")
            return self
        if self.low is None or self.high is None:
            raise ValueError("the logit preprocessing needs the data's bounds low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"bounds must be finite with low < high, got {self.low}, {self.high}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.dequantise and (self.low != round(self.low) or self.high != round(self.high)):
            raise ValueError("dequantisation needs integer bounds")
        return self

    @property
    def width(self) -> float:
        """Length of the interval mapped to ``(0, 1)``: ``high - low`` (+1 when dequantised)."""
        return float(self.high - self.low + (1 if self.dequantise else 0))

    def check(self, x, *, where: str = "data") -> np.ndarray:
        """Checks that ``x (N, D)`` lies in the bounds (integers when dequantised).

        Returns ``x`` as float64; a one-line ``ValueError`` naming a bad value otherwise.
        """
        x = check_observations(x, where=where).x
        if not self.logit:
            return x
        bad = (x < self.low) | (x > self.high)
        if bad.any():
            i, j = np.unravel_index(int(np.argmax(bad)), x.shape)
            raise ValueError(
                f"{where}: 'x' has {int(bad.sum())} values outside the bounds [{self.low:g},"
                f" {self.high:g}] of the logit preprocessing (first x[{i}, {j}] = {x[i, j]:g})"
            )
        if self.dequantise and np.any(x != np.round(x)):
            i, j = np.unravel_index(int(np.argmax(x != np.round(x))), x.shape)
            raise ValueError(
                f"{where}: dequantisation needs integer data, got x[{i}, {j}] = {x[i, j]:g}"
            )
        return x

    def dequantised(self, key: jax.Array, x: np.ndarray) -> np.ndarray:
        """``x + U(0, 1)`` with noise drawn from ``key`` when dequantising, else ``x``.

        Shapes ``(N, D) -> (N, D)``, float64.
        """
        x = np.asarray(x, np.float64)
        if not self.dequantise:
            return x
        return x + np.asarray(jax.random.uniform(key, x.shape), np.float64)

    def forward_and_log_det(self, v) -> tuple[np.ndarray, np.ndarray]:
        """``(T(v), log|det dT/dv|)`` with shapes ``(N, D), (N,)``; ``v`` already dequantised."""
        v = np.asarray(v, np.float64)
        if not self.logit:
            return v, np.zeros(v.shape[0])
        p = self.alpha + (1.0 - 2.0 * self.alpha) * (v - self.low) / self.width
        z = np.log(p) - np.log1p(-p)
        per_dim = math.log(1.0 - 2.0 * self.alpha) - math.log(self.width) - np.log(p)
        return z, (per_dim - np.log1p(-p)).sum(axis=1)

    def inverse(self, z) -> np.ndarray:
        """``v = T^{-1}(z)``, shape ``(N, D)`` (dequantised values in ``[low, high + 1)``)."""
        z = np.asarray(z, np.float64)
        if not self.logit:
            return z
        y = (1.0 / (1.0 + np.exp(-z)) - self.alpha) / (1.0 - 2.0 * self.alpha)
        return self.low + self.width * y

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return dataclasses.asdict(self)
