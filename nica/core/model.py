"""The ICA model: a demixing network plus a source prior, and its log-likelihood.

``log p(x | u) = sum_i log p_i(g_i(x) | u) + log|det J_g(x)|`` (Eq. 4; Eq. 3 when the prior
ignores ``u``).
"""

from __future__ import annotations

import jax
from flax import nnx

from nica.core.gradients import GradientMode
from nica.core.network import DemixingNetwork

__all__ = ["ICAModel"]


class ICAModel(nnx.Module):
    """A demixer ``g`` and a factorised prior over its outputs.

    Args:
      demixer: the invertible network ``g``.
      prior: a prior module with ``log_prob(s, u) -> (batch, dim)``.
    """

    def __init__(self, demixer: DemixingNetwork, prior: nnx.Module):
        self.demixer = demixer
        self.prior = prior

    @property
    def conditional(self) -> bool:
        """Whether the prior depends on the auxiliary variable ``u``."""
        return bool(getattr(self.prior, "conditional", False))

    def log_likelihood(self, x: jax.Array, u: jax.Array | None = None) -> jax.Array:
        """Exact ``log p(x | u)`` per sample, shape ``(batch,)`` (slogdet: evaluation only)."""
        s, logdet = self.demixer.forward_and_log_det(x)
        return self.prior.log_prob(s, u).sum(axis=-1) + logdet

    def training_loss(
        self, x: jax.Array, u: jax.Array | None = None, *, gradient: str | GradientMode
    ) -> tuple[jax.Array, jax.Array]:
        """Minibatch loss whose gradient is the chosen mode's, and its weight-free part.

        The gradient of ``relative_coords`` is only a step direction through the optimizer
        wrapper of that mode (``mode.wrap_optimizer``); the trainer always applies it.

        Args:
          x: observations, shape ``(batch, dim)``.
          u: auxiliary variable for a conditional prior, ``(batch,)`` or ``(batch, d)``.
          gradient: a mode of :data:`nica.core.gradients.GRADIENTS` (name or object).

        Returns:
          ``(loss, data_nll)``: ``loss`` is what to differentiate (under the relative modes its
          value omits ``sum_k log|det W_k|``); ``data_nll`` is the mean negative log-likelihood
          without the ``log|det W_k|`` terms (for reporting in every mode).
        """
        s, logdet_act, logdet_w = self.demixer.training_terms(x, gradient=gradient)
        data_nll = -(self.prior.log_prob(s, u).sum(axis=-1) + logdet_act).mean()
        return data_nll - logdet_w, data_nll

    def log_abs_det_weights(self) -> jax.Array:
        """Exact ``sum_k log|det W_k|`` (scalar, slogdet: evaluation only)."""
        return sum(layer.log_abs_det() for layer in self.demixer.layers)
