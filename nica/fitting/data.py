"""Observations where they enter nica: checking, segment labels, standardisation.

This is the one validation path for data (the CLI, :func:`nica.fit` and ``synthetic`` use it).
Every problem is a one-line ``ValueError`` that starts with where the data came from (a file
path, or ``"data"``) and names the array, and for degenerate data the column or row (0-based).

:func:`standardise` refuses data on which a fit would be meaningless or numerically broken:

* a value of magnitude above ``MAX_MAGNITUDE`` (its square overflows; ``x * 1e200``);
* a constant column (or one whose spread is below float64 resolution of its values);
* a gross outlier: one of a column's ``OUTLIER_RANK`` farthest rows that lies more than
  ``ISOLATION`` times as far from the column's median as the next farthest row after them
  (an isolated value, not the end of a heavy tail) and more than ``MIN_OUTLIER_Z`` robust
  standard deviations (median absolute deviation scaled to a standard deviation) out; such a
  row inflates the column's standard deviation (see :func:`squash`), squashes every other
  row after standardisation, and pulls the fit towards itself;
* (numerically) collinear columns: the correlation matrix of the data has a condition number
  above ``MAX_CONDITION`` (a duplicated column gives infinity); the message names the most
  collinear pair, or the column best explained by the others.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from nica.util.files import load_npz
from nica.util.warn import warn

__all__ = [
    "MAX_CONDITION",
    "MAX_MAGNITUDE",
    "ISOLATION",
    "MIN_OUTLIER_Z",
    "WARN_ISOLATION",
    "OutlierWarning",
    "OUTLIER_RANK",
    "Observations",
    "Standardisation",
    "check_labels",
    "check_observations",
    "load_observations",
    "standardise",
]

MAX_MAGNITUDE = 1e150
"""Largest accepted ``|x|``: squares stay far from float64 overflow (1.8e308)."""

ISOLATION = 30.0
"""How many times as far from the median as the next farthest rows a refused outlier row lies
(see the module docstring); from :data:`WARN_ISOLATION` up to it, a one-line
:class:`OutlierWarning`. ``experiments/outlier_tolerance.py`` (``results/outlier_tolerance``)
measured both sides. What a default fit tolerates depends on its size: with 4,000 rows one
planted row cost 0.004 MCC at 3.5x, 0.014 at 7x and 0.07-0.1 from 12x on; with 40,000 rows at
most 0.004 up to 717x. What clean data reach: at 30x, 0-0.2% of Gaussian, Laplace, Student-t
(5 and 3 degrees of freedom) and lognormal(0, 1) samples of 50-40,000 rows (5 columns) are
refused, 2-4% of Student-t(2), and lognormal(0, 2) and Cauchy samples often (a few rows set
their standard deviation: transform such data first)."""

WARN_ISOLATION = 10.0
"""From this isolation on (and below :data:`ISOLATION`) a row draws an
:class:`OutlierWarning`: a fit of a few thousand rows already loses MCC to it."""

OUTLIER_RANK = 5
"""Up to this many outlier rows per column are found (they are compared with the next one)."""

MIN_OUTLIER_Z = 10.0
"""A row is refused as an outlier only beyond this many robust standard deviations from its
column's median, so that a tiny sample's isolated but ordinary value is not refused."""

MAX_CONDITION = 1e8
"""Largest accepted condition number of the data's correlation matrix (eigenvalue ratio)."""

MIN_RELATIVE_SPREAD = 1e-12
"""A column whose standard deviation is below this fraction of its largest ``|x|`` is constant
to within float64 rounding (fewer than ~4 significant digits vary)."""

FLOAT32_SAFE = 1e15
"""Largest ``|z|`` handed to the float32 model (its square stays below float32's 3.4e38)."""

FLOAT32_MIN_RELATIVE_SPREAD = 1e-5
"""Without standardisation, a column must vary by this fraction of its magnitude to survive
the cast to float32 (whose resolution is 1.2e-7)."""


class OutlierWarning(UserWarning):
    """A row lies far out, though not as far as a refused gross outlier (:data:`ISOLATION`)."""


@dataclasses.dataclass(frozen=True)
class Observations:
    """Checked arrays: ``x (N, D)`` float64; ``u (N,)`` or ``(N, d)`` or None; ``s (N, D)``
    float64 or None."""

    x: np.ndarray
    u: np.ndarray | None = None
    s: np.ndarray | None = None


def _real(name: str, a: np.ndarray, where: str) -> np.ndarray:
    """Checks that ``a`` is real numeric (bool, int or float) and finite."""
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        if a.dtype != bool:
            raise ValueError(f"{where}: {name!r} must be numeric (real), got dtype {a.dtype}")
    bad = ~np.isfinite(a) if np.issubdtype(a.dtype, np.floating) else None
    if bad is not None and bad.any():
        first = np.unravel_index(int(np.argmax(bad)), a.shape)
        at = ", ".join(str(int(i)) for i in first)
        raise ValueError(
            f"{where}: {name!r} contains NaN or Inf ({int(bad.sum())} of {a.size} values;"
            f" first at [{at}])"
        )
    return a


def check_observations(x, u=None, s=None, *, where: str = "data") -> Observations:
    """Checks shapes, dtypes and finiteness; returns the arrays as an :class:`Observations`.

    Args:
      x: observations, shape ``(N, D)``, ``N >= 2``, ``D >= 1``; returned as float64.
      u: auxiliary variable, shape ``(N,)`` or ``(N, d)`` (numbers, or string labels; how it
        is read is :func:`nica.fitting.auxiliary.read_aux`'s rule), or ``None``; returned as given.
      s: true sources, shape ``(N, D)``, or ``None``; returned as float64.
      where: the data's name in error messages (e.g. the file path).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{where}: 'x' must be 2-D (N, D), got shape {x.shape}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(f"{where}: 'x' is empty or has a single sample, shape {x.shape}")
    x = _real("x", x, where).astype(np.float64)
    n = x.shape[0]
    if u is not None:
        u = np.asarray(u)
        if u.ndim not in (1, 2) or (u.ndim == 2 and u.shape[1] < 1):
            raise ValueError(f"{where}: 'u' must have shape ({n},) or ({n}, d), got {u.shape}")
        if u.shape[0] != n:
            raise ValueError(
                f"{where}: 'u' has {u.shape[0]} rows but 'x' has {n};"
                f" 'u' must have shape ({n},) or ({n}, d)"
            )
        if u.dtype.kind not in "US":  # string labels are read by nica.fitting.auxiliary
            u = _real("u", u, where)
    if s is not None:
        s = _real("s", np.asarray(s), where).astype(np.float64)
        if s.shape != x.shape:
            raise ValueError(f"{where}: 's' must have the shape of 'x' {x.shape}, got {s.shape}")
    return Observations(x, u, s)


def load_observations(path: str | os.PathLike) -> Observations:
    """Loads and checks an ``.npz`` holding ``x`` and optionally ``u`` and ``s``."""
    arrays = load_npz(path)
    if "x" not in arrays:
        raise ValueError(f"{path}: no 'x' array (keys: {', '.join(sorted(arrays)) or 'none'})")
    return check_observations(arrays["x"], arrays.get("u"), arrays.get("s"), where=str(path))


def check_labels(u, *, where: str | None = None) -> np.ndarray:
    """Checks segment labels ``u (N,)``: integer-valued (whole floats accepted) and ``>= 0``.

    Returns them as int32; a one-line ValueError (prefixed by ``where`` if given) otherwise.
    """
    prefix = f"{where}: " if where else ""
    u = np.asarray(u)
    if u.ndim != 1:
        raise ValueError(f"{prefix}segment labels u must be 1-D (N,), got shape {u.shape}")
    if not np.issubdtype(u.dtype, np.integer):
        whole = np.issubdtype(u.dtype, np.floating) and np.all(np.isfinite(u))
        if not whole or np.any(u != np.round(u)):
            raise ValueError(
                f"{prefix}segment labels u must be integers, got dtype {u.dtype} with"
                " non-integer values; pass a continuous u as a 2-D (N, d) float array"
            )
    if u.size and u.min() < 0:
        raise ValueError(f"{prefix}segment labels u must be non-negative, got minimum {u.min()}")
    if u.size and u.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{prefix}segment labels u must fit int32, got maximum {u.max()}")
    return u.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Standardisation:
    """The affine map ``z = (x - mean) / scale`` applied before the demixer.

    Attributes:
      mean: column centres, shape ``(D,)`` (zeros when standardisation is off).
      scale: column scales, shape ``(D,)``, all positive (ones when off).
    """

    mean: np.ndarray
    scale: np.ndarray

    def apply(self, x) -> np.ndarray:
        """Returns ``(x - mean) / scale`` as float64, shape ``(N, D)``."""
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"expected x of shape (N, {self.mean.shape[0]}), got {x.shape}")
        return (x - self.mean) / self.scale


def _column_spread(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations, computed on pre-scaled columns (no overflow)."""
    peak = np.max(np.abs(x), axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    scaled = x / peak
    mean = scaled.mean(axis=0)
    std = scaled.std(axis=0)
    return mean * peak, std * peak


def _robust_scale(x: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Median absolute deviation scaled to a Gaussian standard deviation, per column.

    Where over half a column equals its median (sparse or discrete data, MAD 0), the median
    of the non-zero deviations is used instead, so the scale is that of the rows that vary.
    """
    deviation = np.abs(x - median)
    mad = np.median(deviation, axis=0)
    for j in np.flatnonzero(mad == 0):
        nonzero = deviation[:, j][deviation[:, j] > 0]
        mad[j] = np.median(nonzero) if nonzero.size else 0.0
    return 1.482602218505602 * mad


def _check_magnitude(x: np.ndarray, where: str) -> None:
    peak = np.max(np.abs(x), axis=0)
    j = int(np.argmax(peak))
    if peak[j] > MAX_MAGNITUDE:
        i = int(np.argmax(np.abs(x[:, j])))
        raise ValueError(
            f"{where}: column {j} holds a value of magnitude {peak[j]:.3g} (row {i}), above the"
            f" limit {MAX_MAGNITUDE:.0e} where variances overflow; rescale x"
        )


def _check_constant(x: np.ndarray, std: np.ndarray, where: str, *, relative: float) -> None:
    peak = np.max(np.abs(x), axis=0)
    for j in range(x.shape[1]):
        if std[j] == 0:
            raise ValueError(
                f"{where}: column {j} is constant (every value is {x[0, j]:.6g}); drop it"
            )
        if std[j] < relative * peak[j]:
            raise ValueError(
                f"{where}: column {j} is numerically constant: its standard deviation"
                f" {std[j]:.3g} is below {relative:.0e} of its magnitude {peak[j]:.3g}; drop it"
            )


def squash(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much each column's most extreme row inflates its standard deviation.

    Args:
      x: finite data ``(N, D)``, ``N >= 3``, no constant column.

    Returns:
      ``(factor (D,), row (D,))``: the standard deviation with the row over the one without it
      (``inf`` when the other rows are constant), and the row (farthest from the column mean).
    """
    n = x.shape[0]
    peak = np.max(np.abs(x), axis=0)
    scaled = x / np.where(peak > 0, peak, 1.0)  # no overflow in the squares
    deviation = scaled - scaled.mean(axis=0)
    row = np.argmax(np.abs(deviation), axis=0)
    far = deviation[row, np.arange(x.shape[1])]
    total = np.sum(deviation**2, axis=0)
    # Removing one point: the sum of squares about the new mean is SS - n/(n-1) d^2.
    without = np.maximum(total - n / (n - 1) * far**2, 0.0) / (n - 1)
    with np.errstate(divide="ignore"):
        factor = np.sqrt(np.where(without > 0, (total / n) / without, np.inf))
    return factor, row


def isolation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each column's :data:`OUTLIER_RANK` farthest rows from its median.

    Args:
      x: finite data ``(N, D)``, ``N > OUTLIER_RANK``, no constant column.

    Returns:
      ``(rows, z, ratio)``, each ``(OUTLIER_RANK, D)``, farthest first: the rows, their
      distances in robust standard deviations, and those distances over the next farthest
      row's (``inf`` when it sits on the median).
    """
    median = np.median(x, axis=0)
    scale = _robust_scale(x, median)
    z = np.abs(x - median) / np.where(scale > 0, scale, np.inf)
    order = np.argsort(-z, axis=0, kind="stable")[: OUTLIER_RANK + 1]
    top = np.take_along_axis(z, order, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(top[-1] > 0, top[:-1] / top[-1], np.inf)
    return order[:-1], top[:-1], ratio


def _check_outliers(x: np.ndarray, where: str) -> None:
    if x.shape[0] <= OUTLIER_RANK + 1:
        return
    rows, z, ratio = isolation(x)
    refused = (ratio > ISOLATION) & (z > MIN_OUTLIER_Z)
    doubtful = (ratio > WARN_ISOLATION) & (z > MIN_OUTLIER_Z) & ~refused
    if doubtful.any() and not refused.any():
        k, j = (
            int(a) for a in np.unravel_index(int(np.argmax(np.where(doubtful, ratio, 0))), z.shape)
        )
        warn(
            f"{where}: row {int(rows[k, j])} lies far out in column {j} ({z[k, j]:.3g} robust"
            f" standard deviations, {ratio[k, j]:.3g}x as far as the next rows; refused from"
            f" {ISOLATION:g}x): a fit of a few thousand rows loses accuracy to such a row"
            " (results/outlier_tolerance); check it",
            OutlierWarning,
        )
    if refused.any():
        k, j = (int(a) for a in np.unravel_index(int(np.argmax(np.where(refused, z, 0))), z.shape))
        i, median = int(rows[k, j]), np.median(x[:, j])
        others = int(refused[:, j].sum()) - 1
        if others:
            alone = f"; with {others} more such row(s) in that column"
        else:
            alone = (
                f"; alone it inflates the column's standard deviation"
                f" {squash(x[:, j : j + 1])[0][0]:.3g}x"
            )
        raise ValueError(
            f"{where}: row {i} is a gross outlier in column {j}: value {x[i, j]:.3g} lies"
            f" {z[k, j]:.3g} robust standard deviations from the column median {median:.3g},"
            f" {ratio[k, j]:.3g}x as far as the next rows (limit {ISOLATION:g}x){alone};"
            " fix or remove the row"
        )


def _check_collinear(z: np.ndarray, where: str) -> None:
    """``z``: columns with mean 0 and standard deviation 1."""
    n, d = z.shape
    if d < 2:
        return
    if n <= d:
        raise ValueError(
            f"{where}: 'x' has {n} rows for {d} columns; centred, its columns are linearly"
            " dependent: a fit needs more rows than columns"
        )
    corr = (z.T @ z) / n
    eigenvalues, eigenvectors = np.linalg.eigh(corr)
    largest = eigenvalues[-1]
    smallest = max(eigenvalues[0], 0.0)
    if smallest * MAX_CONDITION >= largest:
        return
    condition = largest / smallest if smallest > 0 else np.inf
    detail = f"correlation-matrix condition number {condition:.3g}, limit {MAX_CONDITION:.0e}"
    off = np.abs(corr - np.diag(np.diag(corr)))
    a, b = sorted(int(i) for i in np.unravel_index(int(np.argmax(off)), off.shape))
    # A pair whose own 2x2 correlation is (nearly) as singular as the whole matrix.
    if 1.0 - off[a, b] <= 10.0 * smallest / largest:
        raise ValueError(
            f"{where}: columns {a} and {b} are identical or collinear (correlation"
            f" {corr[a, b]:.9f}, {detail}); drop one of them"
        )
    # Otherwise several columns are linearly dependent: the direction of the smallest
    # eigenvalue says which; the last of them is named as a combination of the others.
    weight = np.abs(eigenvectors[:, 0])
    involved = [int(i) for i in np.flatnonzero(weight > 0.1 * weight.max())]
    *others, k = involved
    raise ValueError(
        f"{where}: column {k} is (numerically) a linear combination of columns"
        f" {', '.join(map(str, others))} ({detail}); drop it"
    )


def _check_float32(x: np.ndarray, std: np.ndarray, where: str) -> None:
    """Without standardisation the model sees ``float32(x)``: it must neither overflow nor
    lose the column's variation."""
    peak = np.max(np.abs(x), axis=0)
    for j in range(x.shape[1]):
        if peak[j] > FLOAT32_SAFE or std[j] < 1e-30:
            raise ValueError(
                f"{where}: column {j} (magnitude {peak[j]:.3g}, standard deviation {std[j]:.3g})"
                " is out of the float32 model's range without standardisation; standardise it"
            )
        if std[j] < FLOAT32_MIN_RELATIVE_SPREAD * peak[j]:
            raise ValueError(
                f"{where}: column {j} varies by {std[j]:.3g} around {peak[j]:.3g}, below float32"
                " resolution without standardisation; standardise it"
            )


def standardise(
    x, *, enabled: bool = True, where: str = "data"
) -> tuple[np.ndarray, Standardisation]:
    """Centres and scales each column of ``x``, refusing degenerate data.

    Args:
      x: observations, shape ``(N, D)``, finite.
      enabled: centre and scale (True), or return ``x`` unchanged as float64 (False); the
        checks on the data run either way, plus, when off, that ``x`` survives float32.
      where: the data's name in error messages.

    Returns:
      ``(z, standardisation)``: ``z = standardisation.apply(x)``, float64 ``(N, D)``.

    Raises:
      ValueError: one line naming the column (or row and column) for: a value above
        ``MAX_MAGNITUDE``; a constant column; a gross outlier row; collinear columns.
    """
    x = check_observations(x, where=where).x
    _check_magnitude(x, where)
    mean, std = _column_spread(x)
    _check_constant(x, std, where, relative=MIN_RELATIVE_SPREAD)
    _check_outliers(x, where)
    _check_collinear((x - mean) / std, where)
    if enabled:
        standardisation = Standardisation(mean, std)
    else:
        d = x.shape[1]
        _check_float32(x, std, where)
        standardisation = Standardisation(np.zeros(d), np.ones(d))
    return standardisation.apply(x), standardisation
