"""The public estimator: ``nica.fit`` / ``nica.fit_seeds`` on arrays.

One set of defaults (:class:`nica.fitting.config.FitConfig`) serves the library, ``nica fit``
and ``nica run``. A fit validates and standardises ``x`` once where it enters, picks the
conditional model (Eq. 4) when ``u`` is given, initialises every (seed, restart) run in one
vmapped call, trains the restarts briefly, keeps each seed's best restart by validation NLL
(picked on device) and trains it on; where a depth search leaves two depths (up to 10 sources)
it does so for each and keeps each seed's depth with the lower validation NLL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nica.fitting.auxiliary import AuxReading, IdentifiabilityWarning, check_segments, read_aux
from nica.fitting.build import build_model, make_optimizer
from nica.fitting.config import FitConfig
from nica.fitting.data import OutlierWarning, Standardisation, check_observations, standardise
from nica.fitting.fitted import FittedModel
from nica.fitting.runs import train_runs
from nica.fitting.steps import split_runs_data
from nica.fitting.stopping import FitResult, ProgressEvent, TrainingDivergedError
from nica.fitting.warm import embed_params, fit_order, stack_params
from nica.util.progress import display

__all__ = ["MIN_VALIDATION_ROWS", "check_inputs", "checks_said", "fit", "fit_seeds", "seed_keys"]


def _resolve(config: FitConfig | None, overrides: dict) -> FitConfig:
    """``config`` (default :class:`FitConfig`) with the flat ``overrides`` replaced."""
    return (FitConfig() if config is None else config).replace(**overrides)


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
    data = check_observations(x, u if config.model.conditional else None, where=where)
    if data.x.shape[1] < 2:
        raise ValueError(
            f"{where}: x has a single column: with one source there is nothing to unmix (any"
            " increasing map of x is an equally good source); nonlinear ICA needs D >= 2"
        )
    z, standardisation = standardise(data.x, enabled=config.model.standardise, where=where)
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
    config = FitConfig() if config is None else config
    if u is None:
        config = config.replace(conditional=False)
    prepared = _prepare(config, x, u, where, where_u)
    _check_selection(config, *prepared.z.shape, where)
    return prepared.reading


@contextlib.contextmanager
def checks_said():
    """Silences the warnings of :func:`check_inputs` (identifiability, outliers) inside: for
    a fit whose inputs were checked, and the warnings shown, once before it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifiabilityWarning)
        warnings.simplefilter("ignore", OutlierWarning)
        yield


#: Fewest validation rows that may choose among restarts or depths: below it the standard error
#: of the mean validation NLL (the per-sample spread over sqrt(rows), a quarter of that spread
#: or more) exceeds the gaps that separate restarts.
MIN_VALIDATION_ROWS = 20


def _check_selection(config: FitConfig, n_samples: int, dim: int, where: str) -> None:
    """A one-line ValueError when the validation split is too small to choose what the fit
    chooses on it (a restart, a depth)."""
    choices = []
    if config.restarts.count > 1:
        choices.append(f"{config.restarts.count} restarts")
    depths = config.resolve(dim).depths
    if len(depths) > 1:
        choices.append(f"depths {' and '.join(map(str, depths))}")
    fraction = config.loop.validation_fraction
    n_val = int(round(fraction * n_samples))
    if choices and n_val < MIN_VALIDATION_ROWS:
        raise ValueError(
            f"{where}: the validation split has {n_val} rows (validation_fraction"
            f" {fraction} of {n_samples}), fewer than {MIN_VALIDATION_ROWS}:"
            f" too few to choose among {' and '.join(choices)}; set restarts=1 and an integer"
            " depth, or give more rows or a larger validation_fraction"
        )


def seed_keys(seed: int, n_restarts: int):
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
    """Short fits of every seed's ``K`` initialisations; the best one per seed goes on.

    Returns:
      ``(params, summaries, histories)``: the kept restarts' best parameters (leading axes
      ``(S, 1)``); per seed ``{"val_nll": [K best validation NLLs], "chosen": k}``; per seed
      the ``K`` restarts' :attr:`FitResult.history` dicts.
    """
    n_seeds, n_restarts = shuffle_keys.shape[0], config.restarts.count
    epochs = config.resolve().restart_epochs
    best, results = train_runs(
        *model_parts,
        data,
        jax.vmap(lambda k: jax.random.split(k, n_restarts))(shuffle_keys),
        optimizer=make_optimizer(config, n_samples, epochs),
        gradient=config.optimizer.gradient,
        settings=dataclasses.replace(config.loop, epochs=epochs, patience=None),
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
    per_seed = [results[i * n_restarts : (i + 1) * n_restarts] for i in range(n_seeds)]
    summaries = [
        {"val_nll": [r.best_val_nll for r in runs], "chosen": int(chosen[i])}
        for i, runs in enumerate(per_seed)
    ]
    histories = [[r.history for r in runs] for runs in per_seed]
    return params, summaries, histories


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
        ``(N, d)``); ignored when ``config.model.conditional`` is false.
      seeds: ``S`` integer seeds (``config.seed`` is replaced by each).
      config: the settings (default :class:`FitConfig`); ``overrides`` are flat settings
        that replace its own (:meth:`FitConfig.replace`).
      progress: ``"auto"`` (default): progress bars and notes (how ``u`` was read, when XLA
        compiles) on stderr when a person is watching (a terminal or a notebook), nothing
        otherwise; ``None``: nothing; or a callable, called with a
        :class:`nica.ProgressEvent` after every epoch.
      shard: shard the seed axis across local devices (``None``: when there are several).
      where, where_u: the names of ``xs`` and ``us`` in error messages (``where[i]`` with
        several seeds; a file path in the CLI).

    Returns:
      ``S`` :class:`FittedModel` s; a diverged one has ``result.diverged`` set and holds its
      best parameters. Seed ``i`` matches ``fit(xs[i], us[i], config=config, seed=seeds[i])``.
      With several candidate depths (``FitConfig.resolve``; ``depth='auto'`` up to 10 sources)
      every depth is fitted in turn on the same split and keys, and each seed keeps the
      depth with the lowest validation NLL (``depth_search`` says which and why). Each
      model's ``histories`` keeps the training records of the phases that led to it: its
      restarts' short fits and every candidate depth's main fit (:class:`FittedModel`).

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
    if us is None and config.model.conditional:
        # Without u the fit is Eq. 3: say so, so that ``auto`` resolves to its prior.
        config = config.replace(conditional=False)
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
    keys = [seed_keys(seed, config.restarts.count) for seed in seeds]
    data = split_runs_data(
        [k[0] for k in keys],
        [p.z for p in prepared],
        [p.u for p in prepared],
        config.loop.validation_fraction,
        jnp.float32,
    )
    resolved = config.resolve(dim)
    depths, fitted = resolved.depths, {}
    for depth, source in fit_order(resolved.warm_start, depths):
        # Every depth on the same split and keys, started from its source's fits if any;
        # each saved with its depth resolved.
        fitted[depth] = _fit_depth(
            config.replace(depth=depth),
            seeds,
            prepared,
            keys,
            data,
            progress,
            shard,
            None if source is None else fitted[source],
        )
    fits = [fitted[d] for d in depths]
    if len(fits) == 1:
        return fits[0]
    return [
        _with_depth_histories(_keep_best_depth(depths, candidates), candidates)
        for candidates in zip(*fits, strict=True)
    ]


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


def _with_depth_histories(kept: FittedModel, candidates: tuple[FittedModel, ...]) -> FittedModel:
    """``kept`` with every candidate depth's main-fit history in ``histories["depths"]`` (in
    ``depth_search["depths"]`` order)."""
    depths = [f.result.history for f in candidates]
    return dataclasses.replace(kept, histories={**(kept.histories or {}), "depths": depths})


def _fit_depth(
    config: FitConfig,
    seeds: list[int],
    prepared: list,
    keys,
    data,
    progress,
    shard,
    start: list[FittedModel] | None = None,
):
    """:func:`fit_seeds` for a ``config`` of one depth: every seed's restarts and main fit on
    the seeds' ``keys`` (:func:`seed_keys`) and split ``data``. With ``start`` (each seed's
    fit of a shallower depth: the warm start) the main fit starts from it instead
    (``nica.fitting.warm.embed_params``), and the start's restarts and history are recorded."""
    (n_samples, dim), aux = prepared[0].z.shape, prepared[0].aux
    init_keys = jnp.stack([k[2] for k in keys])
    shallow = None if start is None else start[0].config.model.depth
    warm = start is not None and config.model.depth > shallow
    if warm:
        init_keys = init_keys[:, :1]
    graphdef, params, rest = _initial_params(config, dim, aux, init_keys)
    shuffle_keys = jnp.stack([k[1] for k in keys])
    summaries, restart_histories = [None] * len(seeds), [None] * len(seeds)
    # NLLs are recorded in nats per sample in the units of x, as log_likelihood reports them.
    offsets = np.array([np.log(p.standardisation.scale).sum() for p in prepared])
    histories = [{} for _ in seeds]
    if warm:
        params = embed_params(stack_params(f.model for f in start), shallow, params)
        summaries = [f.restarts for f in start]
        histories = [_started_from(f) for f in start]
    elif config.restarts.count > 1:
        params, summaries, restart_histories = _choose_restarts(
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
        gradient=config.optimizer.gradient,
        settings=config.loop,
        progress=progress,
        shard=shard,
        cache_key=_optimizer_key(config, n_samples, config.loop.epochs),
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
            histories=_phase_histories(histories[i], restart_histories[i]),
        )
        for i, seed in enumerate(seeds)
    ]


def _started_from(start: FittedModel) -> dict:
    """The phase histories of a fit warm-started from ``start``: ``start``'s own, with
    ``start``'s main fit as ``"warm_start"`` when ``start`` was the first stage, else appended
    to ``"grown"`` (the intermediate depths of a progressive warm start, shallow first)."""
    phases = dict(start.histories or {})
    if "warm_start" in phases:
        phases["grown"] = [*phases.get("grown", []), start.result.history]
    else:
        phases["warm_start"] = start.result.history
    return phases


def _phase_histories(start: dict, restarts: list | None) -> dict | None:
    """A fit's :attr:`FittedModel.histories` before its depth search: the warm start's
    (``start``) or its own restarts' records; ``None`` when there are none."""
    phases = {**start, **({} if restarts is None else {"restarts": restarts})}
    return phases or None


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
        each :class:`nica.ProgressEvent` (see :func:`fit_seeds`).
      where, where_u: the names of ``x`` and ``u`` in error messages.
      **overrides: flat settings (``nica.fitting.config.FLAT_NAMES``), e.g.
        ``epochs=100, seed=3``, replacing ``config``'s (:meth:`FitConfig.replace`).

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
