"""iVAE (Khemakhem, Kingma, Monti, Hyvärinen, AISTATS 2020) in Flax NNX + Optax.

The model: a factorial conditional Gaussian prior ``p(z|u) = N(0, diag exp(r(u)))`` with ``r``
an MLP of ``u``; a Gaussian decoder ``p(x|z) = N(f(z), decoder_var I)`` with ``f`` an MLP and a
fixed variance; a Gaussian encoder ``q(z|x,u) = N(g(x,u), diag exp(h(x,u)))`` with ``g`` and
``h`` MLPs of ``[x, u]``. Training maximises the ELBO
``E_q[log p(x|z) + log p(z|u) - log q(z|x,u)]`` with one reparameterised sample per point; the
recovered sources are the posterior means ``g(x, u)``.

Defaults are those of iVAE's own code (``configs/ivae.yaml``, ``models/nets.py``,
``runners/ivae.py``): four MLPs of 3 layers of width 100 with ``xtanh`` units, decoder variance
0.1, Adam at 1e-2 with reduce-on-plateau (factor 0.1, patience 0) on the epoch's mean loss,
batch 64, 20 epochs, latent dimension = data dimension. ``u`` enters the networks one-hot
(segment labels) or as given (covariates).

``elbo_weights = (a, b, c, d)`` reweights the terms of the ELBO's decomposition used by iVAE's
code (after beta-TC-VAE, with the minibatch-weighted estimates of ``log q(z)`` and
``sum_i log q(z_i)`` over a dataset of ``N`` points):
``a log p(x|z) - b [log q(z|x,u) - log q(z)] - c [log q(z) - sum_i log q(z_i)]
- d [sum_i log q(z_i) - log p(z|u)]``. ``(1, 1, 1, 1)`` is exactly the ELBO. iVAE's default
config trains with ``(100, 1, 0, 10)`` (reconstruction weighted up, the total-correlation term
dropped), and so does this default: on its own benchmark recipe (``nica run ivae-original``)
it recovers the sources better than the plain ELBO (docs/baselines.md,
results/baselines/report.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.fitting.data import Standardisation, check_observations
from nica.fitting.stopping import ProgressEvent
from nica.methods.inputs import aux_input, init_seeds, new_aux_input, prepare_seeds
from nica.methods.loop import run_loop
from nica.methods.networks import MLP, get_hidden_activation
from nica.methods.settings import with_settings

__all__ = ["IVAE", "FittedIVAE", "IVAEConfig", "fit_ivae", "fit_ivae_seeds", "ivae_loss"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class IVAEConfig:
    """Every setting of an iVAE fit (defaults: iVAE's own code).

    Attributes:
      seed: PRNG seed of initialisation, shuffles and the reparameterisation noise.
      epochs: passes over the data.
      batch_size: minibatch size (the last partial batch is dropped).
      learning_rate: Adam's initial learning rate.
      hidden: width of every hidden layer.
      depth: layers per MLP (``depth - 1`` hidden layers).
      activation: hidden unit, a name of ``nica.methods.networks.HIDDEN_ACTIVATIONS``.
      decoder_var: the decoder's fixed variance.
      elbo_weights: ``(a, b, c, d)`` of the decomposed ELBO (module docstring): iVAE's code's
        ``(100, 1, 0, 10)``; ``(1, 1, 1, 1)`` is the plain ELBO.
      plateau_patience: epochs without improvement of the mean training loss tolerated before
        the learning rate is multiplied by ``plateau_factor`` (PyTorch's ``ReduceLROnPlateau``
        semantics; ``None``: constant learning rate). iVAE's runner uses 0 (its config's
        ``scheduler_tol`` is never read): the rate drops after the first epoch that does not
        improve. Kept at 1e-2 through bad epochs, the loss spikes and the encoder's
        log-variance runs past float32's range (a non-finite loss).
      plateau_factor: that factor.
      standardise: centre and scale each column of ``x`` first.
    """

    seed: int = 0
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-2
    hidden: int = 100
    depth: int = 3
    activation: str = "xtanh"
    decoder_var: float = 0.1
    elbo_weights: tuple[float, float, float, float] = (100.0, 1.0, 0.0, 10.0)
    plateau_patience: int | None = 0
    plateau_factor: float = 0.1
    standardise: bool = True

    def validate(self) -> IVAEConfig:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        get_hidden_activation(self.activation)
        for name in ("epochs", "batch_size", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not self.decoder_var > 0:
            raise ValueError("learning_rate and decoder_var must be > 0")
        if len(self.elbo_weights) != 4 or any(w < 0 for w in self.elbo_weights):
            raise ValueError(f"elbo_weights must be 4 numbers >= 0, got {self.elbo_weights}")
        if self.plateau_patience is not None and self.plateau_patience < 0:
            raise ValueError(f"plateau_patience must be >= 0, got {self.plateau_patience}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"plateau_factor must be in (0, 1), got {self.plateau_factor}")
        return self

    def to_dict(self) -> dict:
        """Every field, JSON-ready."""
        record = dataclasses.asdict(self)
        record["elbo_weights"] = list(self.elbo_weights)
        return record


class IVAE(nnx.Module):
    """The four networks of iVAE for data of dimension ``dim`` and auxiliary input ``aux_dim``.

    Attributes:
      encoder_mean, encoder_log_var: ``[x, u] (B, dim + aux_dim) -> (B, dim)``.
      decoder: ``z (B, dim) -> (B, dim)``, the decoder mean.
      prior_log_var: ``u (B, aux_dim) -> (B, dim)``, the log-variances of ``p(z|u)``.
    """

    def __init__(
        self,
        dim: int,
        aux_dim: int,
        *,
        hidden: int = 100,
        depth: int = 3,
        activation: Callable | str = "xtanh",
        rngs: nnx.Rngs,
    ):
        act = get_hidden_activation(activation) if isinstance(activation, str) else activation
        inner = [hidden] * (depth - 1)
        self.encoder_mean = MLP([dim + aux_dim, *inner, dim], act, rngs=rngs)
        self.encoder_log_var = MLP([dim + aux_dim, *inner, dim], act, rngs=rngs)
        self.decoder = MLP([dim, *inner, dim], act, rngs=rngs)
        self.prior_log_var = MLP([aux_dim, *inner, dim], act, rngs=rngs)

    def posterior(self, x: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and log-variance of ``q(z|x,u)``, each ``(B, dim)``."""
        xu = jnp.concatenate([x, u], axis=-1)
        return self.encoder_mean(xu), self.encoder_log_var(xu)


def gaussian_log_density(x: jax.Array, mean, log_var) -> jax.Array:
    """Elementwise ``log N(x; mean, exp(log_var))`` (broadcasting)."""
    return -0.5 * (_LOG_2PI + log_var + (x - mean) ** 2 * jnp.exp(-log_var))


def ivae_loss(
    model: IVAE,
    key: jax.Array,
    x: jax.Array,
    u: jax.Array,
    *,
    n_total: int,
    decoder_var: float,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> jax.Array:
    """Minus the (weighted) ELBO per point, averaged over the minibatch; a scalar.

    Args:
      model: the networks.
      key: PRNG key of the reparameterisation noise ``eps ~ N(0, I)``, shape ``(B, dim)``.
      x: observations ``(B, dim)``; u: network input of the auxiliary variable ``(B, aux_dim)``.
      n_total: dataset size ``N`` (minibatch-weighted estimates of ``log q(z)``).
      decoder_var: the decoder's fixed variance.
      weights: ``(a, b, c, d)`` (module docstring); ``(1, 1, 1, 1)``: the ELBO, for which the
        ``log q(z)`` estimates cancel and are not computed.
    """
    mean, log_var = model.posterior(x, u)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)
    log_px = gaussian_log_density(x, model.decoder(z), math.log(decoder_var)).sum(-1)
    log_q = gaussian_log_density(z, mean, log_var).sum(-1)
    log_p = gaussian_log_density(z, 0.0, model.prior_log_var(u)).sum(-1)
    a, b, c, d = weights
    if (b, c, d) == (1.0, 1.0, 1.0):
        return -(a * log_px + log_p - log_q).mean()
    batch = z.shape[0]
    pairs = gaussian_log_density(z[:, None, :], mean[None], log_var[None])  # (B, B, dim)
    log_norm = math.log(batch * n_total)
    log_qz = jax.nn.logsumexp(pairs.sum(-1), axis=1) - log_norm
    log_qz_product = (jax.nn.logsumexp(pairs, axis=1) - log_norm).sum(-1)
    objective = (
        a * log_px
        - b * (log_q - log_qz)
        - c * (log_qz - log_qz_product)
        - d * (log_qz_product - log_p)
    )
    return -objective.mean()


@dataclasses.dataclass
class FittedIVAE:
    """A trained iVAE with the standardisation it was trained with.

    Attributes:
      model: the networks.
      config: its :class:`IVAEConfig` (``seed`` set).
      standardisation: the column map applied to ``x`` first.
      aux: description of ``u`` (see ``nica.methods.inputs.Prepared``).
      losses: mean minibatch loss per epoch, shape ``(epochs_run,)``.
      diverged: ``None``, or why the fit is unusable (non-finite loss or parameters).
    """

    model: IVAE
    config: IVAEConfig
    standardisation: Standardisation
    aux: dict
    losses: np.ndarray
    diverged: str | None = None

    def transform(self, x, u=None) -> np.ndarray:
        """Recovered sources, the posterior means ``g(x, u)``, shape ``(N, dim)``.

        ``u`` is required: labels ``(N,)`` or covariates ``(N, d)`` as in the fit.
        """
        x = check_observations(x, where="x").x
        z = jnp.asarray(self.standardisation.apply(x), jnp.float32)
        u = jnp.asarray(new_aux_input(u, self.aux, x.shape[0]))
        mean, _ = _posterior(self.model, z, u)
        return np.asarray(mean, np.float64)


@nnx.jit
def _posterior(model: IVAE, x, u):
    return model.posterior(x, u)


def _resolve(config: IVAEConfig | None, overrides: dict) -> IVAEConfig:
    return with_settings(IVAEConfig() if config is None else config, overrides)


def _optimizer(config: IVAEConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    adam = optax.adam(config.learning_rate)
    if config.plateau_patience is None:
        return adam
    plateau = optax.contrib.reduce_on_plateau(
        factor=config.plateau_factor,
        patience=config.plateau_patience + 1,  # PyTorch reduces after patience + 1 bad epochs
        accumulation_size=steps_per_epoch,
    )
    return optax.chain(adam, plateau)


def _cache_key(graphdef, rest, config, n: int):
    """What determines the loss and optimizer of a fit (``None`` if ``rest`` holds arrays)."""
    if jax.tree.leaves(rest):
        return None
    return ("ivae", graphdef, dataclasses.replace(config, seed=0), n)


def fit_ivae_seeds(
    xs,
    us,
    *,
    seeds,
    config: IVAEConfig | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    **overrides,
) -> list[FittedIVAE]:
    """Fits one iVAE per seed (each on its own data), all in one vmapped program.

    Args:
      xs: ``S`` observation arrays of one shape ``(N, D)``.
      us: ``S`` auxiliary arrays of one shape: labels ``(N,)`` or covariates ``(N, d)``.
      seeds: ``S`` integer seeds (``config.seed`` is replaced by each).
      config: the settings (default :class:`IVAEConfig`); ``overrides`` replace its fields.
      progress: called with a ``nica.ProgressEvent`` after every epoch.

    Returns:
      ``S`` :class:`FittedIVAE`; seed ``i`` matches ``fit_ivae(xs[i], us[i], seed=seeds[i])``.
    """
    config = _resolve(config, overrides)
    seeds = [int(s) for s in seeds]
    prepared = prepare_seeds(
        xs, us, seeds, method="ivae", labels_only=False, enabled=config.standardise
    )
    dim, aux = prepared[0].z.shape[1], prepared[0].aux
    inputs = [aux_input(p.u, aux) for p in prepared]

    def build(key):
        return IVAE(
            dim,
            inputs[0].shape[1],
            hidden=config.hidden,
            depth=config.depth,
            activation=config.activation,
            rngs=nnx.Rngs(params=key),
        )

    graphdef, params, rest, train_keys = init_seeds(build, seeds)
    n = prepared[0].z.shape[0]
    batch_size = min(config.batch_size, n)

    def loss_fn(p, key, x, u):
        model = nnx.merge(graphdef, p, rest)
        return ivae_loss(
            model, key, x, u, n_total=n, decoder_var=config.decoder_var,
            weights=tuple(float(w) for w in config.elbo_weights),
        )  # fmt: skip

    data = (
        jnp.asarray(np.stack([p.z for p in prepared]), jnp.float32),
        jnp.asarray(np.stack(inputs)),
    )
    result = run_loop(
        loss_fn,
        params,
        data,
        train_keys,
        optimizer=_optimizer(config, n // batch_size),
        epochs=config.epochs,
        batch_size=batch_size,
        progress=progress,
        cache_key=_cache_key(graphdef, rest, config, n),
    )
    fitted = []
    for i, seed in enumerate(seeds):
        model = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], result.params), rest)
        diverged = None if result.finite[i] else "iVAE training diverged (non-finite loss)"
        fitted.append(
            FittedIVAE(
                model,
                dataclasses.replace(config, seed=seed),
                prepared[i].standardisation,
                aux,
                result.losses[i],
                diverged,
            )
        )
    return fitted


def fit_ivae(x, u, *, config: IVAEConfig | None = None, progress=None, **overrides) -> FittedIVAE:
    """Fits one iVAE to ``x (N, D)`` with auxiliary ``u`` (labels ``(N,)`` or covariates
    ``(N, d)``); ``overrides`` are :class:`IVAEConfig` fields (e.g. ``seed=3``)."""
    config = _resolve(config, overrides)
    (fitted,) = fit_ivae_seeds([x], [u], seeds=[config.seed], config=config, progress=progress)
    return fitted
