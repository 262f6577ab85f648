"""Typed settings of a fit: four parts, each meaning one thing, composed by :class:`FitConfig`.

* :class:`ModelConfig`: what is fitted (depth or :class:`DepthSearch`, activation, prior,
  Eq. 3 or Eq. 4, standardisation);
* :class:`OptimizerConfig`: how a step is taken (learning rate, kernel step scaling, clip,
  gradient mode);
* :class:`LoopConfig`: how long and on what a run is judged (epochs, batches, validation split,
  early stopping, divergence); the one loop type of every trainer;
* :class:`RestartConfig`: the initialisations tried first.

Each part validates itself when it is built (one-line ``ValueError`` naming the setting), so a
config that exists is valid. :meth:`FitConfig.resolve` resolves every ``auto`` for the data.
The flat names of 0.2.0 (``nica fit``'s options, ``nica.fit(x, u, epochs=...)``, the ``fit``
tuples of ``nica run`` configs, saved checkpoints) map to the parts through ``nica.fitting.flat``
(:meth:`FitConfig.from_flat`, :meth:`FitConfig.flat`, :meth:`FitConfig.replace`). Every field,
its default and the reasons are in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, NamedTuple

import optax

from nica.core.activations import Activation, LearnableSpec, MonotoneSplineSpec
from nica.core.conditional import CONDITIONAL_FAMILIES, resolved_shape_init
from nica.core.gradients import DEFAULT_GRADIENT, GradientMode, check_gradient, resolve_gradient
from nica.core.priors import PRIORS
from nica.core.relative import scale_kernel_steps
from nica.fitting.flat import (
    AUTO,
    FAMILY_OF,
    FLAT_NAMES,
    check_setting_names,
    flat_values,
    replace_flat,
)
from nica.fitting.warm import WARM_STARTS
from nica.util.checks import at_least, boolean, integer, non_negative, number, positive

__all__ = [
    "AUTO",
    "AUTO_DEPTH",
    "AUTO_DEPTH_RULE",
    "AUTO_WARM_START_RULE",
    "FLAT_NAMES",
    "TRAINER_LOOP",
    "DepthSearch",
    "FitConfig",
    "LoopConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PriorSpec",
    "Resolved",
    "RestartConfig",
    "check_setting_names",
]

#: ``depth``'s flat value for a :class:`DepthSearch` (``nica fit --depth auto``).
AUTO_DEPTH = AUTO
#: Depths of ``DepthSearch()`` (``auto``): up to :data:`DEEP_ABOVE_DIM` sources each of
#: :data:`SHALLOW_DEPTHS` is fitted and the one with the lowest validation NLL is kept; above,
#: :data:`DEEP_DEPTH`.
SHALLOW_DEPTHS, DEEP_DEPTH, DEEP_ABOVE_DIM = (4, 5), 10, 10
#: The ``auto`` depth rule in words (help texts, reports, and the cell keys of ``nica run``).
AUTO_DEPTH_RULE = (
    f"{' or '.join(map(str, SHALLOW_DEPTHS))} up to {DEEP_ABOVE_DIM} sources (the lower "
    f"validation NLL), {DEEP_DEPTH} above"
)
#: The warm start of ``auto`` (``RestartConfig.warm_start``): a linear fit first above
#: :data:`DEEP_ABOVE_DIM` sources (where the deep demixer is fitted), none up to it.
AUTO_WARM_START_RULE = f"none up to {DEEP_ABOVE_DIM} sources, linear above"
#: The prior family of ``auto``, by whether the model is conditional (Eq. 4) or not (Eq. 3).
AUTO_PRIORS = {True: "gennorm", False: "laplace"}


@dataclasses.dataclass(frozen=True)
class DepthSearch:
    """A depth chosen for the data: ``depth='auto'`` (``DepthSearch()``) follows the number of
    sources (:data:`AUTO_DEPTH_RULE`); ``DepthSearch((4, 5))`` (flat ``depth=[4, 5]``, CLI
    ``--depth 4,5``) fits each of those depths on the same split and keys, and each seed keeps
    the one with the lowest validation NLL (the first on a tie).

    Attributes:
      depths: ``None`` (the rule), or the depths tried, each >= 1, without repeats.
    """

    depths: tuple[int, ...] | None = None

    #: The rule in words.
    rule: ClassVar[str] = AUTO_DEPTH_RULE

    def __post_init__(self):
        if self.depths is None:
            return
        depths = tuple(self.depths)
        if not depths or any(type(d) is not int or d < 1 for d in depths):
            raise ValueError(f"depths to search must be integers >= 1, got {self.depths!r}")
        if len(set(depths)) != len(depths):
            raise ValueError(f"depths to search must differ, got {list(depths)}")
        object.__setattr__(self, "depths", depths)

    def candidates(self, dim: int) -> tuple[int, ...]:
        """The depths tried for ``dim`` sources."""
        if self.depths is not None:
            return self.depths
        return SHALLOW_DEPTHS if dim <= DEEP_ABOVE_DIM else (DEEP_DEPTH,)


@dataclasses.dataclass(frozen=True)
class PriorSpec:
    """The components' prior (validated against the model by :class:`ModelConfig`).

    Attributes:
      family: ``auto`` (:data:`AUTO_PRIORS`: ``gennorm``, whose exponent is learned per
        component between Laplace and Gaussian, for the conditional model; ``laplace`` for the
        unconditional one), or a name of ``nica.core.conditional.CONDITIONAL_FAMILIES``
        (conditional model) or of ``nica.core.priors.PRIORS`` (unconditional).
      shape_init: a conditional ``gennorm`` prior's initial exponent, in (1, 2) (``None``: the
        family's default, the Laplace end).
    """

    family: str = AUTO
    shape_init: float | None = None

    def resolve(self, conditional: bool) -> tuple[str, float | None]:
        """``(family, initial shape)`` of the conditional or unconditional model's prior (shape
        ``None`` for a family without one, and for the unconditional model)."""
        family = AUTO_PRIORS[conditional] if self.family == AUTO else self.family
        return family, (resolved_shape_init(family, self.shape_init) if conditional else None)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What is fitted.

    Attributes:
      depth: square layers of the demixer (>= 1), or :class:`DepthSearch` (``"auto"`` and a
        list of depths are read as one).
      activation: the demixer's activation: a static activation of
        ``nica.core.activations`` (shared by every hidden layer, e.g.
        ``SmoothLeakyReLU(slope=5.0, sharpness=10.0)``) or a learnable one's spec (one module
        per hidden layer: ``MonotoneSplineSpec()``, the default, presupposes no mixing
        nonlinearity; ``MonotoneMixtureSpec()`` is smoother and costlier).
      prior: the components' :class:`PriorSpec`.
      conditional: use ``u`` (Eq. 4) when it is given; ``False`` fits Eq. 3 and ignores ``u``.
      standardise: centre and scale each column of ``x`` before the demixer.
    """

    depth: int | DepthSearch = DepthSearch()
    activation: Activation | LearnableSpec = MonotoneSplineSpec()
    prior: PriorSpec = PriorSpec()
    conditional: bool = True
    standardise: bool = True

    def __post_init__(self):
        if self.depth == AUTO:
            object.__setattr__(self, "depth", DepthSearch())
        elif isinstance(self.depth, list | tuple):
            object.__setattr__(self, "depth", DepthSearch(tuple(self.depth)))
        if not isinstance(self.depth, DepthSearch | int) or isinstance(self.depth, bool):
            raise ValueError(
                f"depth must be 'auto', an integer >= 1 or a list of them, got {self.depth!r}"
            )
        if not isinstance(self.depth, DepthSearch) and self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if type(self.activation) not in FAMILY_OF:
            raise ValueError(
                f"activation must be one of {', '.join(c.__name__ for c in FAMILY_OF)}, got "
                f"{self.activation!r}"
            )
        if not isinstance(self.prior, PriorSpec):
            raise ValueError(f"prior must be a PriorSpec, got {self.prior!r}")
        boolean(conditional=self.conditional, standardise=self.standardise)
        number(optional=("prior_shape_init",), prior_shape_init=self.prior.shape_init)
        known = CONDITIONAL_FAMILIES if self.conditional else PRIORS
        if self.prior.family != AUTO and self.prior.family not in known:
            kind = "conditional" if self.conditional else "unconditional"
            raise ValueError(
                f"unknown {kind} prior {self.prior.family!r}; known: auto, {', '.join(known)}"
            )
        if not self.conditional and self.prior.shape_init is not None:
            raise ValueError("prior_shape_init is for the conditional model's gennorm prior")
        self.prior.resolve(self.conditional)  # the shape's range, for a family with one


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """How a step is taken: gradient clip, Adam with a cosine-decayed rate, kernel steps scaled
    with the dimension (:meth:`transformation`).

    Attributes:
      learning_rate: peak learning rate (> 0), cosine-decayed to 0 over the phase's epochs.
      lr_reference_dim: above this dimension ``D`` the square kernels' updates are scaled by
        ``lr_reference_dim / D`` (``nica.core.relative.scale_kernel_steps``): Adam moves every
        entry of a ``D x D`` update by about the rate, so an unscaled layer step grows like
        ``lr D``. ``None``: the same rate at every ``D``; at ``D <= lr_reference_dim`` the
        step is exactly the unscaled one.
      clip_norm: global gradient-norm clip (> 0; O(parameters), keeps the step O(L B D^2)).
      gradient: ``auto`` or a mode name of ``nica.GRADIENTS``; ``auto`` is ``relative_coords``
        while ``D <= batch_size`` and ``relative_pooled`` above, so the step stays O(L B D^2)
        (``nica.core.gradients.resolve_gradient``).
    """

    learning_rate: float = 1e-2
    lr_reference_dim: int | None = 10
    clip_norm: float = 10.0
    gradient: str = DEFAULT_GRADIENT

    def __post_init__(self):
        check_gradient(self.gradient)
        positive(learning_rate=self.learning_rate, clip_norm=self.clip_norm)
        at_least(1, optional=("lr_reference_dim",), lr_reference_dim=self.lr_reference_dim)

    def transformation(self, steps: int, base=optax.adam) -> optax.GradientTransformation:
        """Gradient clipping + ``base`` (default Adam) at the learning rate cosine-decayed to 0
        over ``steps`` optimizer steps + kernel step scaling above ``lr_reference_dim``."""
        return optax.chain(
            optax.clip_by_global_norm(self.clip_norm),
            base(optax.cosine_decay_schedule(self.learning_rate, steps)),
            scale_kernel_steps(self.lr_reference_dim),
        )


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The training loop of every run of a batch (a fit's phases and the low-level trainers).

    Attributes:
      epochs: maximum passes over the training split (>= 1).
      batch_size: minibatch size (>= 1; capped at the training split's size).
      validation_fraction: share of samples held out for the exact validation NLL, in [0, 1);
        with 0 the training data is used for evaluation.
      patience: stop a run after this many evaluations without improvement (``None``: never).
      eval_every: epochs between exact evaluations (>= 1; the last epoch is always evaluated).
      min_delta: improvement below this (>= 0) does not count for early stopping.
      explode_nats: divergence if the validation NLL rises more than this many nats per
        dimension above both the initial and the best one (``None``: only non-finite values).
    """

    epochs: int = 300
    batch_size: int = 256
    validation_fraction: float = 0.1
    patience: int | None = None
    eval_every: int = 10
    min_delta: float = 0.0
    explode_nats: float | None = 50.0

    def __post_init__(self):
        at_least(1, epochs=self.epochs, batch_size=self.batch_size, eval_every=self.eval_every)
        at_least(0, optional=("patience",), patience=self.patience)
        non_negative(min_delta=self.min_delta, validation_fraction=self.validation_fraction)
        if not self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction={self.validation_fraction} must be in [0, 1)")
        if self.explode_nats is not None:
            positive(explode_nats=self.explode_nats)


#: The low-level trainers' loop (``nica.train``, ``nica.train_seeds``): short, small batches,
#: evaluated every epoch.
TRAINER_LOOP = LoopConfig(epochs=100, batch_size=100, eval_every=1)


@dataclasses.dataclass(frozen=True)
class RestartConfig:
    """How each seed's fit starts: initialisations tried first, all at once (vmapped), each for
    a short fit, the one with the lowest validation NLL trained on; and an optional warm start.
    The true sources are never used.

    Attributes:
      count: initialisations per seed (>= 1; 1 = a single initialisation).
      epochs: each one's short fit (>= 1; ``None``: a twelfth of the loop's epochs, at least
        1: a short annealed fit already separates good initialisations from poor ones).
      warm_start: ``"auto"`` (:data:`AUTO_WARM_START_RULE`) or a name of
        ``nica.fitting.warm.WARM_STARTS``: ``"linear"`` fits each seed's linear model first
        (depth 1, with the ``count`` initialisations) and starts every deeper demixer from it
        (``nica.fitting.warm.embed_params``: first layer and prior from the linear model, the
        other layers at the identity), one initialisation each; ``"progressive"`` fits the
        linear model first too, then every depth from 2 up to the deepest candidate, each
        started from the one below it (each a full fit: costlier); ``"none"`` starts every
        depth from its own ``count`` random initialisations.
    """

    count: int = 8
    epochs: int | None = None
    warm_start: str = AUTO

    def __post_init__(self):
        at_least(1, optional=("restart_epochs",), restarts=self.count, restart_epochs=self.epochs)
        if self.warm_start != AUTO and self.warm_start not in WARM_STARTS:
            raise ValueError(
                f"unknown warm_start {self.warm_start!r}; known: auto, {', '.join(WARM_STARTS)}"
            )

    def resolve(self, dim: int | None) -> str | None:
        """The warm start's name for ``dim`` sources (``None`` for ``auto`` without ``dim``)."""
        if self.warm_start != AUTO:
            return self.warm_start
        return None if dim is None else ("linear" if dim > DEEP_ABOVE_DIM else "none")


class Resolved(NamedTuple):
    """What a config's ``auto`` settings become for given data (:meth:`FitConfig.resolve`).

    Attributes:
      depths: the demixer depths fitted (several for a search among depths); ``None`` for
        ``auto`` without ``dim``.
      prior_family: the prior's family name.
      prior_shape_init: the conditional prior's initial shape (``None`` for a family without
        one, or the unconditional model).
      restart_epochs: each restart's epochs.
      gradient: the gradient mode of the main fit (``None`` without ``dim`` and
        ``n_samples``).
      warm_start: the warm start's name (``nica.fitting.warm.WARM_STARTS``; ``None`` for
        ``auto`` without ``dim``).
    """

    depths: tuple[int, ...] | None
    prior_family: str
    prior_shape_init: float | None
    restart_epochs: int
    gradient: GradientMode | None
    warm_start: str | None = None


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Every setting of a fit; the defaults are the ones tuned on the published benchmarks.

    Attributes:
      seed: PRNG seed of initialisation, validation split and shuffling.
      model: what is fitted (:class:`ModelConfig`).
      optimizer: how a step is taken (:class:`OptimizerConfig`).
      loop: epochs, batches, validation and stopping of the main fit (:class:`LoopConfig`).
      restarts: the initialisations tried first (:class:`RestartConfig`).
    """

    seed: int = 0
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    loop: LoopConfig = LoopConfig()
    restarts: RestartConfig = RestartConfig()

    def __post_init__(self):
        integer(seed=self.seed)
        for name, kind in _PARTS.items():
            if not isinstance(getattr(self, name), kind):
                raise ValueError(
                    f"{name} must be a {kind.__name__}, got {getattr(self, name)!r}; flat "
                    "settings go through FitConfig.from_flat"
                )

    def validate(self) -> FitConfig:
        """Returns self: every part validated itself when it was built."""
        return self

    def resolve(self, dim: int | None = None, n_samples: int | None = None) -> Resolved:
        """Every ``auto`` resolved, for data of ``dim`` columns and ``n_samples`` rows (what
        needs them is ``None`` without them).

        The gradient mode is resolved with the batch the trainer uses: ``batch_size`` capped
        at the training split.
        """
        depth = self.model.depth
        if isinstance(depth, DepthSearch):
            depths = None if dim is None else depth.candidates(dim)
        else:
            depths = (depth,)
        family, shape = self.model.prior.resolve(self.model.conditional)
        gradient = None
        if dim is not None and n_samples is not None:
            n_val = int(round(self.loop.validation_fraction * n_samples))  # as the split
            batch = min(self.loop.batch_size, max(1, n_samples - n_val))
            gradient = resolve_gradient(self.optimizer.gradient, dim, batch)
        restart_epochs = self.restarts.epochs or max(1, self.loop.epochs // 12)
        warm_start = self.restarts.resolve(dim)
        return Resolved(depths, family, shape, restart_epochs, gradient, warm_start)

    @classmethod
    def from_flat(cls, settings: Mapping[str, object]) -> FitConfig:
        """The config of flat settings (:data:`FLAT_NAMES`; the others at their defaults)."""
        return replace_flat(cls(), settings)

    def flat(self) -> dict:
        """The value of every flat name (:data:`FLAT_NAMES`, in that order); the activation
        settings of another family than the config's are at their flat defaults."""
        return flat_values(self)

    def replace(self, **settings) -> FitConfig:
        """This config with flat settings replaced (a one-line ``ValueError`` for an unknown
        name, listing the known ones, or a bad value). The activation's flat settings are read
        together with the current activation's (settings of another family are ignored)."""
        return replace_flat(self, settings)

    def to_dict(self) -> dict:
        """The flat settings (:meth:`flat`; the loop's ``min_delta`` and ``explode_nats`` too
        when not at their defaults) plus the resolved ``prior_family``,
        ``resolved_restart_epochs``, ``resolved_prior_shape_init`` (when there is one) and, for
        ``depth='auto'`` and ``warm_start='auto'``, ``depth_rule`` and ``warm_start_rule``.
        JSON-ready; ``nica run``'s cell keys hash it, so a changed rule is never mistaken for a
        finished cell."""
        resolved = self.resolve()
        extras = {
            name: getattr(self.loop, name)
            for name in _LOOP_EXTRAS
            if getattr(self.loop, name) != getattr(LoopConfig, name)
        }
        rule = self.model.depth == DepthSearch()
        warm_rule = self.restarts.warm_start == AUTO
        shape = resolved.prior_shape_init
        return {
            **self.flat(),
            **extras,
            "prior_family": resolved.prior_family,
            "resolved_restart_epochs": resolved.restart_epochs,
            **({"depth_rule": AUTO_DEPTH_RULE} if rule else {}),
            **({"warm_start_rule": AUTO_WARM_START_RULE} if warm_rule else {}),
            **({} if shape is None else {"resolved_prior_shape_init": shape}),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, object]) -> FitConfig:
        """Inverse of :meth:`to_dict`; reads the flat records of 0.2.0 too (other keys, such as
        the resolved ones, are ignored)."""
        config = cls.from_flat({k: v for k, v in record.items() if k in FLAT_NAMES})
        extras = {k: record[k] for k in _LOOP_EXTRAS if k in record}
        return dataclasses.replace(config, loop=dataclasses.replace(config.loop, **extras))


_PARTS = {
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "loop": LoopConfig,
    "restarts": RestartConfig,
}

#: Loop settings without a flat name, recorded by ``to_dict`` when not at their defaults.
_LOOP_EXTRAS = ("min_delta", "explode_nats")
