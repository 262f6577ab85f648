"""The problem of the dynamics experiment (``experiments.dynamics``): the 2-D model and its data.

:func:`make_model` is the student's (and the teacher's) architecture, :func:`make_problem` the
standardised observations with the exact NLL of the model that generated them.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from nica import DemixingNetwork, ICAModel, make_prior
from synthetic.mixing import random_matrix, random_mixing

MIXINGS = ("teacher", "leaky_relu")


ACTIVATION, SLOPE = "smooth_leaky_relu", 0.2


def make_model(seed: int, *, dim: int = 2, depth: int = 2) -> ICAModel:
    """The student (and teacher) architecture: smooth leaky-ReLU demixer, Laplace prior."""
    net = DemixingNetwork(
        dim,
        depth,
        activation=ACTIVATION,
        activation_kwargs={"slope": SLOPE},
        rngs=nnx.Rngs(seed),
    )
    return ICAModel(net, make_prior("laplace"))


def make_problem(seed: int, n: int, *, mixing: str = "teacher") -> tuple[np.ndarray, float]:
    """Standardised 2-D observations of Laplace sources, and the true model's NLL on them.

    Args:
      seed: seed of the sources and the mixing.
      n: number of samples.
      mixing: ``"teacher"`` (exact inverse of a random 2-layer smooth-leaky-ReLU demixer, so
        the model class contains the truth) or ``"leaky_relu"`` (random 2-layer leaky-ReLU MLP,
        slope 0.2, iVAE convention: approached by the model only as its weights grow).

    Returns:
      ``(x, reference_nll)``: ``x`` of shape ``(n, 2)``, float32, each column with mean 0 and
      variance 1; the exact mean NLL of ``x`` under the generating model (nats per sample).
    """
    rng = np.random.default_rng(seed)
    s = rng.laplace(size=(n, 2))
    laplace_nll = np.abs(s).sum(axis=1) + 2 * np.log(2.0)
    if mixing == "leaky_relu":
        mix = random_mixing(rng, 2, 2, activation="leaky_relu", slope=SLOPE)
        x = mix(s)
        first, second = mix.matrices
        hidden = s @ first
        # log|det J_f(s)| of x = leaky_relu(s A1) A2.
        log_det_f = (
            np.linalg.slogdet(first)[1]
            + np.linalg.slogdet(second)[1]
            + np.where(hidden >= 0, 0.0, np.log(SLOPE)).sum(axis=1)
        )
    elif mixing == "teacher":
        first, second = random_matrix(rng, 2), random_matrix(rng, 2)
        teacher = make_model(0).demixer
        teacher.layers[0].kernel[...] = jnp.asarray(first, jnp.float32)
        teacher.layers[1].kernel[...] = jnp.asarray(second, jnp.float32)
        x = np.asarray(teacher.inverse(jnp.asarray(s, jnp.float32)), np.float64)
        s_check, log_det_g = teacher.forward_and_log_det(jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(np.asarray(s_check), s, atol=1e-3)
        log_det_f = -np.asarray(log_det_g, np.float64)
    else:
        raise ValueError(f"unknown mixing {mixing!r}; known: {', '.join(MIXINGS)}")
    mean, std = x.mean(axis=0), x.std(axis=0)
    # Standardising divides the density by prod(std): -log p(x_std) = -log p(x) - sum log std.
    reference = float(np.mean(laplace_nll + log_det_f) - np.log(std).sum())
    return ((x - mean) / std).astype(np.float32), reference
