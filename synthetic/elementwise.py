"""Elementwise, strictly increasing bijections of R: the mixing nonlinearities ``sigma``.

The registry :data:`ACTIVATION_REGISTRY` maps a name to its :class:`Activation`; ``a`` is the
``slope`` parameter, its default in :data:`DEFAULT_SLOPES`. Each is a strictly increasing
bijection of R with an exact inverse (closed form, or Newton safeguarded by bisection to
~1e-13) and a closed-form log-derivative ``log sigma'(x)``; every map acts elementwise on an
array of any shape and returns that shape:

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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_REGISTRY",
    "DEFAULT_SLOPES",
    "Activation",
    "ScalarMap",
    "get_activation",
    "leaky_elu",
    "leaky_elu_inverse",
    "leaky_relu",
    "leaky_relu_inverse",
    "scaled_asinh",
    "scaled_asinh_inverse",
    "smooth_leaky_relu",
    "smooth_leaky_relu_inverse",
    "tanhshrink",
    "tanhshrink_inverse",
    "xtanh",
    "xtanh_inverse",
]

ScalarMap = Callable[[np.ndarray, float], np.ndarray]

_EPS = np.finfo(np.float64).eps


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


def get_activation(name: str) -> Activation:
    """The registry entry ``name``; raises ``ValueError`` naming the known activations."""
    if name not in ACTIVATION_REGISTRY:
        raise ValueError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")
    return ACTIVATION_REGISTRY[name]
