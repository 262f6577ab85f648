"""Time-contrastive learning (Hyvärinen & Morioka, NeurIPS 2016) in Flax NNX + Optax.

A feature extractor ``h(x)`` (maxout hidden layers, a last layer of ``D`` units with the
absolute value) and a multinomial logistic regression (MLR) ``softmax(h(x) W + b)`` are trained
to classify each point's segment label. At the optimum the features are the sources'
sufficient statistics (``|s_i|`` for scale-modulated symmetric sources) up to a linear map, so
the recovered sources are a linear ICA (FastICA) of the final-layer features.

Defaults follow the TCL code as ICE-BeeM runs it (``tcl_core.py``, ``simulation_runner.py``):
PCA whitening of ``x``; hidden layers of ``2 D`` maxout units with 2 pieces, ``depth`` layers in
all (ICE-BeeM matches it to the mixing depth); He-normal kernels, zero biases; cross-entropy plus
``1e-4`` times ``sum(W^2) / 2`` over every kernel; SGD with momentum 0.9 at 0.01, batches of
512; first ``init_steps`` steps training only the MLR on the random features, then ``steps``
steps of everything; the features evaluated with an exponential moving average (0.9999) of the
weights. Steps are rounded up to whole passes over the shuffled data; with fewer than
:data:`MIN_STEPS_PER_CALL` minibatches per pass, one compiled call runs several passes.
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
from nica.methods.fastica import FastICAConfig, linear_ica
from nica.methods.inputs import init_seeds, prepare_seeds
from nica.methods.loop import run_loop
from nica.methods.networks import MaxoutFeatures
from nica.methods.settings import with_settings

__all__ = ["TCL", "FittedTCL", "TCLConfig", "fit_tcl", "fit_tcl_seeds", "tcl_loss"]

#: Fewest optimizer steps per compiled call of the loop (small data: several passes per call).
MIN_STEPS_PER_CALL = 50


@dataclasses.dataclass(frozen=True)
class TCLConfig:
    """Every setting of a TCL fit (defaults: the TCL code as ICE-BeeM runs it).

    Attributes:
      seed: PRNG seed of initialisation and shuffles (and FastICA's ``random_state``).
      depth: layers of the feature extractor, the last being ``D`` absolute-value units.
      width: maxout units per hidden layer (``None``: ``2 D``).
      pieces: affine maps per maxout unit.
      init_steps: steps training only the MLR on the initial features (0: none).
      steps: steps training everything.
      batch_size: minibatch size.
      learning_rate: SGD learning rate.
      momentum: SGD momentum.
      weight_decay: coefficient of ``sum(W^2) / 2`` over every kernel.
      average: decay of the moving average of the weights used for the features (``None``:
        the final weights).
      whiten: PCA-whiten the standardised ``x`` first.
    """

    seed: int = 0
    depth: int = 3
    width: int | None = None
    pieces: int = 2
    init_steps: int = 10_000
    steps: int = 20_000
    batch_size: int = 512
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    average: float | None = 0.9999
    whiten: bool = True

    def validate(self) -> TCLConfig:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        for name in ("depth", "pieces", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.init_steps < 0 or self.weight_decay < 0 or not self.learning_rate > 0:
            raise ValueError("init_steps and weight_decay must be >= 0, learning_rate > 0")
        if not 0 <= self.momentum < 1 or (self.average is not None and not 0 < self.average < 1):
            raise ValueError("momentum must be in [0, 1) and average in (0, 1)")
        return self

    def to_dict(self) -> dict:
        """Every field, JSON-ready."""
        return dataclasses.asdict(self)


class TCL(nnx.Module):
    """Feature extractor and MLR for ``dim``-dimensional data and ``n_segments`` labels.

    Attributes:
      features: ``x (B, dim) -> (B, dim)``, non-negative (``MaxoutFeatures``).
      mlr: ``(B, dim) -> (B, n_segments)`` logits.
    """

    def __init__(
        self, dim: int, n_segments: int, *, depth: int = 3, width: int | None = None,
        pieces: int = 2, rngs: nnx.Rngs,
    ):  # fmt: skip
        hidden = [width or 2 * dim] * (depth - 1)
        self.features = MaxoutFeatures(dim, hidden, dim, pieces=pieces, rngs=rngs)
        he = nnx.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
        self.mlr = nnx.Linear(dim, n_segments, kernel_init=he, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.mlr(self.features(x))


def tcl_loss(model: TCL, x: jax.Array, labels: jax.Array, *, weight_decay: float) -> jax.Array:
    """Mean cross-entropy of the segment labels ``(B,)`` given ``x (B, dim)``, plus
    ``weight_decay * sum(W^2) / 2`` over every kernel (not the biases); a scalar."""
    logits = model(x)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    layers = [*model.features.hidden, model.features.last, model.mlr]
    kernels = [layer.kernel[...] for layer in layers]
    return cross_entropy + weight_decay * 0.5 * sum(jnp.sum(k**2) for k in kernels)


@dataclasses.dataclass
class FittedTCL:
    """A trained TCL with its preprocessing and the linear ICA of its features.

    Attributes:
      model: the networks (weights: the moving average when ``config.average``).
      config: its :class:`TCLConfig` (``seed`` set).
      standardisation: the column map applied to ``x`` first.
      whitening: PCA whitening ``(D, D)`` applied after it (identity without ``whiten``).
      ica_mean: feature means removed by FastICA, ``(D,)``.
      ica_unmixing: FastICA's unmixing of the centred features, ``(D, D)``.
      losses: mean minibatch loss per compiled call (one or more passes) of both phases.
      accuracy: segment-classification accuracy on the training data.
      diverged: ``None``, or why the fit is unusable (non-finite loss or parameters).
    """

    model: TCL
    config: TCLConfig
    standardisation: Standardisation
    whitening: np.ndarray
    ica_mean: np.ndarray
    ica_unmixing: np.ndarray
    losses: np.ndarray
    accuracy: float
    diverged: str | None = None

    def features(self, x) -> np.ndarray:
        """The final-layer features ``h(x)``, shape ``(N, D)``."""
        x = check_observations(x, where="x").x
        z = self.standardisation.apply(x) @ self.whitening
        return np.asarray(_features(self.model, jnp.asarray(z, jnp.float32)), np.float64)

    def transform(self, x, u=None) -> np.ndarray:
        """Recovered sources: FastICA of the features, ``(N, D)``; ``u`` is not used."""
        return (self.features(x) - self.ica_mean) @ self.ica_unmixing.T


@nnx.jit
def _features(model: TCL, z):
    return model.features(z)


@nnx.jit
def _logits(model: TCL, z):
    return model(z)


def _resolve(config: TCLConfig | None, overrides: dict) -> TCLConfig:
    return with_settings(TCLConfig() if config is None else config, overrides)


def pca_whitening(z: np.ndarray) -> np.ndarray:
    """The matrix ``W (D, D)`` with ``cov(z @ W) = I`` (eigenvectors scaled by
    ``1/sqrt(eigenvalue)``) for centred ``z (N, D)``."""
    values, vectors = np.linalg.eigh(z.T @ z / z.shape[0])
    return vectors / np.sqrt(np.maximum(values, 1e-12))


def _fastica(features: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """FastICA's ``(mean (D,), unmixing (D, D))`` of ``features (N, D)``, with the settings of
    the ``fastica`` method."""
    ica = linear_ica(FastICAConfig(seed=seed), who="tcl's final linear ICA").fit(features)
    return ica.mean_, ica.components_


def _phase(config: TCLConfig, labels, steps: int, n_batches: int) -> tuple:
    """``(optimizer, calls, passes per call)`` of a phase; with ``labels`` only the MLR is
    trained."""
    sgd = optax.sgd(config.learning_rate, momentum=config.momentum)
    if labels is not None:
        sgd = optax.multi_transform({"train": sgd, "freeze": optax.set_to_zero()}, labels)
    passes = math.ceil(MIN_STEPS_PER_CALL / n_batches)
    return sgd, max(1, math.ceil(steps / (n_batches * passes))), passes


def _cache_key(graphdef, rest, config, n: int, phase: str):
    """What determines a phase's loss and optimizer (``None`` if ``rest`` holds arrays)."""
    if jax.tree.leaves(rest):
        return None
    return ("tcl", phase, graphdef, dataclasses.replace(config, seed=0), n)


def fit_tcl_seeds(
    xs,
    us,
    *,
    seeds,
    config: TCLConfig | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    **overrides,
) -> list[FittedTCL]:
    """Fits one TCL per seed (each on its own data), all in one vmapped program.

    Args:
      xs: ``S`` observation arrays of one shape ``(N, D)``.
      us: ``S`` integer segment-label arrays ``(N,)`` with the same number of segments.
      seeds: ``S`` integer seeds (``config.seed`` is replaced by each).
      config: the settings (default :class:`TCLConfig`); ``overrides`` replace its fields.
      progress: called with a ``nica.ProgressEvent`` after every epoch (phases
        ``"mlr"`` and ``"fit"``).

    Returns:
      ``S`` :class:`FittedTCL`; seed ``i`` matches ``fit_tcl(xs[i], us[i], seed=seeds[i])``.
    """
    config = _resolve(config, overrides)
    seeds = [int(s) for s in seeds]
    prepared = prepare_seeds(xs, us, seeds, method="tcl", labels_only=True, enabled=True)
    whitenings = [pca_whitening(p.z) if config.whiten else np.eye(p.z.shape[1]) for p in prepared]
    dim, n_segments = prepared[0].z.shape[1], prepared[0].aux["n_segments"]

    def build(key):
        return TCL(
            dim, n_segments, depth=config.depth, width=config.width, pieces=config.pieces,
            rngs=nnx.Rngs(params=key),
        )  # fmt: skip

    graphdef, params, rest, train_keys = init_seeds(build, seeds)

    def loss_fn(p, key, x, labels):
        return tcl_loss(nnx.merge(graphdef, p, rest), x, labels, weight_decay=config.weight_decay)

    z = np.stack([p.z @ w for p, w in zip(prepared, whitenings, strict=True)])
    data = (jnp.asarray(z, jnp.float32), jnp.asarray(np.stack([p.u for p in prepared])))
    n = z.shape[1]
    batch_size = min(config.batch_size, n)
    n_batches = n // batch_size
    losses = []
    if config.init_steps:
        mlr_only = jax.tree_util.tree_map_with_path(
            lambda path, _: "train" if path[0].key == "mlr" else "freeze", params
        )
        optimizer, epochs, passes = _phase(config, mlr_only, config.init_steps, n_batches)
        init_keys_, train_keys = jax.vmap(lambda k: tuple(jax.random.split(k)))(train_keys)
        first = run_loop(
            loss_fn, params, data, init_keys_, optimizer=optimizer, epochs=epochs,
            batch_size=batch_size, passes=passes, progress=progress, phase="mlr",
            cache_key=_cache_key(graphdef, rest, config, n, "mlr"),
        )  # fmt: skip
        params = first.params
        losses.append(first.losses)
    optimizer, epochs, passes = _phase(config, None, config.steps, n_batches)
    result = run_loop(
        loss_fn, params, data, train_keys, optimizer=optimizer, epochs=epochs,
        batch_size=batch_size, average=config.average, passes=passes, progress=progress,
        cache_key=_cache_key(graphdef, rest, config, n, "fit"),
    )  # fmt: skip
    losses.append(result.losses)
    finite = result.finite & (first.finite if config.init_steps else True)
    final = result.params if result.averaged is None else result.averaged
    fitted = []
    for i, seed in enumerate(seeds):
        model = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], final), rest)
        fitted.append(
            _finish(model, dataclasses.replace(config, seed=seed), prepared[i], whitenings[i],
                    np.concatenate([phase[i] for phase in losses]), bool(finite[i]), data, i)
        )  # fmt: skip
    return fitted


def _finish(model, config, prepared, whitening, losses, finite, data, i) -> FittedTCL:
    """The :class:`FittedTCL` of seed ``i``: accuracy, and FastICA of its features."""
    dim = whitening.shape[0]
    if not finite:
        nan = np.full(dim, np.nan)
        return FittedTCL(
            model, config, prepared.standardisation, whitening, nan, np.diag(nan), losses,
            float("nan"), "TCL training diverged (non-finite loss or parameters)",
        )  # fmt: skip
    z = data[0][i]
    accuracy = float(jnp.mean(jnp.argmax(_logits(model, z), -1) == data[1][i]))
    features = np.asarray(_features(model, z), np.float64)
    mean, unmixing = _fastica(features, config.seed)
    return FittedTCL(
        model, config, prepared.standardisation, whitening, mean, unmixing, losses, accuracy
    )


def fit_tcl(x, u, *, config: TCLConfig | None = None, progress=None, **overrides) -> FittedTCL:
    """Fits one TCL to ``x (N, D)`` with integer segment labels ``u (N,)``; ``overrides`` are
    :class:`TCLConfig` fields (e.g. ``seed=3``, ``depth=2``)."""
    config = _resolve(config, overrides)
    (fitted,) = fit_tcl_seeds([x], [u], seeds=[config.seed], config=config, progress=progress)
    return fitted
