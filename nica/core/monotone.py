"""Strictly increasing maps: the safeguarded Newton inverse and the learnable activations.

:func:`monotone_inverse` solves ``sigma(x) = z`` for any strictly increasing ``sigma`` with a
bracketed Newton iteration of fixed length, so it runs under ``jit`` and ``vmap`` and converges
to machine precision; every activation without a closed-form inverse uses it.

The learnable families :class:`MonotoneMixture` and :class:`MonotoneSpline` are ``nnx.Module``s
with one set of parameters per unit (ordinary ``nnx.Param``s, so they get ordinary gradients
under every gradient mode); a :class:`nica.core.network.DemixingNetwork` holds one per hidden
layer. They are registered, with the static activations, in
``nica.core.activations.ACTIVATIONS``.

Why the mixture family (and not monotone rational-quadratic splines): its derivative is a
positive combination of a smooth partition of unity on the intervals of a fixed knot grid,

    sigma'(y) = sum_{j=0..K} w_j phi_j(y),   w_j > 0,   phi_j >= 0,   sum_j phi_j = 1,

so it is strictly increasing for *any* parameters (``min w <= sigma' <= max w``), it is
``C^infinity``, its value and log-derivative are closed forms (softplus and a log-sum-exp of
log-sigmoids, stable for every parameter value), and it is linear in ``w``, which makes the
parameters well conditioned. Any positive slope profile is reachable: one slope left of a knot
and another right of it (the inverse of a leaky ReLU, either orientation), large slopes in both
tails and ~1 in the middle (the inverse of xtanh, or sinh-like shapes), small slopes in the tails
(asinh-like, compressive), or asymmetric smooth ones. A spline would need a bin search, clamped
derivatives and its own tail handling to reach the same; here the inverse reuses
:func:`monotone_inverse`. Cost: ``O(K)`` per element, ``O(B D K)`` per layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["MonotoneMixture", "MonotoneSpline", "monotone_inverse"]


def monotone_inverse(fn, derivative, z, *, slope_min: float, centre: float, iterations: int = 60):
    """Solves ``fn(x) = z`` elementwise for a strictly increasing ``fn``.

    Uses Newton steps safeguarded by bisection inside a bracket that provably holds the root:
    with ``fn' >= slope_min`` and ``fn(0) = centre``, the root lies within
    ``|z - centre| / slope_min`` of zero. A Newton step that leaves the bracket is replaced by
    bisection, so the iteration always converges; a fixed number of iterations keeps it
    ``jit``/``vmap`` friendly.

    Args:
      fn: the increasing scalar function, applied elementwise.
      derivative: its derivative, elementwise, strictly positive.
      z: target values, any shape.
      slope_min: a lower bound on ``derivative`` (> 0); a float or an array that broadcasts
        against ``z`` (e.g. one bound per unit, shape ``(dim,)``).
      centre: ``fn(0)``, a float or an array that broadcasts against ``z``.
      iterations: number of safeguarded Newton iterations.

    Returns:
      ``x`` with ``fn(x) == z`` to machine precision, same shape and dtype as ``z``.
    """
    radius = jnp.abs(z - centre) / slope_min + 1.0
    lo, hi = -radius, radius
    x = jnp.zeros_like(z)

    def body(_, carry):
        x, lo, hi = carry
        residual = fn(x) - z
        # Shrink the bracket with the sign of the residual (fn is increasing).
        lo = jnp.where(residual < 0, x, lo)
        hi = jnp.where(residual > 0, x, hi)
        newton = x - residual / derivative(x)
        inside = (newton > lo) & (newton < hi)
        x = jnp.where(inside, newton, 0.5 * (lo + hi))
        x = jnp.where(residual == 0, carry[0], x)
        return x, lo, hi

    x, _, _ = jax.lax.fori_loop(0, iterations, body, (x, lo, hi))
    return x


@jax.custom_jvp
def _logistic_parts(u: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(softplus(u), sigmoid(u), sigmoid(-u))`` from one ``exp``, one ``log1p`` and one
    division, accurate for all ``u`` (no cancellation)."""
    e = jnp.exp(-jnp.abs(u))
    inv = 1.0 / (1.0 + e)
    positive = u >= 0
    return (
        jnp.maximum(u, 0.0) + jnp.log1p(e),
        jnp.where(positive, inv, e * inv),
        jnp.where(positive, e * inv, inv),
    )


@_logistic_parts.defjvp
def _logistic_parts_jvp(primals, tangents):
    # The derivatives of max and abs at u = 0 are ambiguous; those of softplus and sigmoid not.
    (u,), (du,) = primals, tangents
    softplus, pos, neg = _logistic_parts(u)
    slope = pos * neg * du
    return (softplus, pos, neg), (pos * du, slope, -slope)


def _spline_grid(knots: int, bound: float, warp: float) -> np.ndarray:
    """``knots`` points on ``[-bound, bound]``, symmetric about 0: evenly spaced for
    ``warp = 0``, else ``bound sinh(warp u) / sinh(warp)`` at evenly spaced ``u`` in
    ``[-1, 1]`` (denser near 0, where the spacing is about ``warp / sinh(warp)`` times the
    even one)."""
    u = np.linspace(-1.0, 1.0, knots)
    if not warp:
        return np.linspace(-bound, bound, knots)
    return bound * np.sinh(warp * u) / np.sinh(warp)


def _knot_grid(knots: int, bound: float) -> np.ndarray:
    """``knots`` equally spaced points on ``[-bound, bound]`` (the single point 0 for one knot)."""
    return np.zeros(1) if knots == 1 else np.linspace(-bound, bound, knots)


class _PerUnitSlopes(nnx.Module):
    """Shared part of the learnable activations: per-unit positive slopes ``exp(log_slopes)``
    (shape ``(dim, n)``) bound ``sigma'`` below by their minimum; subclasses define ``value``
    and ``derivative``."""

    log_slopes: nnx.Param

    def log_derivative(self, y: jax.Array) -> jax.Array:
        """``log sigma'(y)``, shape ``(..., dim)`` -> ``(..., dim)``."""
        return jnp.log(self.derivative(y))

    def min_slope(self) -> jax.Array:
        """The per-unit lower bound ``min`` of the slopes of ``sigma'``, shape ``(dim,)``."""
        return jnp.exp(self.log_slopes[...].min(axis=-1))

    def inverse(self, z: jax.Array) -> jax.Array:
        """``sigma^{-1}(z)`` by safeguarded Newton, shape ``(..., dim)`` -> ``(..., dim)``."""
        return monotone_inverse(
            self.value,
            self.derivative,
            z,
            slope_min=self.min_slope().astype(z.dtype),
            centre=0.0,
            iterations=80,
        )


class MonotoneMixture(_PerUnitSlopes):
    """Learnable, strictly increasing activation with one slope profile per unit.

    With fixed knots ``t_1 < ... < t_K`` (``knots`` points evenly on ``[-bound, bound]``),
    sharpness ``s`` and, per unit, slopes ``w_j = exp(log_slopes[j]) > 0``, ``j = 0..K``:

        sigma'(y) = w_0 phi_0(y) + sum_{j=1}^{K-1} w_j phi_j(y) + w_K phi_K(y),
        phi_0 = sigmoid(-s(y - t_1)),   phi_K = sigmoid(s(y - t_K)),
        phi_j = sigmoid(s(y - t_j)) - sigmoid(s(y - t_{j+1}))
              = sigmoid(s(y - t_j)) sigmoid(-s(y - t_{j+1})) (1 - exp(-s(t_{j+1} - t_j))),

    a smooth partition of unity, so ``w_j`` is the slope on the ``j``-th interval
    (``w_0``: left tail, ``w_K``: right tail) and ``min_j w_j <= sigma' <= max_j w_j``.
    Integrating (telescoping the ``phi_j``), with ``sigma(0) = 0``:

        sigma(y) = w_0 y + sum_{k=1}^K (w_k - w_{k-1}) r_k(y),
        r_k(y) = (softplus(s(y - t_k)) - softplus(-s t_k)) / s.

    ``sigma'`` is evaluated as that sum of positive terms, with the product form of ``phi_j`` and
    one shared ``exp`` per knot for ``softplus`` and both sigmoids (no cancellation): accurate
    for any parameters and a few transcendental operations per knot. The inverse is
    :func:`monotone_inverse` with the per-unit slope bound ``min_j w_j`` and centre 0. Inputs
    have shape ``(..., dim)``; every unit (last axis) has its own ``K + 1`` slopes.

    Args:
      dim: number of units ``D``.
      knots: ``K >= 1``, the number of knots; ``D (K + 1)`` parameters in all.
      bound: knots span ``[-bound, bound]`` (outside, ``sigma`` is linear up to
        ``exp(-s distance)``). Pre-activations of standardised data are O(1).
      sharpness: ``s > 0``; ``s`` times the knot spacing sets how sharp a slope change can be
        (a kink is smoothed over ~``1/s``).
      init_tail_slope: initial slope in both tails; the initial slopes interpolate
        geometrically from 1 at the centre to this at ``|y| >= bound``. 1 (default) starts at the
        identity; > 1 starts expansive (inverse of a compressive mixing, e.g. xtanh), < 1
        compressive.
      param_dtype: dtype of ``log_slopes``.

    Attributes:
      log_slopes: ``nnx.Param`` of shape ``(dim, knots + 1)``, ``log w``.
    """

    def __init__(
        self,
        dim: int,
        *,
        knots: int = 9,
        bound: float = 4.0,
        sharpness: float = 6.0,
        init_tail_slope: float = 1.0,
        param_dtype=jnp.float32,
    ):
        if dim < 1 or knots < 1:
            raise ValueError(f"MonotoneMixture dim and knots must be >= 1, got {dim}, {knots}")
        if not (bound > 0 and sharpness > 0 and init_tail_slope > 0):
            raise ValueError(
                "MonotoneMixture bound, sharpness and init_tail_slope must be > 0, got "
                f"{bound}, {sharpness}, {init_tail_slope}"
            )
        grid = _knot_grid(knots, bound)
        # Static metadata (plain floats): identical for every initialisation key.
        self.knots = tuple(float(t) for t in grid)
        self.sharpness = float(sharpness)
        # 1 - exp(-s (t_{j+1} - t_j)) for the interior intervals.
        self._width = tuple(float(v) for v in -np.expm1(-sharpness * np.diff(grid)))
        self._offsets = tuple(float(v) for v in np.logaddexp(0.0, -sharpness * grid))
        middles = np.concatenate([[-bound], 0.5 * (grid[1:] + grid[:-1]), [bound]])
        log_init = np.log(init_tail_slope) * np.minimum(np.abs(middles) / bound, 1.0)
        self.log_slopes = nnx.Param(jnp.asarray(np.tile(log_init, (dim, 1)), param_dtype))

    def _pieces(self, y):
        """``(slopes w (dim, K+1), softplus(u), sigmoid(u), sigmoid(-u))``, ``u = s (y - t)``
        of shape ``(..., dim, K)``."""
        log_w = self.log_slopes[...]
        dtype = jnp.result_type(y, log_w)
        u = self.sharpness * (y[..., None].astype(dtype) - jnp.asarray(self.knots, dtype))
        return jnp.exp(log_w.astype(dtype)), *_logistic_parts(u)

    def value(self, y: jax.Array) -> jax.Array:
        """``sigma(y)``, shape ``(..., dim)`` -> ``(..., dim)``."""
        w, softplus, _, _ = self._pieces(y)
        offsets = jnp.asarray(self._offsets, w.dtype)
        ramps = ((w[:, 1:] - w[:, :-1]) * (softplus - offsets)).sum(axis=-1) / self.sharpness
        return w[:, 0] * y + ramps

    def derivative(self, y: jax.Array) -> jax.Array:
        """``sigma'(y) = sum_j w_j phi_j(y)`` (positive terms), ``(..., dim) -> (..., dim)``."""
        w, _, pos, neg = self._pieces(y)
        # phi_j = sigmoid(u_j) sigmoid(-u_{j+1}) (1 - exp(-s (t_{j+1} - t_j))): no cancellation.
        interior = pos[..., :-1] * neg[..., 1:] * jnp.asarray(self._width, w.dtype)
        phi = jnp.concatenate([neg[..., :1], interior, pos[..., -1:]], axis=-1)
        return (w * phi).sum(axis=-1)


class MonotoneSpline(_PerUnitSlopes):
    """Learnable, strictly increasing activation: a positive linear spline as its derivative.

    With ``K`` knots ``t_k = -bound + k h`` (``h = 2 bound / (K - 1)``; ``warp`` spaces them
    unevenly, with ``h_k = t_{k+1} - t_k`` in place of ``h``) and, per unit, slopes
    ``v_k = exp(log_slopes[k]) > 0`` at the knots:

        sigma'(y) = sum_k v_k hat_k(m),   m = clip((y - t_0) / h, 0, K - 1),
        hat_k(m) = max(0, 1 - |m - k|),

    the linear interpolation of the slopes between knots, constant (``v_0``, ``v_{K-1}``) in the
    tails. The hats are a partition of unity, so ``sigma'`` is a positive combination with
    ``min_k v_k <= sigma' <= max_k v_k``: monotone for any parameters and accurate (no
    cancellation). Its integral with ``sigma(0) = 0`` is a C^1 quadratic spline with linear
    tails. Only the interval holding ``y`` is evaluated (two slopes and a cumulative sum looked
    up per element), so the cost per element does not grow with ``K`` and there is no
    transcendental function but the final ``log``. It contains
    leaky-ReLU shapes of any slope ratio (smoothed over one knot spacing), odd expansive and
    compressive shapes. The inverse is :func:`monotone_inverse` (per-unit slope bound
    ``min_k v_k``, centre 0). Inputs have shape ``(..., dim)``; each unit (last axis) has its
    own ``K`` slopes.

    Args:
      dim: number of units ``D``.
      knots: ``K``, odd and >= 3 (the centre knot is 0), knots per unit; ``D K`` parameters.
      bound: knots span ``[-bound, bound]``. Pre-activations of standardised data are O(1).
      warp: ``>= 0``; 0 (default): evenly spaced knots. Else the knots are
        ``t_k = bound sinh(warp u_k) / sinh(warp)`` at evenly spaced ``u_k`` in ``[-1, 1]``:
        denser near 0 (a spacing about ``warp / sinh(warp)`` times the even one), so a kink at
        0 is smoothed over a shorter interval; the interval of ``y`` is found by inverting the
        warp (``arcsinh``), still one lookup per element.
      init_tail_slope: initial slope at and beyond ``|y| = bound``; the initial slopes
        interpolate geometrically from 1 at the centre. 1 (default) starts at the identity.
      param_dtype: dtype of ``log_slopes``.

    Attributes:
      log_slopes: ``nnx.Param`` of shape ``(dim, knots)``, ``log v``.
    """

    def __init__(
        self,
        dim: int,
        *,
        knots: int = 17,
        bound: float = 4.0,
        warp: float = 0.0,
        init_tail_slope: float = 1.0,
        param_dtype=jnp.float32,
    ):
        if dim < 1 or knots < 3 or knots % 2 == 0:
            raise ValueError(
                f"MonotoneSpline needs dim >= 1 and an odd number of knots >= 3 (0 is the "
                f"centre knot), got {dim}, {knots}"
            )
        if not (bound > 0 and init_tail_slope > 0 and warp >= 0):
            raise ValueError(
                f"MonotoneSpline bound and init_tail_slope must be > 0 and warp >= 0, got "
                f"{bound}, {init_tail_slope}, {warp}"
            )
        grid = _spline_grid(knots, bound, warp)
        # Static metadata (plain floats): identical for every initialisation key.
        self.grid = tuple(float(t) for t in grid)
        self.widths = tuple(float(h) for h in np.diff(grid))
        self.start = float(-bound)
        self.bound = float(bound)
        self.warp = float(warp)
        self.spacing = float(grid[1] - grid[0])
        self.last = float(knots - 1)
        self.centre = (knots - 1) // 2
        log_init = np.log(init_tail_slope) * np.minimum(np.abs(grid) / bound, 1.0)
        self.log_slopes = nnx.Param(jnp.asarray(np.tile(log_init, (dim, 1)), param_dtype))

    def _knot_values(self, v):
        """``sigma(t_k)``, shape ``(K, dim)``, from the centre knot ``t_c = 0`` outwards: each
        is a signed sum of the trapezoids between 0 and ``t_k`` only, so a slope's gradient
        never holds cancelling terms from knots a sample does not pass."""
        if self.warp:
            widths = jnp.asarray(self.widths, v.dtype)[:, None]
            trapezoids = 0.5 * widths * (v[1:] + v[:-1])  # (K - 1, dim)
        else:
            trapezoids = 0.5 * self.spacing * (v[1:] + v[:-1])
        c = self.centre
        left = -jnp.cumsum(trapezoids[:c][::-1], axis=0)[::-1]
        right = jnp.cumsum(trapezoids[c:], axis=0)
        return jnp.concatenate([left, jnp.zeros_like(v[:1]), right])

    def _position(self, y):
        """``(m, a, i)``: the knot coordinate of ``y`` clipped to ``[0, K - 1]``, unclipped
        (tails), and the index ``i`` of the knot left of ``y`` (at most ``K - 2``)."""
        if self.warp:
            # t_k = bound sinh(warp (k - c) / c) / sinh(warp): invert the warp to find k.
            c = float(self.centre)
            a = c + c * jnp.arcsinh(y * (np.sinh(self.warp) / self.bound)) / self.warp
        else:
            a = (y - self.start) / self.spacing
        m = jnp.clip(a, 0.0, self.last)
        i = jnp.minimum(jnp.floor(m), self.last - 1).astype(jnp.int32)
        return m, a, i

    def _locate(self, y):
        """``(v_i, v_{i+1}, sigma(t_i), frac, tails, v)``: slopes and value at the knot left of
        ``y`` and ``frac``, the position of ``y`` between knots ``i`` and ``i + 1`` as a share
        of their spacing (in ``[0, 1]`` inside the grid), each of shape ``(..., dim)``;
        ``tails``, the signed distance of ``y`` beyond the outer knots; all slopes ``v`` of
        shape ``(K, dim)``."""
        log_v = self.log_slopes[...]
        dtype = jnp.result_type(y, log_v)
        v = jnp.exp(log_v.astype(dtype)).T
        y = y.astype(dtype)
        m, a, i = self._position(y)
        units = jnp.arange(v.shape[1])
        # Looked up before the tails are formed: the order in which v's uses appear is the
        # order in which their gradients are summed (this one keeps float32 gradients
        # bit-for-bit those of the evenly spaced spline before warp existed).
        v_i, v_next, s_i = v[i, units], v[i + 1, units], self._knot_values(v)[i, units]
        if self.warp:
            grid = jnp.asarray(self.grid, dtype)
            widths = jnp.asarray(self.widths, dtype)
            spacing = widths[i]
            frac = (jnp.clip(y, grid[0], grid[-1]) - grid[i]) / spacing
            tails = v[0] * jnp.minimum(y - grid[0], 0.0) + v[-1] * jnp.maximum(y - grid[-1], 0.0)
        else:
            spacing = self.spacing
            frac = m - i
            tails = self.spacing * (
                v[0] * jnp.minimum(a, 0.0) + v[-1] * jnp.maximum(a - self.last, 0.0)
            )
        return v_i, v_next, s_i, frac, tails, spacing

    def _value_and_derivative(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sigma(y), sigma'(y))`` from one lookup, each ``(..., dim)``."""
        v_i, v_next, s_i, frac, tails, spacing = self._locate(y)
        inner = s_i + spacing * frac * (v_i + 0.5 * (v_next - v_i) * frac)
        return inner + tails, (1.0 - frac) * v_i + frac * v_next

    def value(self, y: jax.Array) -> jax.Array:
        """``sigma(y)``, shape ``(..., dim)`` -> ``(..., dim)``."""
        return self._value_and_derivative(y)[0]

    def derivative(self, y: jax.Array) -> jax.Array:
        """``sigma'(y) = (1 - frac) v_i + frac v_{i+1}``, ``(..., dim) -> (..., dim)``."""
        return self._value_and_derivative(y)[1]

    def value_and_log_derivative(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(sigma(y), log sigma'(y))`` from one lookup (what the network's forward pass
        needs; a third smaller program to compile than the two calls)."""
        value, derivative = self._value_and_derivative(y)
        return value, jnp.log(derivative)
