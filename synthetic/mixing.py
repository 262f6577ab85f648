"""Random invertible MLP mixings with exact inverses.

Row-vector convention, as in ``nica``: a layer computes ``h @ A``. A :class:`Mixing` is a list of
square matrices ``A_1 .. A_M`` and an elementwise, strictly increasing activation ``sigma``.

Layer counting differs between published code, so :func:`random_mixing` takes a ``convention``
that says how ``n_layers`` maps to matrices and activations:

* ``"ivae"`` (iVAE's code): ``n_layers`` matrices, the activation after every matrix except the
  last, ``x = sigma(... sigma(s @ A_1) ...) @ A_L``. ``n_layers = 1`` is a linear mixing.
* ``"tcl"`` (counting nonlinear layers): ``n_layers`` matrices, each followed by the activation,
  ``x = sigma(... sigma(s @ A_1) ... @ A_L)``. ``n_layers = 1`` is one nonlinear layer.
* ``"icebeem"`` (ICE-BeeM's ``gen_TCL_data_ortho``): ``n_layers - 1`` matrices, the activation
  applied *before* each, ``x = sigma(... sigma(s) @ A_1 ...) @ A_{L-1}``; needs
  ``n_layers >= 2``.

Matrix families: ``"uniform"`` draws entries from U(-1, 1), normalises each column to unit L2
norm and redraws until the condition number is at most a threshold (by default the 25th
percentile of the condition numbers of 10^4 such draws, computed once per dimension with a
fixed internal seed and cached); ``"orthogonal"`` draws Haar-distributed orthogonal matrices.

Activations: ``"leaky_relu"`` (negative slope ``slope``, default 0.2; closed-form inverse) and
``"xtanh"`` (``tanh(x) + slope * x``, default slope 0.1; inverted by safeguarded Newton).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "xtanh")
FAMILIES: tuple[str, ...] = ("uniform", "orthogonal")
CONVENTIONS: tuple[str, ...] = ("ivae", "tcl", "icebeem")
DEFAULT_SLOPES: dict[str, float] = {"leaky_relu": 0.2, "xtanh": 0.1}

_THRESHOLD_SEED = 20_240_601
_THRESHOLD_CHUNK = 2_000


def leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    """Leaky ReLU ``max(x, 0) + slope * min(x, 0)``, elementwise."""
    return np.where(x >= 0, x, slope * x)


def leaky_relu_inverse(y: np.ndarray, slope: float) -> np.ndarray:
    """Closed-form inverse of :func:`leaky_relu` (``slope > 0``)."""
    return np.where(y >= 0, y, y / slope)


def xtanh(x: np.ndarray, slope: float) -> np.ndarray:
    """``tanh(x) + slope * x``, elementwise; strictly increasing for ``slope > 0``."""
    return np.tanh(x) + slope * x


def xtanh_inverse(
    y: np.ndarray, slope: float, *, tol: float = 1e-13, max_iter: int = 200
) -> np.ndarray:
    """Inverts :func:`xtanh` elementwise by Newton's method safeguarded with bisection.

    Because ``|tanh| < 1`` the root lies in ``[(y - 1) / slope, (y + 1) / slope]``; every Newton
    step that leaves the current bracket is replaced by a bisection step, so the iteration always
    converges.

    Args:
        y: values to invert, any shape.
        slope: the linear coefficient (> 0).
        tol: absolute tolerance on the residual and on the bracket width.
        max_iter: iteration cap.

    Returns:
        ``x`` with ``xtanh(x, slope) == y`` to about ``tol``, same shape as ``y``.
    """
    y = np.asarray(y, dtype=np.float64)
    lo = (y - 1.0) / slope
    hi = (y + 1.0) / slope
    x = y / (1.0 + slope)  # exact near 0, where tanh(x) ~ x
    for _ in range(max_iter):
        t = np.tanh(x)
        r = t + slope * x - y
        if np.all(np.abs(r) <= tol):
            break
        lo = np.where(r < 0, x, lo)
        hi = np.where(r > 0, x, hi)
        step = x - r / (1.0 - t * t + slope)
        inside = (step > lo) & (step < hi)
        x = np.where(r == 0, x, np.where(inside, step, 0.5 * (lo + hi)))
    return x


def _activate(name: str, x: np.ndarray, slope: float) -> np.ndarray:
    return leaky_relu(x, slope) if name == "leaky_relu" else xtanh(x, slope)


def _deactivate(name: str, y: np.ndarray, slope: float) -> np.ndarray:
    return leaky_relu_inverse(y, slope) if name == "leaky_relu" else xtanh_inverse(y, slope)


def _uniform_normalised(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """U(-1, 1) matrices of shape ``(..., D, D)`` with unit-L2-norm columns."""
    a = rng.uniform(-1.0, 1.0, shape)
    return a / np.linalg.norm(a, axis=-2, keepdims=True)


@functools.lru_cache(maxsize=64)
def condition_threshold(dim: int, n_draws: int = 10_000, percentile: float = 25.0) -> float:
    """The ``percentile``-th percentile of the condition number of uniform column-normalised
    matrices of size ``dim``, estimated from ``n_draws`` draws with a fixed internal seed.

    Cached per ``(dim, n_draws, percentile)``, so it is computed once per dimension.

    Args:
        dim: matrix size ``D``.
        n_draws: number of random matrices (10^4 in iVAE's and TCL's code).
        percentile: percentile in ``[0, 100]``.

    Returns:
        The threshold, a float ``>= 1``.
    """
    if dim < 1 or n_draws < 1:
        raise ValueError(f"dim and n_draws must be positive, got {dim} and {n_draws}")
    rng = np.random.default_rng([_THRESHOLD_SEED, dim])
    conds = []
    for start in range(0, n_draws, _THRESHOLD_CHUNK):
        count = min(_THRESHOLD_CHUNK, n_draws - start)
        conds.append(np.linalg.cond(_uniform_normalised(rng, (count, dim, dim))))
    return float(np.percentile(np.concatenate(conds), percentile))


def random_matrix(
    seed: int | np.random.Generator,
    dim: int,
    *,
    family: Literal["uniform", "orthogonal"] = "uniform",
    cond_threshold: float | None = None,
    n_threshold_draws: int = 10_000,
    max_tries: int = 100_000,
) -> np.ndarray:
    """Draws one well-conditioned square matrix.

    Args:
        seed: integer seed or numpy Generator.
        dim: size ``D``.
        family: ``"uniform"`` (U(-1, 1), unit-norm columns, redrawn until
            ``cond <= cond_threshold``) or ``"orthogonal"`` (Haar, via QR with sign fix).
        cond_threshold: condition-number bound for the uniform family; ``None`` uses
            :func:`condition_threshold` ``(dim, n_threshold_draws)``.
        n_threshold_draws: draws used to estimate the default threshold.
        max_tries: cap on redraws.

    Returns:
        A ``(D, D)`` float64 matrix.
    """
    rng = np.random.default_rng(seed)
    if family == "orthogonal":
        z = rng.standard_normal((dim, dim))
        q, r = np.linalg.qr(z)
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)
    if family != "uniform":
        raise ValueError(f"unknown matrix family {family!r}; expected one of {FAMILIES}")
    if cond_threshold is None:
        cond_threshold = condition_threshold(dim, n_threshold_draws)
    for _ in range(max_tries):
        a = _uniform_normalised(rng, (dim, dim))
        if np.linalg.cond(a) <= cond_threshold:
            return a
    raise RuntimeError(
        f"no {dim}x{dim} matrix with condition number <= {cond_threshold} in {max_tries} draws"
    )


@dataclass(frozen=True, eq=False)
class Mixing:
    """An invertible MLP ``x = f(s)`` made of square matrices and a monotone activation.

    The forward pass is: if ``activation_before_first``, apply ``sigma``; then for each matrix
    ``A_i``: ``h = h @ A_i`` followed by ``sigma`` unless it is the last matrix and
    ``activation_after_last`` is false. See the module docstring for the ``n_layers``
    conventions that produce these flags.

    Attributes:
        matrices: tuple of ``(D, D)`` float64 matrices ``A_1 .. A_M``.
        activation: ``"leaky_relu"`` or ``"xtanh"``.
        slope: leaky-ReLU negative slope, or the linear coefficient of xtanh (> 0).
        activation_before_first: apply ``sigma`` to the input first (ICE-BeeM convention).
        activation_after_last: apply ``sigma`` after the last matrix (TCL convention).
    """

    matrices: tuple[np.ndarray, ...]
    activation: str = "leaky_relu"
    slope: float = 0.2
    activation_before_first: bool = False
    activation_after_last: bool = False
    _inverses: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mats = tuple(np.array(a, dtype=np.float64) for a in self.matrices)
        if not mats:
            raise ValueError("a Mixing needs at least one matrix")
        dim = mats[0].shape[0]
        for i, a in enumerate(mats):
            if a.shape != (dim, dim):
                raise ValueError(f"matrix {i} has shape {a.shape}, expected ({dim}, {dim})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; expected one of {ACTIVATIONS}"
            )
        if not self.slope > 0:
            raise ValueError(f"slope must be positive for invertibility, got {self.slope}")
        object.__setattr__(self, "matrices", mats)
        object.__setattr__(self, "_inverses", tuple(np.linalg.inv(a) for a in mats))

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return self.matrices[0].shape[0]

    @property
    def n_matrices(self) -> int:
        """Number of matrices ``M``."""
        return len(self.matrices)

    @property
    def condition_numbers(self) -> np.ndarray:
        """Condition numbers of the matrices, shape ``(M,)``."""
        return np.array([np.linalg.cond(a) for a in self.matrices])

    def _check_input(self, z: np.ndarray, name: str) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}), got {z.shape}")
        return z

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """Mixes sources ``s (N, D)`` into observations ``x (N, D)``."""
        h = self._check_input(s, "s")
        if self.activation_before_first:
            h = _activate(self.activation, h, self.slope)
        last = self.n_matrices - 1
        for i, a in enumerate(self.matrices):
            h = h @ a
            if i < last or self.activation_after_last:
                h = _activate(self.activation, h, self.slope)
        return h

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Exact inverse: recovers ``s (N, D)`` from ``x (N, D)``."""
        h = self._check_input(x, "x")
        last = self.n_matrices - 1
        for i in range(last, -1, -1):
            if i < last or self.activation_after_last:
                h = _deactivate(self.activation, h, self.slope)
            h = h @ self._inverses[i]
        if self.activation_before_first:
            h = _deactivate(self.activation, h, self.slope)
        return h

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (matrices as nested lists; floats round-trip exactly)."""
        return {
            "matrices": [a.tolist() for a in self.matrices],
            "activation": self.activation,
            "slope": float(self.slope),
            "activation_before_first": bool(self.activation_before_first),
            "activation_after_last": bool(self.activation_after_last),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mixing:
        """Rebuilds a mixing written by :meth:`to_dict`."""
        try:
            return cls(
                matrices=tuple(np.asarray(a, dtype=np.float64) for a in d["matrices"]),
                activation=d["activation"],
                slope=float(d["slope"]),
                activation_before_first=bool(d.get("activation_before_first", False)),
                activation_after_last=bool(d.get("activation_after_last", False)),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"malformed mixing description: {err!r}") from err


def random_mixing(
    seed: int | np.random.Generator,
    dim: int,
    n_layers: int,
    *,
    activation: Literal["leaky_relu", "xtanh"] = "leaky_relu",
    slope: float | None = None,
    family: Literal["uniform", "orthogonal"] = "uniform",
    convention: Literal["ivae", "tcl", "icebeem"] = "ivae",
    cond_threshold: float | None = None,
    n_threshold_draws: int = 10_000,
) -> Mixing:
    """Draws a random invertible MLP mixing.

    Args:
        seed: integer seed or numpy Generator.
        dim: data dimension ``D``.
        n_layers: number of layers ``L``, counted according to ``convention``.
        activation: ``"leaky_relu"`` or ``"xtanh"``.
        slope: activation slope; ``None`` means 0.2 for leaky ReLU and 0.1 for xtanh.
        family: matrix family, ``"uniform"`` or ``"orthogonal"``.
        convention: ``"ivae"``, ``"tcl"`` or ``"icebeem"`` (see the module docstring).
        cond_threshold: condition bound for uniform matrices (``None``: cached 25th percentile).
        n_threshold_draws: draws used to estimate the default threshold.

    Returns:
        The :class:`Mixing`.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int | np.integer) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if convention == "ivae":
        n_matrices, before, after = n_layers, False, False
    elif convention == "tcl":
        n_matrices, before, after = n_layers, False, True
    elif convention == "icebeem":
        if n_layers < 2:
            raise ValueError(
                "convention 'icebeem' needs n_layers >= 2 (it uses n_layers - 1 matrices)"
            )
        n_matrices, before, after = n_layers - 1, True, False
    else:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    rng = np.random.default_rng(seed)
    matrices: Sequence[np.ndarray] = [
        random_matrix(
            rng,
            dim,
            family=family,
            cond_threshold=cond_threshold,
            n_threshold_draws=n_threshold_draws,
        )
        for _ in range(n_matrices)
    ]
    return Mixing(
        matrices=tuple(matrices),
        activation=activation,
        slope=DEFAULT_SLOPES[activation] if slope is None else float(slope),
        activation_before_first=before,
        activation_after_last=after,
    )
