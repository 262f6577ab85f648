"""Reading and checking observation files (``.npz`` with ``x``, optional ``u`` and ``s``).

Every problem is reported as a one-line ``ValueError`` that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from nica.storage import load_npz

__all__ = ["Observations", "check_observations", "load_observations"]


@dataclasses.dataclass(frozen=True)
class Observations:
    """Checked arrays: ``x (N, D)``; ``u (N,)`` or ``(N, d)`` or None; ``s (N, D)`` or None."""

    x: np.ndarray
    u: np.ndarray | None = None
    s: np.ndarray | None = None


def _numeric(name: str, a: np.ndarray, where: str) -> np.ndarray:
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{where}: {name!r} must be numeric, got dtype {a.dtype}")
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: {name!r} contains NaN or Inf")
    return a


def check_observations(x, u=None, s=None, *, where: str = "data") -> Observations:
    """Checks shapes, dtypes and finiteness; returns the arrays as an :class:`Observations`.

    Args:
      x: observations, shape ``(N, D)``, ``N >= 2``.
      u: auxiliary variable, shape ``(N,)`` or ``(N, d)``, or ``None``.
      s: true sources, shape ``(N, D)``, or ``None``.
      where: the data's name in error messages (e.g. the file path).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{where}: 'x' must be 2-D (N, D), got shape {x.shape}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{where}: 'x' is empty or has a single sample, shape {x.shape}")
    x = _numeric("x", x, where).astype(np.float64)
    if u is not None:
        u = _numeric("u", np.asarray(u), where)
        if u.ndim not in (1, 2) or u.shape[0] != x.shape[0] or (u.ndim == 2 and not u.shape[1]):
            raise ValueError(
                f"{where}: 'u' must have shape ({x.shape[0]},) or ({x.shape[0]}, d), got {u.shape}"
            )
    if s is not None:
        s = _numeric("s", np.asarray(s), where).astype(np.float64)
        if s.shape != x.shape:
            raise ValueError(f"{where}: 's' must have the shape of 'x' {x.shape}, got {s.shape}")
    return Observations(x, u, s)


def load_observations(path: str | os.PathLike) -> Observations:
    """Loads and checks an ``.npz`` holding ``x`` and optionally ``u`` and ``s``."""
    arrays = load_npz(path)
    if "x" not in arrays:
        raise ValueError(f"{path}: no 'x' array (keys: {', '.join(sorted(arrays)) or 'none'})")
    return check_observations(arrays["x"], arrays.get("u"), arrays.get("s"), where=str(path))
