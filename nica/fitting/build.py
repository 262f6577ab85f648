"""What a :class:`~nica.fitting.config.FitConfig` builds: the model and its optimizer."""

from __future__ import annotations

import jax
import optax
from flax import nnx

from nica.core.activations import network_arguments
from nica.core.conditional import ContinuousPrior, SegmentPrior
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.priors import make_prior
from nica.fitting.config import FitConfig

__all__ = ["build_model", "make_optimizer"]


def build_model(config: FitConfig, dim: int, aux: dict | None, *, key: jax.Array) -> ICAModel:
    """Builds the demixer and prior for ``config``, initialised from ``key``.

    Args:
      config: the fit settings; its depth must be one integer for ``dim`` (a depth search
        that leaves two depths is a one-line ``ValueError``: ``nica.fit_seeds`` makes that
        choice by fitting each).
      dim: data dimension ``D``.
      aux: ``None`` (the unconditional model, Eq. 3, whatever ``config.model.conditional``
        says), ``{"kind": "segments", "n_segments": M}`` or ``{"kind": "continuous",
        "aux_dim": d}``.
      key: PRNG key of the initial parameters (traceable: ``vmap`` it to build many).
    """
    depths = config.resolve(dim).depths
    if len(depths) > 1:
        raise ValueError(
            f"depth {config.flat()['depth']!r} at D={dim} is chosen by fitting each of "
            f"{depths}; set an integer depth to build one model"
        )
    rngs = nnx.Rngs(params=key)
    arguments = network_arguments(config.model.activation)
    demixer = DemixingNetwork(dim, depths[0], **arguments, rngs=rngs)
    prior = config.model.prior
    family, _ = prior.resolve(aux is not None and config.model.conditional)
    if aux is None:
        return ICAModel(demixer, make_prior(family))
    if aux["kind"] == "segments":
        return ICAModel(
            demixer,
            SegmentPrior(aux["n_segments"], dim, family=family, shape_init=prior.shape_init),
        )
    return ICAModel(
        demixer,
        ContinuousPrior(aux["aux_dim"], dim, family=family, rngs=rngs, shape_init=prior.shape_init),
    )


def make_optimizer(
    config: FitConfig, n_samples: int, epochs: int | None = None, base=optax.adam
) -> optax.GradientTransformation:
    """``config.optimizer``'s transformation (clip, ``base`` with a cosine-decayed rate, kernel
    step scaling) for ``epochs`` (default ``config.loop.epochs``) passes over the training split
    of ``n_samples`` in minibatches of ``config.loop.batch_size``."""
    n_train = int(round(n_samples * (1 - config.loop.validation_fraction)))
    epochs = config.loop.epochs if epochs is None else epochs
    return config.optimizer.transformation(epochs * max(1, n_train // config.loop.batch_size), base)
