"""Random invertible MLP mixings with exact inverses and exact log-determinants.

Row-vector convention, as in ``nica``: a layer computes ``h @ A``. A :class:`Mixing` is a list of
square matrices ``A_1 .. A_M`` (drawn by :mod:`synthetic.matrices`) and an elementwise, strictly
increasing activation ``sigma`` (a key of :data:`synthetic.elementwise.ACTIVATION_REGISTRY`).

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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from synthetic.elementwise import DEFAULT_SLOPES, Activation, get_activation
from synthetic.matrices import random_matrix

__all__ = ["CONVENTIONS", "Mixing", "random_mixing"]

CONVENTIONS: tuple[str, ...] = ("ivae", "tcl", "icebeem")


@dataclass(frozen=True, eq=False)
class Mixing:
    """An invertible MLP ``x = f(s)`` made of square matrices and a monotone activation.

    The forward pass is: if ``activation_before_first``, apply ``sigma``; then for each matrix
    ``A_i``: ``h = h @ A_i`` followed by ``sigma`` unless it is the last matrix and
    ``activation_after_last`` is false. See the module docstring for the ``n_layers``
    conventions that produce these flags.

    Attributes:
        matrices: tuple of ``(D, D)`` float64 matrices ``A_1 .. A_M``.
        activation: a key of :data:`synthetic.elementwise.ACTIVATION_REGISTRY` (e.g.
            ``"leaky_relu"``, ``"xtanh"``).
        slope: the activation's parameter (> 0); see :data:`DEFAULT_SLOPES` and
            :mod:`synthetic.elementwise` for its meaning per activation.
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
        activation: a key of :data:`synthetic.elementwise.ACTIVATION_REGISTRY`.
        slope: activation parameter; ``None`` means the activation's :data:`DEFAULT_SLOPES`.
        family: matrix family, ``"uniform"`` or ``"orthogonal"`` (:mod:`synthetic.matrices`).
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
