"""The public estimator: ``nica.fit`` / ``nica.fit_seeds`` on arrays, ``FittedModel``, ``load``.

One set of defaults (:class:`FitConfig`) serves the library, ``nica fit`` and ``nica run``. A fit
validates and standardises ``x`` once where it enters, picks the conditional model (Eq. 4) when
``u`` is given, initialises every (seed, restart) run in one vmapped call, trains the restarts
briefly, keeps each seed's best restart by validation NLL (picked on device) and trains it on;
where ``depth='auto'`` leaves two depths (up to 10 sources) it does so for each and keeps each
seed's depth with the lower validation NLL.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nica.core.conditional import (
    CONDITIONAL_FAMILIES,
    ContinuousPrior,
    SegmentPrior,
    gennorm_shape,
    resolved_shape_init,
)
from nica.core.gradients import DEFAULT_GRADIENT, GradientMode, check_gradient, resolve_gradient
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.priors import PRIORS, make_prior
from nica.core.relative import scale_kernel_steps
from nica.fitting.auxiliary import AuxReading, check_segments, encode_aux, read_aux
from nica.fitting.data import Standardisation, check_observations, standardise
from nica.fitting.training import (
    FitResult,
    ProgressEvent,
    TrainingDivergedError,
    TrainSettings,
    split_runs_data,
    train_runs,
)
from nica.util.files import load_npz, save_npz, write_json
from nica.util.progress import display

__all__ = [
    "FitConfig",
    "FittedModel",
    "build_model",
    "check_inputs",
    "fit",
    "fit_seeds",
    "load",
    "make_optimizer",
]


#: ``FitConfig.depth`` that picks the demixer's depth from the data dimension.
AUTO_DEPTH = "auto"
#: Depths of the ``auto`` rule: up to :data:`DEEP_ABOVE_DIM` sources each of
#: :data:`SHALLOW_DEPTHS` is fitted and the one with the lowest validation NLL is kept; above,
#: :data:`DEEP_DEPTH`.
SHALLOW_DEPTHS, DEEP_DEPTH, DEEP_ABOVE_DIM = (4, 5), 6, 10
#: The ``auto`` rule in words (help texts, reports, and the cell keys of ``nica run``).
AUTO_DEPTH_RULE = (
    f"{' or '.join(map(str, SHALLOW_DEPTHS))} up to {DEEP_ABOVE_DIM} sources (the lower "
    f"validation NLL), {DEEP_DEPTH} above"
)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Every setting of a fit; the defaults are the ones tuned on the published benchmarks.

    Attributes:
      seed: PRNG seed for initialisation, validation split and shuffling.
      epochs: maximum passes over the training split.
      depth: number of square layers of the demixer, or ``auto`` (default,
        :meth:`candidate_depths`): up to D = 10 sources a 4- and a 5-layer demixer are both
        fitted (same data split and seeds) and the one with the lower validation NLL is kept;
        6 layers above. Neither depth wins everywhere at D = 5: on a 4-layer iVAE-style
        mixing 5 layers reached MCC 0.922 against 0.885, on a leaky-ReLU(0.05) mixing 0.798
        against 0.981, and in both cases the better one had the lower validation NLL. At D = 20
        a 4-layer demixer stopped 14 nats short of the true model's likelihood (median MCC
        0.793) and a 6-layer one 5.8 (0.920).
      prior: component family: a name of ``nica.core.conditional.CONDITIONAL_FAMILIES`` for the
        conditional model, of ``nica.core.priors.PRIORS`` for the unconditional one. ``auto`` picks
        ``gennorm`` for the conditional model (a generalised normal whose exponent is learned
        per component between Laplace, 1, and Gaussian, 2: a fixed Laplace prior cost Pearson
        MCC on Gaussian sources, 0.984 against 0.999 with a Gaussian prior, and a fixed
        Gaussian one is wrong for Laplace sources) and ``laplace`` for the unconditional one.
      prior_shape_init: the initial exponent of a ``gennorm`` prior, in (1, 2) (``None``: its
        default, 1.02, the Laplace end; see ``nica.core.conditional.CONDITIONAL_FAMILIES``).
      conditional: use ``u`` (Eq. 4) when given; ``False`` fits Eq. 3 and ignores ``u``.
      gradient: ``auto`` (default) or a mode name of ``nica.GRADIENTS``: ``relative_coords``
        (the optimizer runs in relative coordinates, ordinary bias gradients),
        ``relative_pooled`` (the relative gradient with Adam's second moment pooled per
        square kernel), ``relative`` (MATH.md's augmented relative gradient), ``ordinary`` or
        ``autodiff``. ``auto`` is ``relative_coords`` while ``D <= batch_size`` and
        ``relative_pooled`` above, so the step stays O(L B D^2) at every D
        (``nica.core.gradients.resolve_gradient``).
      activation: demixer activation name (``nica.core.activations.ACTIVATIONS``). The default,
        ``monotone_spline``, is learnable (its own per-unit slope profile in every hidden layer)
        and presupposes no mixing nonlinearity; so is ``monotone_mixture`` (smoother, ~4x the
        cost per epoch). The static ones (``smooth_leaky_relu``, ...) fix the shape.
      slope: the static activation's slope parameter (``slope`` for leaky ReLUs, ``beta`` for
        leaky tanh); 5 makes ``smooth_leaky_relu`` the inverse of a leaky-ReLU(0.2) mixing.
      sharpness: kink sharpness of ``smooth_leaky_relu``.
      activation_knots: knots ``K`` of a learnable activation on ``[-4, 4]`` (``None``: the
        family's default, 17 for ``monotone_spline``, 9 for ``monotone_mixture``).
      activation_sharpness: ``monotone_mixture``'s sharpness (a slope change is smoothed over
        ~1/sharpness; knot spacing is 8 / (K - 1)).
      activation_tail_slope: a learnable activation's initial slope in both tails (1: starts
        at the identity; > 1: starts expansive, < 1: compressive).
      learning_rate: peak Adam learning rate (cosine decay to 0 over ``epochs``).
      lr_reference_dim: above this dimension ``D`` the square kernels' updates are scaled by
        ``lr_reference_dim / D`` (:func:`nica.core.relative.scale_kernel_steps`). Adam moves each
        entry of a ``D x D`` update by up to about the learning rate, so a layer's step can
        reach ``lr D`` in spectral norm; unscaled, the training NLL climbed at the peak rate
        from D = 20 on (by 450-860 nats above its running minimum at D = 50) and only came
        back while the rate decayed. Up to D = 10 the unscaled step trains best (scaling it by
        1/2 at D = 10 cost one seed of three), hence 10. ``None``: the same rate at every
        ``D``. At ``D <= lr_reference_dim`` the step is exactly the unscaled one.
      batch_size: minibatch size.
      clip_norm: global gradient-norm clip (O(parameters), keeps the step O(L B D^2)).
      validation_fraction: share held out for the exact validation NLL.
      patience: early-stopping patience in evaluations (``None``: train all epochs).
      eval_every: epochs between exact evaluations.
      standardise: centre and scale each column of ``x`` before the demixer.
      restarts: initialisations tried first (all at once, vmapped), each for
        ``restart_epochs``; the one with the lowest validation NLL is trained for ``epochs``
        more. 1 = a single initialisation. The true sources are never used.
      restart_epochs: length of each restart's short fit (``None``: a twelfth of ``epochs``,
        25 of the default 300: a short annealed fit already separates good initialisations
        from poor ones, and the restarts were two thirds of a fit's time at a third).
    """

    seed: int = 0
    epochs: int = 300
    depth: int | str = AUTO_DEPTH
    prior: str = "auto"
    prior_shape_init: float | None = None
    conditional: bool = True
    gradient: str = DEFAULT_GRADIENT
    activation: str = "monotone_spline"
    slope: float = 5.0
    sharpness: float = 10.0
    activation_knots: int | None = None
    activation_sharpness: float = 6.0
    activation_tail_slope: float = 1.0
    learning_rate: float = 1e-2
    lr_reference_dim: int | None = 10
    batch_size: int = 256
    clip_norm: float = 10.0
    validation_fraction: float = 0.1
    patience: int | None = None
    eval_every: int = 10
    standardise: bool = True
    restarts: int = 8
    restart_epochs: int | None = None

    def validate(self) -> FitConfig:
        """Returns self, or raises a one-line ``ValueError`` naming the bad setting."""
        check_gradient(self.gradient)
        known = CONDITIONAL_FAMILIES if self.conditional else PRIORS
        if self.prior != "auto" and self.prior not in known:
            kind = "conditional" if self.conditional else "unconditional"
            raise ValueError(
                f"unknown {kind} prior {self.prior!r}; known: auto, {', '.join(known)}"
            )
        if self.conditional:
            resolved_shape_init(self.prior_family, self.prior_shape_init)
        elif self.prior_shape_init is not None:
            raise ValueError("prior_shape_init is for the conditional model's gennorm prior")
        if self.depth != AUTO_DEPTH and not isinstance(self.depth, int):
            raise ValueError(f"depth must be 'auto' or an integer >= 1, got {self.depth!r}")
        if self.depth != AUTO_DEPTH and self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        counts = ("epochs", "batch_size", "eval_every", "restarts", "restart_epochs")
        for name in (*counts, "lr_reference_dim"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not self.learning_rate > 0 or not self.clip_norm > 0:
            raise ValueError("learning_rate and clip_norm must be > 0")
        self.settings(self.epochs).validate()
        return self

    def candidate_depths(self, dim: int) -> tuple[int, ...]:
        """The demixer depths a fit of ``dim`` sources tries: ``(depth,)``, or for ``auto``
        :data:`SHALLOW_DEPTHS` up to :data:`DEEP_ABOVE_DIM` sources and
        ``(DEEP_DEPTH,)`` above."""
        if self.depth != AUTO_DEPTH:
            return (int(self.depth),)
        return SHALLOW_DEPTHS if dim <= DEEP_ABOVE_DIM else (DEEP_DEPTH,)

    def resolved_depth(self, dim: int) -> int:
        """The one depth of :meth:`candidate_depths`; a one-line ValueError when ``auto``
        leaves a choice that only a fit makes (``fit_seeds`` makes it)."""
        depths = self.candidate_depths(dim)
        if len(depths) > 1:
            raise ValueError(
                f"depth 'auto' at D={dim} is chosen by fitting each of {depths}; set an "
                "integer depth to build one model"
            )
        return depths[0]

    @property
    def resolved_restart_epochs(self) -> int:
        """``restart_epochs``, or a twelfth of ``epochs`` (at least 1) when it is ``None``."""
        return self.restart_epochs or max(1, self.epochs // 12)

    def resolved_gradient(self, dim: int, n_samples: int) -> GradientMode:
        """The gradient mode a fit of ``n_samples`` points of dimension ``dim`` trains with
        (``auto`` resolved with the batch size the trainer uses, capped at the training split)."""
        n_train = n_samples - int(round(self.validation_fraction * n_samples))  # as the split
        return resolve_gradient(self.gradient, dim, min(self.batch_size, max(1, n_train)))

    @property
    def prior_family(self) -> str:
        """The resolved prior name (``auto``: ``gennorm`` conditional, ``laplace`` not)."""
        if self.prior != "auto":
            return self.prior
        return "gennorm" if self.conditional else "laplace"

    @property
    def resolved_prior_shape_init(self) -> float | None:
        """The conditional prior's initial shape (``None`` for a family without one, or the
        unconditional model)."""
        if not self.conditional:
            return None
        return resolved_shape_init(self.prior_family, self.prior_shape_init)

    def settings(self, epochs: int, patience: int | None = None) -> TrainSettings:
        """The trainer's loop settings for a phase of ``epochs`` epochs."""
        return TrainSettings(
            epochs=epochs,
            batch_size=self.batch_size,
            validation_fraction=self.validation_fraction,
            patience=patience,
            eval_every=self.eval_every,
        )

    def to_dict(self) -> dict:
        """Every field plus the resolved ``prior_family`` and ``restart_epochs`` and, for
        ``depth='auto'``, the rule's wording (JSON-ready; ``nica run``'s cell keys hash it, so
        a changed rule is never mistaken for a finished cell)."""
        rule = {"depth_rule": AUTO_DEPTH_RULE} if self.depth == AUTO_DEPTH else {}
        shape = self.resolved_prior_shape_init
        return {
            **dataclasses.asdict(self),
            "prior_family": self.prior_family,
            "resolved_restart_epochs": self.resolved_restart_epochs,
            **rule,
            **({} if shape is None else {"resolved_prior_shape_init": shape}),
        }

    @classmethod
    def from_dict(cls, record: dict) -> FitConfig:
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def _activation_kwargs(config: FitConfig) -> dict:
    knots = {} if config.activation_knots is None else {"knots": config.activation_knots}
    return {
        "smooth_leaky_relu": {"slope": config.slope, "sharpness": config.sharpness},
        "leaky_relu": {"slope": config.slope},
        "leaky_tanh": {"beta": config.slope},
        "monotone_mixture": {
            **knots,
            "sharpness": config.activation_sharpness,
            "init_tail_slope": config.activation_tail_slope,
        },
        "monotone_spline": {**knots, "init_tail_slope": config.activation_tail_slope},
    }.get(config.activation, {})


def build_model(config: FitConfig, dim: int, aux: dict | None, *, key: jax.Array) -> ICAModel:
    """Builds the demixer and prior for ``config``, initialised from ``key``.

    Args:
      config: the fit settings.
      dim: data dimension ``D``.
      aux: ``None`` (unconditional), ``{"kind": "segments", "n_segments": M}`` or
        ``{"kind": "continuous", "aux_dim": d}``.
      key: PRNG key of the initial parameters (traceable: ``vmap`` it to build many).
    """
    rngs = nnx.Rngs(params=key)
    demixer = DemixingNetwork(
        dim,
        config.resolved_depth(dim),
        activation=config.activation,
        activation_kwargs=_activation_kwargs(config),
        rngs=rngs,
    )
    if aux is None:  # Eq. 3 whatever config.conditional says: auto is its own prior then
        unconditional = dataclasses.replace(config, conditional=False)
        return ICAModel(demixer, make_prior(unconditional.prior_family))
    if aux["kind"] == "segments":
        prior = SegmentPrior(
            aux["n_segments"], dim, family=config.prior_family, shape_init=config.prior_shape_init
        )
    else:
        prior = ContinuousPrior(
            aux["aux_dim"],
            dim,
            family=config.prior_family,
            rngs=rngs,
            shape_init=config.prior_shape_init,
        )
    return ICAModel(demixer, prior)


def make_optimizer(
    config: FitConfig, n_samples: int, epochs: int | None = None, base=optax.adam
) -> optax.GradientTransformation:
    """Gradient clipping + ``base`` (default Adam), learning rate cosine-decayed to 0 over
    ``epochs`` (default ``config.epochs``) passes over the training split of ``n_samples``,
    square-kernel steps scaled above ``config.lr_reference_dim`` (:func:`scale_kernel_steps`)."""
    n_train = int(round(n_samples * (1 - config.validation_fraction)))
    steps = (config.epochs if epochs is None else epochs) * max(1, n_train // config.batch_size)
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        base(optax.cosine_decay_schedule(config.learning_rate, steps)),
        scale_kernel_steps(config.lr_reference_dim),
    )


@functools.partial(jax.jit, static_argnums=0)
def _demix(graphdef, params, rest, z):
    return nnx.merge(graphdef, params, rest).demixer(z)


@functools.partial(jax.jit, static_argnums=0)
def _mix(graphdef, params, rest, s):
    return nnx.merge(graphdef, params, rest).demixer.inverse(s)


@functools.partial(jax.jit, static_argnums=0)
def _log_likelihood(graphdef, params, rest, z, u):
    return nnx.merge(graphdef, params, rest).log_likelihood(z, u)


@dataclasses.dataclass
class FittedModel:
    """A trained model with the standardisation it was trained with.

    ``transform``, ``log_likelihood`` and ``inverse`` compile once per model structure and
    input shape (the parameters are arguments, not constants).

    Attributes:
      model: the trained :class:`ICAModel`.
      config: its :class:`FitConfig`.
      standardisation: the column ``mean`` and ``scale`` applied before the demixer.
      aux: description of the auxiliary variable (see :func:`build_model`).
      result: the training :class:`FitResult` (``None`` after :func:`load`).
      restarts: with ``config.restarts > 1``: ``{"val_nll": [...], "chosen": k}``, the
        restarts' best validation NLLs and the index of the one kept.
      depth_search: with several candidate depths: ``{"depths": [4, 5], "val_nll": [...],
        "chosen": 5}``, each depth's best validation NLL and the depth kept (``config.depth``).
    """

    model: ICAModel
    config: FitConfig
    standardisation: Standardisation
    aux: dict | None
    result: FitResult | None = None
    restarts: dict | None = None
    depth_search: dict | None = None

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return int(self.standardisation.mean.shape[0])

    @property
    def prior_shape(self) -> list[float] | None:
        """The learned exponent ``beta`` of each component (1 Laplace, 2 Gaussian) when the
        prior is ``gennorm``, else ``None``."""
        raw = getattr(self.model.prior, "raw_shape", None)
        return None if raw is None else [float(b) for b in gennorm_shape(raw[...])]

    @property
    def mean(self) -> np.ndarray:
        """Column means subtracted before the demixer, shape ``(dim,)``."""
        return self.standardisation.mean

    @property
    def scale(self) -> np.ndarray:
        """Column scales divided out, shape ``(dim,)``."""
        return self.standardisation.scale

    @property
    def log_scale(self) -> float:
        """``sum(log scale)``: a log-density of the standardised data minus this is the
        log-density of ``x`` in its own units."""
        return float(np.log(self.scale).sum())

    def _parts(self):
        graphdef, params, rest = nnx.split(self.model, nnx.Param, ...)
        return graphdef, params, rest

    def _input(self, a, name: str) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != self.dim:
            raise ValueError(f"expected {name} of shape (N, {self.dim}), got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN, Inf or non-numeric values")
        return a.astype(np.float64)

    def transform(self, x) -> np.ndarray:
        """Recovered sources ``s_hat = g(standardise(x))``, shape ``(N, dim)``, input order."""
        z = jnp.asarray(self.standardisation.apply(self._input(x, "x")), jnp.float32)
        return np.asarray(_demix(*self._parts(), z))

    def inverse(self, s) -> np.ndarray:
        """Observations ``x = g^{-1}(s)`` in the original units, shape ``(N, dim)``."""
        s = jnp.asarray(self._input(s, "s"), jnp.float32)
        z = np.asarray(_mix(*self._parts(), s), np.float64)
        return z * self.scale + self.mean

    def log_likelihood(self, x, u=None) -> np.ndarray:
        """Exact ``log p(x | u)`` per sample, in nats, in the original units of ``x``, shape
        ``(N,)``. ``u`` is read as at fit time (labels through the saved label set; a label
        never seen in training is a ValueError naming it)."""
        z = jnp.asarray(self.standardisation.apply(self._input(x, "x")), jnp.float32)
        if u is not None and np.shape(u)[:1] != (z.shape[0],):
            raise ValueError(f"u has shape {np.shape(u)}; x has {z.shape[0]} rows")
        u = encode_aux(u, self.aux, where="u")
        ll = _log_likelihood(*self._parts(), z, None if u is None else jnp.asarray(u))
        return np.asarray(ll, np.float64) - self.log_scale

    def save(self, directory: str | os.PathLike) -> Path:
        """Writes ``checkpoint.npz`` (parameters + standardisation) and ``checkpoint.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        leaves = jax.tree_util.tree_leaves_with_path(nnx.state(self.model, nnx.Param))
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}
        save_npz(directory / "checkpoint.npz", mean=self.mean, scale=self.scale, **arrays)
        # The resolved prior, so that a later change of ``auto`` cannot change a saved model.
        config = {**dataclasses.asdict(self.config), "prior": self.config.prior_family}
        meta = {"config": config, "dim": self.dim, "aux": self.aux}
        write_json(directory / "checkpoint.json", meta)
        return directory


def load(directory: str | os.PathLike) -> FittedModel:
    """Rebuilds a model saved by :meth:`FittedModel.save` (ValueError if it is not one)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "checkpoint.json").read_text())
        config = FitConfig.from_dict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{directory}: not a nica checkpoint ({err})") from None
    arrays = load_npz(directory / "checkpoint.npz")
    if config.prior == "auto" and not any("raw_shape" in name for name in arrays):
        # Saved while ``auto`` still meant laplace with u too (it is gennorm now).
        config = dataclasses.replace(config, prior="laplace")
    model = build_model(config, meta["dim"], meta["aux"], key=jax.random.key(0))
    paths, treedef = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))
    try:
        leaves = [jnp.asarray(arrays[jax.tree_util.keystr(p)]) for p, _ in paths]
    except KeyError as err:
        raise ValueError(f"{directory}: checkpoint lacks parameter {err}") from None
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, leaves))
    standardisation = Standardisation(arrays["mean"], arrays["scale"])
    return FittedModel(model, config, standardisation, meta["aux"])


def _resolve(config: FitConfig | None, overrides: dict) -> FitConfig:
    config = FitConfig() if config is None else config
    names = {f.name for f in dataclasses.fields(FitConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown FitConfig setting(s) {unknown}; known: {sorted(names)}")
    return dataclasses.replace(config, **overrides).validate()


class _Prepared(NamedTuple):
    """One seed's checked data: standardised ``z (N, D)``, its map, and how ``u`` was read."""

    z: np.ndarray
    standardisation: Standardisation
    reading: AuxReading | None

    @property
    def aux(self) -> dict | None:
        return None if self.reading is None else self.reading.aux

    @property
    def u(self) -> np.ndarray | None:
        return None if self.reading is None else self.reading.values


def _prepare(config: FitConfig, x, u, where: str, where_u: str) -> _Prepared:
    """Validates and standardises one seed's data; refuses a set-up that cannot identify the
    sources (one column; :func:`nica.fitting.auxiliary.check_segments`)."""
    data = check_observations(x, u if config.conditional else None, where=where)
    if data.x.shape[1] < 2:
        raise ValueError(
            f"{where}: x has a single column: with one source there is nothing to unmix (any"
            " increasing map of x is an equally good source); nonlinear ICA needs D >= 2"
        )
    z, standardisation = standardise(data.x, enabled=config.standardise, where=where)
    reading = read_aux(data.u, where=where_u)
    if reading is not None:
        check_segments(reading, z.shape[1], where=where_u)
    return _Prepared(z, standardisation, reading)


def check_inputs(
    x, u=None, *, config: FitConfig | None = None, where: str = "x", where_u: str = "u"
) -> AuxReading | None:
    """Every check :func:`fit` makes of its data before training, without training: raises
    its one-line ``ValueError`` (or warns) now; returns how ``u`` is read (``None`` without
    ``u``)."""
    config = FitConfig() if config is None else config.validate()
    if u is None:
        config = dataclasses.replace(config, conditional=False)
    prepared = _prepare(config, x, u, where, where_u)
    _check_selection(config, *prepared.z.shape, where)
    return prepared.reading


#: Fewest validation rows that may choose among restarts or depths: below it the standard error
#: of the mean validation NLL (the per-sample spread over sqrt(rows), a quarter of that spread
#: or more) exceeds the gaps that separate restarts.
MIN_VALIDATION_ROWS = 20


def _check_selection(config: FitConfig, n_samples: int, dim: int, where: str) -> None:
    """A one-line ValueError when the validation split is too small to choose what the fit
    chooses on it (a restart, a depth)."""
    choices = []
    if config.restarts > 1:
        choices.append(f"{config.restarts} restarts")
    depths = config.candidate_depths(dim)
    if len(depths) > 1:
        choices.append(f"depths {' and '.join(map(str, depths))}")
    n_val = int(round(config.validation_fraction * n_samples))
    if choices and n_val < MIN_VALIDATION_ROWS:
        raise ValueError(
            f"{where}: the validation split has {n_val} rows (validation_fraction"
            f" {config.validation_fraction} of {n_samples}), fewer than {MIN_VALIDATION_ROWS}:"
            f" too few to choose among {' and '.join(choices)}; set restarts=1 and an integer"
            " depth, or give more rows or a larger validation_fraction"
        )


def _seed_keys(seed: int, n_restarts: int):
    """A seed's ``(split_key, shuffle_key, init_keys (K,))``."""
    data_key, init_key = jax.random.split(jax.random.key(seed))
    split_key, shuffle_key = jax.random.split(data_key)
    return split_key, shuffle_key, jax.random.split(init_key, n_restarts)


def _initial_params(config: FitConfig, dim: int, aux, init_keys: jax.Array):
    """``(graphdef, params with leading (S, K) axes, rest)`` from one vmapped initialisation."""
    model = build_model(config, dim, aux, key=init_keys[0, 0])
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    init = _init_fn(dataclasses.replace(config, seed=0), dim, json.dumps(aux, sort_keys=True))
    return graphdef, init(init_keys), rest


@functools.lru_cache(maxsize=8)
def _init_fn(config: FitConfig, dim: int, aux_json: str):
    """The jitted ``(S, K) keys -> params`` initialiser, compiled once per model structure."""
    aux = json.loads(aux_json)

    def init(key):
        return nnx.state(build_model(config, dim, aux, key=key), nnx.Param)

    return jax.jit(jax.vmap(jax.vmap(init)))


@jax.jit
def _take_restarts(params, chosen: jax.Array):
    """Each seed's restart ``chosen (S,)``: params with leading axes ``(S, 1)``."""

    def take(leaf):
        index = chosen.reshape((-1, 1) + (1,) * (leaf.ndim - 2))
        return jnp.take_along_axis(leaf, index, axis=1)

    return jax.tree.map(take, params)


def _optimizer_key(config: FitConfig, n_samples: int, epochs: int) -> tuple:
    """What determines :func:`make_optimizer`'s result: compiled programs are shared by it."""
    return (dataclasses.replace(config, seed=0), n_samples, epochs)


def _choose_restarts(config, model_parts, data, n_samples, shuffle_keys, progress, shard, offsets):
    """Short fits of every seed's ``K`` initialisations; the best one per seed goes on."""
    n_seeds, n_restarts = shuffle_keys.shape[0], config.restarts
    epochs = config.resolved_restart_epochs
    best, results = train_runs(
        *model_parts,
        data,
        jax.vmap(lambda k: jax.random.split(k, n_restarts))(shuffle_keys),
        optimizer=make_optimizer(config, n_samples, epochs),
        gradient=config.gradient,
        settings=config.settings(epochs),
        progress=progress,
        phase="restarts",
        shard=shard,
        cache_key=_optimizer_key(config, n_samples, epochs),
        nll_offset=offsets,
    )
    val = np.array([_validation_score(r) for r in results])
    # Chosen in float64 on the host: in float32 the NLLs in x's units (offset added) could
    # round two restarts to a tie that the standardised NLLs did not have.
    chosen = np.argmin(val.reshape(n_seeds, n_restarts), axis=1)
    params = _take_restarts(best, jnp.asarray(chosen, jnp.int32))
    summaries = [
        {
            "val_nll": [r.best_val_nll for r in results[i * n_restarts : (i + 1) * n_restarts]],
            "chosen": int(chosen[i]),
        }
        for i in range(n_seeds)
    ]
    return params, summaries


def fit_seeds(
    xs,
    us=None,
    *,
    seeds,
    config: FitConfig | None = None,
    progress: Callable[[ProgressEvent], None] | str | None = "auto",
    shard: bool | None = None,
    where: str = "xs",
    where_u: str = "us",
    **overrides,
) -> list[FittedModel]:
    """Fits one model per seed (each on its own data), all in one vmapped program.

    Args:
      xs: ``S`` observation arrays of one shape ``(N, D)``.
      us: ``None`` or ``S`` auxiliary arrays of one shape (labels ``(N,)`` or covariates
        ``(N, d)``); ignored when ``config.conditional`` is false.
      seeds: ``S`` integer seeds (``config.seed`` is replaced by each).
      config: the settings (default :class:`FitConfig`); ``overrides`` replace its fields.
      progress: ``"auto"`` (default): progress bars and notes (how ``u`` was read, when XLA
        compiles) on stderr when a person is watching (a terminal or a notebook), nothing
        otherwise; ``None``: nothing; or a callable, called with a
        :class:`nica.fitting.training.ProgressEvent` after every epoch.
      shard: shard the seed axis across local devices (``None``: when there are several).
      where, where_u: the names of ``xs`` and ``us`` in error messages (``where[i]`` with
        several seeds; a file path in the CLI).

    Returns:
      ``S`` :class:`FittedModel` s; a diverged one has ``result.diverged`` set and holds its
      best parameters. Seed ``i`` matches ``fit(xs[i], us[i], config=config, seed=seeds[i])``.
      With several :meth:`FitConfig.candidate_depths` (``depth='auto'`` up to 10 sources)
      every depth is fitted in turn on the same split and keys, and each seed keeps the
      depth with the lowest validation NLL (``depth_search`` says which and why).

    Raises:
      ValueError: bad data or settings, or a set-up that cannot identify the sources (a single
        column, one segment, segments of fewer than ``nica.fitting.auxiliary.MIN_SEGMENT_ROWS``
        rows, a validation split of fewer than :data:`MIN_VALIDATION_ROWS` rows choosing among
        restarts or depths). Fewer than ``2D + 1`` segments warns
        (``nica.fitting.auxiliary.IdentifiabilityWarning``).
    """
    with display(progress) as (callback, note):
        return _fit_seeds(xs, us, seeds, config, callback, note, shard, where, where_u, overrides)


def _fit_seeds(xs, us, seeds, config, progress, note, shard, where, where_u, overrides):
    """:func:`fit_seeds` with its display resolved: ``progress`` a callback or None, ``note``
    a function that shows a line to the person watching, or None."""
    config = _resolve(config, overrides)
    if us is None and config.conditional:
        # Without u the fit is Eq. 3: say so, so that ``auto`` resolves to its prior.
        config = dataclasses.replace(config, conditional=False).validate()
    seeds = [int(s) for s in seeds]
    if not seeds or len(xs) != len(seeds) or (us is not None and len(us) != len(seeds)):
        raise ValueError("pass one x (and one u) per seed, and at least one seed")
    names = [where] if len(seeds) == 1 else [f"{where}[{i}]" for i in range(len(seeds))]
    names_u = [where_u] if len(seeds) == 1 else [f"{where_u}[{i}]" for i in range(len(seeds))]
    prepared = [
        _prepare(config, x, None if us is None else us[i], names[i], names_u[i])
        for i, x in enumerate(xs)
    ]
    if len({(p.z.shape, json.dumps(p.aux, sort_keys=True)) for p in prepared}) > 1:
        raise ValueError("all seeds' x must have the same shape and u the same labels/width")
    n_samples, dim = prepared[0].z.shape
    _check_selection(config, n_samples, dim, where)
    if prepared[0].reading is not None and note is not None:
        note(prepared[0].reading.description)
    keys = [_seed_keys(seed, config.restarts) for seed in seeds]
    data = split_runs_data(
        [k[0] for k in keys],
        [p.z for p in prepared],
        [p.u for p in prepared],
        config.validation_fraction,
        jnp.float32,
    )
    depths = config.candidate_depths(dim)
    fits = [  # every depth on the same split and keys; each saved with its depth resolved
        _fit_depth(
            dataclasses.replace(config, depth=d), seeds, prepared, keys, data, progress, shard
        )
        for d in depths
    ]
    if len(fits) == 1:
        return fits[0]
    return [_keep_best_depth(depths, candidates) for candidates in zip(*fits, strict=True)]


def _validation_score(result: FitResult) -> float:
    """A run's best validation NLL, ``inf`` when it diverged (never kept over one that ran)."""
    return np.inf if result.diverged is not None else float(result.best_val_nll)


def _keep_best_depth(depths: tuple[int, ...], candidates: tuple[FittedModel, ...]):
    """One seed's candidate with the lowest validation NLL (the first on a tie, or when all
    diverged), with the comparison in its ``depth_search``."""
    scores = [_validation_score(f.result) for f in candidates]
    chosen = int(np.argmin(scores))
    val_nll = [float(f.result.best_val_nll) for f in candidates]
    search = {"depths": list(depths), "val_nll": val_nll, "chosen": depths[chosen]}
    return dataclasses.replace(candidates[chosen], depth_search=search)


def _fit_depth(config: FitConfig, seeds: list[int], prepared: list, keys, data, progress, shard):
    """:func:`fit_seeds` for a ``config`` of one depth: every seed's restarts and main fit on
    the seeds' ``keys`` (:func:`_seed_keys`) and split ``data``."""
    (n_samples, dim), aux = prepared[0].z.shape, prepared[0].aux
    graphdef, params, rest = _initial_params(config, dim, aux, jnp.stack([k[2] for k in keys]))
    shuffle_keys = jnp.stack([k[1] for k in keys])
    summaries = [None] * len(seeds)
    # NLLs are recorded in nats per sample in the units of x, as log_likelihood reports them.
    offsets = np.array([np.log(p.standardisation.scale).sum() for p in prepared])
    if config.restarts > 1:
        params, summaries = _choose_restarts(
            config,
            (graphdef, params, rest),
            data,
            n_samples,
            shuffle_keys,
            progress,
            shard,
            offsets,
        )
    best, results = train_runs(
        graphdef,
        params,
        rest,
        data,
        shuffle_keys[:, None],
        optimizer=make_optimizer(config, n_samples),
        gradient=config.gradient,
        settings=config.settings(config.epochs, config.patience),
        progress=progress,
        shard=shard,
        cache_key=_optimizer_key(config, n_samples, config.epochs),
        nll_offset=offsets,
    )
    return [
        FittedModel(
            nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i, 0], best), rest),
            dataclasses.replace(config, seed=seed),
            prepared[i].standardisation,
            aux,
            results[i],
            summaries[i],
        )
        for i, seed in enumerate(seeds)
    ]


def fit(
    x,
    u=None,
    *,
    config: FitConfig | None = None,
    progress: Callable[[ProgressEvent], None] | str | None = "auto",
    where: str = "x",
    where_u: str = "u",
    **overrides,
) -> FittedModel:
    """Fits nonlinear ICA by exact maximum likelihood (relative gradient by default).

    Args:
      x: observations, shape ``(N, D)``, ``D >= 2``, finite.
      u: the auxiliary variable of the conditional model (Eq. 4): segment labels (``(N,)``
        integers or strings, an integer ``(N, 1)`` column, or one-hot rows ``(N, M)``) or float
        covariates ``(N, d)`` (:func:`nica.fitting.auxiliary.read_aux`); ``None``: the unconditional
        model (Eq. 3).
      config: the settings (default :class:`FitConfig`, the same defaults as ``nica fit``).
      progress: ``"auto"`` (bars when a person watches), ``None``, or a callable receiving
        each :class:`nica.fitting.training.ProgressEvent` (see :func:`fit_seeds`).
      where, where_u: the names of ``x`` and ``u`` in error messages.
      **overrides: :class:`FitConfig` fields, e.g. ``epochs=100, seed=3``.

    Returns:
      The :class:`FittedModel`, with its :class:`FitResult` in ``result``.

    Raises:
      ValueError: bad data or settings. TrainingDivergedError: the fit diverged.
    """
    config = _resolve(config, overrides)
    (fitted,) = fit_seeds(
        [x],
        None if u is None else [u],
        seeds=[config.seed],
        config=config,
        progress=progress,
        where=where,
        where_u=where_u,
    )
    result = fitted.result
    if result.diverged is not None:
        raise TrainingDivergedError(
            result.diverged, epoch=result.epochs_run, history=result.history
        )
    return fitted
