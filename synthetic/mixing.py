"""Random invertible MLP mixings with exact inverses and exact log-determinants.

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

With ``shared_matrix=True`` one matrix is drawn and used in every layer (the convention of
iVAE's own data code, ``repeat_linearity=True`` in its ``generate_data``): the layers differ only
in where the activation sits. By default every layer draws its own matrix.

Matrix families: ``"uniform"`` draws entries from U(-1, 1), normalises each column to unit L2
norm and redraws until the condition number is at most a threshold (by default the 25th
percentile of the condition numbers of 10^4 such draws, computed once per dimension with a
fixed internal seed and cached); ``"orthogonal"`` draws Haar-distributed orthogonal matrices.

Activations (the registry :data:`ACTIVATION_REGISTRY`; ``a`` is the ``slope`` parameter, its
default in :data:`DEFAULT_SLOPES`). Each is a strictly increasing bijection of R with an exact
inverse (closed form, or Newton safeguarded by bisection to ~1e-13) and a closed-form
log-derivative ``log sigma'(x)``:

* ``"leaky_relu"``: ``x`` for ``x >= 0``, ``a x`` below (TCL, iVAE, ICE-BeeM); ``a`` = negative
  slope, default 0.2. Piecewise linear; closed-form inverse.
* ``"xtanh"``: ``tanh(x) + a x`` (iVAE's code); ``a`` = tail slope (slope ``1 + a`` at 0),
  default 0.1. Compressive with linear tails, odd. Newton inverse.
* ``"asinh"``: ``a asinh(x / a)``; ``a`` = knee, the scale below which it is the identity
  (slope 1 at 0, logarithmic growth beyond ``|x| ~ a``), default 1. Compressive, odd, no linear
  tail. Closed-form inverse ``a sinh(y / a)``.
* ``"smooth_leaky_relu"``: ``a x + (1 - a) softplus(x)`` (the mixing of IMA / SNICA / HM-NLICA
  code, and nica's own demixer unit); ``a`` = negative tail slope (slope 1 in the positive tail),
  default 0.2. Smooth, asymmetric. Newton inverse.
* ``"leaky_elu"``: ``x`` for ``x > 0``, ``(1 - a)(exp(x) - 1) + a x`` below; ``a`` = negative
  tail slope (slope 1 on both sides of 0, so it is C^1), default 0.2. Asymmetric: identity above
  0, saturating towards a shallow linear tail below. Newton inverse.
* ``"tanhshrink"``: ``x - (1 - a) tanh(x)`` (a leaky version of PyTorch's ``Tanhshrink``);
  ``a`` = slope at 0 (slope 1 in both tails), default 0.2. Expansive in shape (``sigma'`` grows
  with ``|x|`` from ``a`` to 1, the mirror image of xtanh) yet ``|sigma(x)| <= |x|``, so it never
  overflows at any depth. Odd. Newton inverse.

Not included: TCL's sigmoid (maps R onto (0, 1), not a bijection of R) and polynomial or
``sinh`` expansions (``x + a x^3 / 3`` composed over layers grows like ``|s|^(3^k)`` and lets a
few samples dominate every column).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import expit

ScalarMap = Callable[[np.ndarray, float], np.ndarray]

_EPS = np.finfo(np.float64).eps
_THRESHOLD_SEED = 20_240_601
_THRESHOLD_CHUNK = 2_000


def _newton_inverse(
    value: ScalarMap,
    derivative: ScalarMap,
    y: np.ndarray,
    slope: float,
    lo: np.ndarray,
    hi: np.ndarray,
    x0: np.ndarray,
    *,
    tol: float = 1e-13,
    max_iter: int = 200,
) -> np.ndarray:
    """Solves ``value(x, slope) == y`` elementwise for a strictly increasing ``value``.

    Newton's method safeguarded by bisection: the root is kept in ``[lo, hi]`` and any Newton
    step that leaves the bracket is replaced by its midpoint, so the iteration always converges.
    An element has converged when ``|residual| <= tol`` or the Newton step is below the float64
    resolution of ``x``.

    Args:
        value: the increasing map ``sigma(x, slope)``.
        derivative: ``sigma'(x, slope) > 0``.
        y: targets, any shape.
        slope: the activation parameter.
        lo, hi: a bracket of the root, ``y``'s shape.
        x0: the starting point inside the bracket.
        tol: absolute tolerance on the residual.
        max_iter: iteration cap.

    Returns:
        ``x`` of ``y``'s shape.
    """
    x = np.clip(x0, lo, hi)
    for _ in range(max_iter):
        r = value(x, slope) - y
        step = r / derivative(x, slope)
        done = (np.abs(r) <= tol) | (np.abs(step) <= 4.0 * _EPS * np.maximum(1.0, np.abs(x)))
        if np.all(done):
            break
        lo = np.where(r < 0, x, lo)
        hi = np.where(r > 0, x, hi)
        newton = x - step
        inside = (newton > lo) & (newton < hi)
        x = np.where(done, x, np.where(inside, newton, 0.5 * (lo + hi)))
    return x


def _sech2(x: np.ndarray) -> np.ndarray:
    """``1 / cosh(x)^2`` without overflow."""
    e = np.exp(-2.0 * np.abs(x))
    return 4.0 * e / (1.0 + e) ** 2


# --- leaky ReLU ----------------------------------------------------------------------------


def leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    """Leaky ReLU ``max(x, 0) + slope * min(x, 0)``, elementwise."""
    return np.where(x >= 0, x, slope * x)


def leaky_relu_inverse(y: np.ndarray, slope: float) -> np.ndarray:
    """Closed-form inverse of :func:`leaky_relu` (``slope > 0``)."""
    return np.where(y >= 0, y, y / slope)


def _leaky_relu_log_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return np.where(x >= 0, 0.0, np.log(slope))


# --- xtanh ---------------------------------------------------------------------------------


def xtanh(x: np.ndarray, slope: float) -> np.ndarray:
    """``tanh(x) + slope * x``, elementwise; strictly increasing for ``slope > 0``."""
    return np.tanh(x) + slope * x


def _xtanh_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return _sech2(x) + slope


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
        tol: absolute tolerance on the residual.
        max_iter: iteration cap.

    Returns:
        ``x`` with ``xtanh(x, slope) == y`` to about ``tol``, same shape as ``y``.
    """
    y = np.asarray(y, dtype=np.float64)
    lo, hi = (y - 1.0) / slope, (y + 1.0) / slope
    x0 = y / (1.0 + slope)  # exact near 0, where tanh(x) ~ x
    return _newton_inverse(
        xtanh, _xtanh_derivative, y, slope, lo, hi, x0, tol=tol, max_iter=max_iter
    )


def _xtanh_log_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return np.log(_xtanh_derivative(x, slope))


# --- asinh ---------------------------------------------------------------------------------


def scaled_asinh(x: np.ndarray, slope: float) -> np.ndarray:
    """``slope * asinh(x / slope)``: identity near 0, logarithmic beyond ``|x| ~ slope``."""
    return slope * np.arcsinh(x / slope)


def scaled_asinh_inverse(y: np.ndarray, slope: float) -> np.ndarray:
    """Closed-form inverse of :func:`scaled_asinh`: ``slope * sinh(y / slope)``."""
    return slope * np.sinh(y / slope)


def _asinh_log_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return -np.log(np.hypot(1.0, x / slope))


# --- smooth leaky ReLU ---------------------------------------------------------------------


def smooth_leaky_relu(x: np.ndarray, slope: float) -> np.ndarray:
    """``slope * x + (1 - slope) * softplus(x)``, elementwise."""
    return slope * x + (1.0 - slope) * np.logaddexp(0.0, x)


def _smooth_leaky_relu_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return slope + (1.0 - slope) * expit(x)


def smooth_leaky_relu_inverse(y: np.ndarray, slope: float) -> np.ndarray:
    """Inverts :func:`smooth_leaky_relu` by safeguarded Newton (to about 1e-13).

    With ``g`` the leaky ReLU of unit positive slope, ``softplus(x) - max(x, 0)`` lies in
    ``[0, log 2]``, so the root lies between ``g^{-1}(y)`` and ``g^{-1}(y - (1 - slope) log 2)``.
    """
    y = np.asarray(y, dtype=np.float64)
    a = leaky_relu_inverse(y, slope)
    b = leaky_relu_inverse(y - (1.0 - slope) * np.log(2.0), slope)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return _newton_inverse(
        smooth_leaky_relu, _smooth_leaky_relu_derivative, y, slope, lo, hi, 0.5 * (lo + hi)
    )


def _smooth_leaky_relu_log_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return np.log(_smooth_leaky_relu_derivative(x, slope))


# --- leaky ELU -----------------------------------------------------------------------------


def leaky_elu(x: np.ndarray, slope: float) -> np.ndarray:
    """``x`` for ``x > 0``, ``(1 - slope) * (exp(x) - 1) + slope * x`` otherwise."""
    neg = np.minimum(x, 0.0)
    return np.where(x > 0, x, (1.0 - slope) * np.expm1(neg) + slope * neg)


def _leaky_elu_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return np.where(x > 0, 1.0, (1.0 - slope) * np.exp(np.minimum(x, 0.0)) + slope)


def leaky_elu_inverse(y: np.ndarray, slope: float) -> np.ndarray:
    """Inverts :func:`leaky_elu`: identity for ``y >= 0``, safeguarded Newton below.

    For ``y < 0`` the root is negative and ``(1 - slope)(exp(x) - 1)`` lies between 0 and
    ``slope - 1``, so it lies between ``y / slope`` and ``(y + 1 - slope) / slope``.
    """
    y = np.asarray(y, dtype=np.float64)
    a, b = y / slope, (y + 1.0 - slope) / slope
    lo = np.where(y >= 0, y, np.minimum(a, b))
    hi = np.where(y >= 0, y, np.minimum(np.maximum(a, b), 0.0))
    return _newton_inverse(leaky_elu, _leaky_elu_derivative, y, slope, lo, hi, 0.5 * (lo + hi))


def _leaky_elu_log_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return np.log(_leaky_elu_derivative(x, slope))


# --- tanhshrink ----------------------------------------------------------------------------


def tanhshrink(x: np.ndarray, slope: float) -> np.ndarray:
    """``x - (1 - slope) * tanh(x)``: slope ``slope`` at 0, 1 in the tails."""
    return x - (1.0 - slope) * np.tanh(x)


def _tanhshrink_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return slope + (1.0 - slope) * np.tanh(x) ** 2


def tanhshrink_inverse(y: np.ndarray, slope: float) -> np.ndarray:
    """Inverts :func:`tanhshrink` by safeguarded Newton; the root is within ``|1 - slope|`` of
    ``y`` because ``|tanh| < 1``."""
    y = np.asarray(y, dtype=np.float64)
    width = abs(1.0 - slope)
    lo, hi = y - width, y + width
    return _newton_inverse(tanhshrink, _tanhshrink_derivative, y, slope, lo, hi, y / slope)


def _tanhshrink_log_derivative(x: np.ndarray, slope: float) -> np.ndarray:
    return np.log(_tanhshrink_derivative(x, slope))


# --- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """An elementwise, strictly increasing bijection ``sigma(x; slope)`` of R.

    Attributes:
        name: registry key.
        value: ``sigma(x, slope)``, any shape to the same shape.
        inverse: ``sigma^{-1}(y, slope)``, exact to about 1e-13.
        log_derivative: ``log sigma'(x, slope)`` at the *input* ``x``, same shape.
        default_slope: the ``slope`` used when none is given.
        slope_meaning: what ``slope`` controls, in words.
    """

    name: str
    value: ScalarMap
    inverse: ScalarMap
    log_derivative: ScalarMap
    default_slope: float
    slope_meaning: str


ACTIVATION_REGISTRY: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "leaky_relu",
            leaky_relu,
            leaky_relu_inverse,
            _leaky_relu_log_derivative,
            0.2,
            "negative slope (1 above 0)",
        ),
        Activation(
            "xtanh", xtanh, xtanh_inverse, _xtanh_log_derivative, 0.1, "tail slope (1 + a at 0)"
        ),
        Activation(
            "asinh",
            scaled_asinh,
            scaled_asinh_inverse,
            _asinh_log_derivative,
            1.0,
            "knee: identity for |x| << a, logarithmic beyond",
        ),
        Activation(
            "smooth_leaky_relu",
            smooth_leaky_relu,
            smooth_leaky_relu_inverse,
            _smooth_leaky_relu_log_derivative,
            0.2,
            "negative tail slope (1 in the positive tail)",
        ),
        Activation(
            "leaky_elu",
            leaky_elu,
            leaky_elu_inverse,
            _leaky_elu_log_derivative,
            0.2,
            "negative tail slope (1 above 0 and at 0)",
        ),
        Activation(
            "tanhshrink",
            tanhshrink,
            tanhshrink_inverse,
            _tanhshrink_log_derivative,
            0.2,
            "slope at 0 (1 in both tails)",
        ),
    )
}
ACTIVATIONS: tuple[str, ...] = tuple(ACTIVATION_REGISTRY)
DEFAULT_SLOPES: dict[str, float] = {n: a.default_slope for n, a in ACTIVATION_REGISTRY.items()}
FAMILIES: tuple[str, ...] = ("uniform", "orthogonal")
CONVENTIONS: tuple[str, ...] = ("ivae", "tcl", "icebeem")


def get_activation(name: str) -> Activation:
    """The registry entry ``name``; raises ``ValueError`` naming the known activations."""
    if name not in ACTIVATION_REGISTRY:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return ACTIVATION_REGISTRY[name]


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
        activation: a key of :data:`ACTIVATION_REGISTRY` (e.g. ``"leaky_relu"``, ``"xtanh"``).
        slope: the activation's parameter (> 0); see :data:`DEFAULT_SLOPES` and the module
            docstring for its meaning per activation.
        activation_before_first: apply ``sigma`` to the input first (ICE-BeeM convention).
        activation_after_last: apply ``sigma`` after the last matrix (TCL convention).
    """

    matrices: tuple[np.ndarray, ...]
    activation: str = "leaky_relu"
    slope: float = 0.2
    activation_before_first: bool = False
    activation_after_last: bool = False
    _inverses: tuple[np.ndarray, ...] = field(init=False, repr=False)
    _log_abs_dets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        mats = tuple(np.array(a, dtype=np.float64) for a in self.matrices)
        if not mats:
            raise ValueError("a Mixing needs at least one matrix")
        dim = mats[0].shape[0]
        for i, a in enumerate(mats):
            if a.shape != (dim, dim):
                raise ValueError(f"matrix {i} has shape {a.shape}, expected ({dim}, {dim})")
        get_activation(self.activation)
        if not self.slope > 0:
            raise ValueError(f"slope must be positive for invertibility, got {self.slope}")
        object.__setattr__(self, "matrices", mats)
        object.__setattr__(self, "_inverses", tuple(np.linalg.inv(a) for a in mats))
        log_dets = np.array([np.linalg.slogdet(a)[1] for a in mats])
        object.__setattr__(self, "_log_abs_dets", log_dets)

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

    @property
    def sigma(self) -> Activation:
        """The activation's registry entry."""
        return get_activation(self.activation)

    def _check_input(self, z: np.ndarray, name: str) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (N, {self.dim}), got {z.shape}")
        return z

    def _activated(self, i: int) -> bool:
        """Whether ``sigma`` follows matrix ``i``."""
        return i < self.n_matrices - 1 or self.activation_after_last

    def forward_and_log_det(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mixes ``s (N, D)`` into ``x (N, D)`` and returns ``log|det J_f(s)|``, shape ``(N,)``.

        ``log|det J_f| = sum_i log|det A_i| + sum over activations of sum_j log sigma'(h_j)``,
        with ``h`` each activation's input.
        """
        h = self._check_input(s, "s")
        sigma = self.sigma
        log_det = np.full(h.shape[0], float(self._log_abs_dets.sum()))
        if self.activation_before_first:
            log_det += sigma.log_derivative(h, self.slope).sum(axis=1)
            h = sigma.value(h, self.slope)
        for i, a in enumerate(self.matrices):
            h = h @ a
            if self._activated(i):
                log_det += sigma.log_derivative(h, self.slope).sum(axis=1)
                h = sigma.value(h, self.slope)
        return h, log_det

    def inverse_and_log_det(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact inverse ``s = f^{-1}(x)``, ``(N, D)``, and ``log|det J_{f^{-1}}(x)|``, ``(N,)``.

        The log-determinant is ``-sum_i log|det A_i|`` (matrices' ``slogdet``, computed once)
        minus ``sum log sigma'`` at each activation's recovered input; it equals
        ``-log|det J_f(s)|`` of :meth:`forward_and_log_det`.
        """
        h = self._check_input(x, "x")
        sigma = self.sigma
        log_det = np.full(h.shape[0], -float(self._log_abs_dets.sum()))
        for i in range(self.n_matrices - 1, -1, -1):
            if self._activated(i):
                h = sigma.inverse(h, self.slope)
                log_det -= sigma.log_derivative(h, self.slope).sum(axis=1)
            h = h @ self._inverses[i]
        if self.activation_before_first:
            h = sigma.inverse(h, self.slope)
            log_det -= sigma.log_derivative(h, self.slope).sum(axis=1)
        return h, log_det

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """Mixes sources ``s (N, D)`` into observations ``x (N, D)``."""
        h = self._check_input(s, "s")
        sigma = self.sigma
        if self.activation_before_first:
            h = sigma.value(h, self.slope)
        for i, a in enumerate(self.matrices):
            h = h @ a
            if self._activated(i):
                h = sigma.value(h, self.slope)
        return h

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Exact inverse: recovers ``s (N, D)`` from ``x (N, D)``."""
        h = self._check_input(x, "x")
        sigma = self.sigma
        for i in range(self.n_matrices - 1, -1, -1):
            if self._activated(i):
                h = sigma.inverse(h, self.slope)
            h = h @ self._inverses[i]
        if self.activation_before_first:
            h = sigma.inverse(h, self.slope)
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
    activation: str = "leaky_relu",
    slope: float | None = None,
    family: Literal["uniform", "orthogonal"] = "uniform",
    convention: Literal["ivae", "tcl", "icebeem"] = "ivae",
    cond_threshold: float | None = None,
    n_threshold_draws: int = 10_000,
    shared_matrix: bool = False,
) -> Mixing:
    """Draws a random invertible MLP mixing.

    Args:
        seed: integer seed or numpy Generator.
        dim: data dimension ``D``.
        n_layers: number of layers ``L``, counted according to ``convention``.
        activation: a key of :data:`ACTIVATION_REGISTRY` (see the module docstring).
        slope: activation parameter; ``None`` means the activation's :data:`DEFAULT_SLOPES`.
        family: matrix family, ``"uniform"`` or ``"orthogonal"``.
        convention: ``"ivae"``, ``"tcl"`` or ``"icebeem"`` (see the module docstring).
        cond_threshold: condition bound for uniform matrices (``None``: cached 25th percentile).
        n_threshold_draws: draws used to estimate the default threshold.
        shared_matrix: draw one matrix and use it in every layer (iVAE's code); otherwise
            each layer draws its own.

    Returns:
        The :class:`Mixing`.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int | np.integer) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    get_activation(activation)
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
        for _ in range(1 if shared_matrix else n_matrices)
    ]
    if shared_matrix:
        matrices = [matrices[0]] * n_matrices
    return Mixing(
        matrices=tuple(matrices),
        activation=activation,
        slope=DEFAULT_SLOPES[activation] if slope is None else float(slope),
        activation_before_first=before,
        activation_after_last=after,
    )
