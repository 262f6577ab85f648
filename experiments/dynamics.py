"""Training dynamics of the relative versus the ordinary gradient (the paper's Fig. 1, right).

Problem (``--mixing teacher``, the default): a 2-D nonlinear ICA model whose optimum is
well defined. Laplace sources ``s`` are pushed through the exact inverse of a random *teacher*
demixer with the student's own architecture (2 square layers, smooth leaky ReLU with slope 0.2
between them; both matrices from ``synthetic``'s well-conditioned ``random_matrix``), and the
observations are standardised (an affine map, absorbed by the first layer). The model class
therefore contains the truth at finite weights, and the teacher's exact NLL on the training data
is a reference the maximum-likelihood fit should reach (slightly undercut: it is fitted to the
sample).

``--mixing leaky_relu`` is the earlier problem: an exact (kinked) leaky-ReLU MLP mixing
(``random_mixing``, iVAE convention). A smooth demixer can only approach its inverse by sharpening
its kinks, i.e. by letting the first layer's weights grow without bound, so the NLL has no finite
minimiser and keeps creeping down: its "final NLL" measures how far a run has travelled along
that valley, not where it converged, and is not a fair basis for the comparison.

A 2-layer ``DemixingNetwork`` with a Laplace prior is trained full-batch (one optimizer step per
epoch on all ``N`` points) from the *same* 10 initialisations with each gradient mode, with Adam
and with plain SGD (no adaptive scaling):

* ``relative``: the relative gradient of MATH.md with biases in augmented form
  (``What What^T G``), fed to the optimizer like any gradient;
* ``relative_coords``: the optimizer runs in relative coordinates (``nica.core.relative``): it sees
  ``W^T G_W`` for each kernel and ``G_b`` for each bias, and its kernel update ``U`` is applied
  as ``W <- W (I + U)``. Under plain SGD this is exactly ``W <- W - lr W W^T G_W`` with an
  ordinary bias step;
* ``relative_pooled``: the optimizer sees ``W W^T G_W`` for each kernel and ``G_b`` for each
  bias and steps in ``W``, with Adam's second moment pooled over each kernel (one scalar per
  matrix, ``nica.core.pooling``). Under plain SGD it is the same step as ``relative_coords``;
* ``ordinary``: autodiff through ``slogdet`` (the reference).

The exact training NLL (``slogdet``) is recorded at every epoch; all runs of one setting run at
once under ``vmap``.

Learning rates: tuned *per optimizer and per gradient by the same rule*, because the relative
gradient is a different preconditioning (its step scales with ``W W^T``) and one shared rate
favours one of the two. For each pair, every rate in ``LR_GRIDS`` is run with the full epoch
budget from 5 *tuning* initialisations (seeds 100-104, disjoint from the reported seeds 0-9) and
the rate with the lowest mean final NLL on them is kept (a diverged run counts as +inf); the
reported seeds run at every rate in the same ``vmap`` call, so ``dynamics.md`` also compares the
two gradients at each shared rate. The schedule is a
cosine decay to 5% of the peak over the budget, so runs settle at the end. Convergence is checked
by the norm of the exact NLL's gradient at the end and the NLL change over the last 10% of epochs.

How the two gradients are compared (``dynamics.md``): the final NLLs of the 10 shared
initialisations are compared *unpaired* (gap of the means, of the medians and of the best run)
and *paired* (per initialisation); since a non-convex problem has several basins, we also count
the runs that reach the global basin (final NLL within 1% of the best NLL of any run) and give the
largest paired gap among the initialisations where both gradients reach it.

Command::

    .venv/bin/python experiments/dynamics.py --out results/dynamics

What it shows (default command; numbers in ``results/dynamics/dynamics.md``): every run that
reaches the global basin ends at the same NLL with any gradient (about 2.1335, just under the
generating model's 2.1351). About 4 of the 10 initialisations fall into a spurious basin. There
the ordinary gradient settles at a finite local minimum (NLL about 2.23-2.27), and so does
``relative_coords``: its final NLLs are within 1% of the ordinary gradient's for every
initialisation, with Adam and with SGD (gap of the means 0.03% for both), and at every rate of
the grid. So does ``relative_pooled`` (Adam: gap of the means 0.000%, 10/10 initialisations
within 1%; at the two smaller rates of the grid 0.4%, 8/10; SGD: its step is
``relative_coords``'s, 0.03%). The augmented ``relative`` mode does not settle there: its bias
metric ``(1 + b b^T)`` and the ``W b^T`` coupling slow it down (SGD: mean gap 1.0%), and Adam's
elementwise scaling of ``W W^T G_W`` makes it drift and, at the larger rates, go unstable (Adam:
mean gap 2.9-5.3% across runs). Treating the bias by its ordinary gradient alone fixes the SGD
gap; running Adam in relative coordinates, or pooling its second moment per matrix, fixes the
Adam one.

Writes ``dynamics.json`` (settings, tuning results, summary, per-run NLL curves every
``--record-every`` epochs), ``dynamics.md`` (final-NLL and gap tables) and ``dynamics.png`` (NLL
vs epoch, every run thin, the median thick). ``--smoke`` runs 2 initialisations (2 for tuning),
200 points and 20 epochs (for the tests).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file

from experiments import harness
from nica import GRADIENTS, DemixingNetwork, ICAModel, make_prior
from nica.fitting.training import make_epoch_fn, make_nll_fn
from synthetic.mixing import random_matrix, random_mixing

#: The gradient modes trained (names in the registry ``nica.GRADIENTS``).
MODES = harness.COMPARED_GRADIENTS
#: The relative-gradient modes, each compared with ``ordinary``.
RELATIVE_MODES = tuple(name for name in MODES if GRADIENTS[name].relative)
OPTIMIZERS = ("adam", "sgd")
LR_GRIDS = {"adam": (3e-3, 1e-2, 3e-2), "sgd": (1e-2, 3e-2, 1e-1)}
MIXINGS = ("teacher", "leaky_relu")
ACTIVATION, SLOPE = "smooth_leaky_relu", 0.2
#: A run has reached the global basin when its final NLL is within this of the best run's.
BASIN_TOLERANCE = 0.01


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


def full_batch_optimizer(name: str, epochs: int, learning_rate) -> optax.GradientTransformation:
    """``optax.adam`` or ``optax.sgd``, learning rate cosine-decayed to 5% over ``epochs`` steps.

    Not ``nica.fitting.estimator.make_optimizer``: no gradient clipping (the comparison is of
    the raw steps), and the rate decays to 5% of its peak instead of 0, so that the runs settle but
    keep moving. ``learning_rate`` may be a traced scalar (this is called inside ``vmap``).
    """
    schedule = optax.cosine_decay_schedule(learning_rate, epochs, alpha=0.05)
    return {"adam": optax.adam, "sgd": optax.sgd}[name](schedule)


def train_runs(
    key: jax.Array,
    x: jax.Array,
    *,
    seeds: Sequence[int],
    learning_rates: Sequence[float],
    gradient: str,
    optimizer: str,
    epochs: int,
    record_every: int = 1,
    depth: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch training of several runs at once under ``vmap``; exact NLL along the way.

    Args:
      key: PRNG key for the (irrelevant, full-batch) shuffles; the same for every run.
      x: training data, shape ``(N, 2)``.
      seeds: one ``nnx.Rngs`` initialisation seed per run.
      learning_rates: one peak learning rate per run (same length as ``seeds``).
      gradient: one of :data:`MODES`.
      optimizer: ``"adam"`` or ``"sgd"``.
      epochs: number of full-batch steps.
      record_every: keep the NLL every this many epochs (and at the first and last).
      depth: number of layers of the demixer.

    Returns:
      ``(curves, grad_norms)``: exact mean training NLL of shape ``(runs, points)`` at epochs
      :func:`recorded_epochs` (``nan`` from the first non-finite step of a run on), and the
      global norm of the exact NLL's (ordinary) gradient at the end, shape ``(runs,)``.
    """
    if len(seeds) != len(learning_rates):
        raise ValueError("give one learning rate per seed")
    states = []
    for seed in seeds:
        graphdef, params, rest = nnx.split(make_model(seed, depth=depth), nnx.Param, ...)
        states.append(params)
    params = jax.tree.map(lambda *p: jnp.stack(p), *states)
    nll_fn = make_nll_fn(graphdef, rest)
    keep = jnp.asarray(recorded_epochs(epochs, record_every)[1:] - 1)

    def one_run(params, lr):
        opt = full_batch_optimizer(optimizer, epochs, lr)
        epoch_fn = make_epoch_fn(graphdef, rest, opt, gradient=gradient, batch_size=x.shape[0])

        def body(carry, epoch_key):
            params, opt_state, ok = carry
            params, opt_state, _, finite = epoch_fn(params, opt_state, epoch_key, x, None)
            nll = nll_fn(params, x, None)
            ok = ok & finite & jnp.isfinite(nll)
            return (params, opt_state, ok), jnp.where(ok, nll, jnp.nan)

        keys = jax.random.split(key, epochs)
        carry = (params, opt.init(params), jnp.array(True))
        (final, _, ok), nlls = jax.lax.scan(body, carry, keys)
        grad_norm = optax.tree.norm(jax.grad(nll_fn)(final, x, None))
        curve = jnp.concatenate([nll_fn(params, x, None)[None], nlls[keep]])
        return curve, jnp.where(ok, grad_norm, jnp.nan)

    lrs = jnp.asarray(learning_rates, jnp.float32)
    curves, grad_norms = jax.jit(jax.vmap(one_run))(params, lrs)
    return np.asarray(curves), np.asarray(grad_norms)


def recorded_epochs(epochs: int, record_every: int) -> np.ndarray:
    """Epochs at which :func:`train_runs` keeps the NLL: 0, every ``record_every``, the last,
    and 50 log-spaced ones (so a log-scale epoch axis shows the start)."""
    log_spaced = np.geomspace(1, epochs, 50).round().astype(int)
    return np.unique(np.r_[np.arange(0, epochs, record_every), log_spaced, epochs])


def run_pair(
    key: jax.Array,
    x: jax.Array,
    *,
    optimizer: str,
    gradient: str,
    epochs: int,
    seeds: Sequence[int],
    tuning_seeds: Sequence[int],
    record_every: int,
) -> dict:
    """Runs every rate of ``LR_GRIDS[optimizer]`` from the tuning and the reported seeds at once.

    The rate with the lowest mean final NLL over ``tuning_seeds`` (a diverged run counts as
    +inf) is chosen; the reported runs are those from ``seeds`` at that rate.

    Returns:
      A dict: ``learning_rate`` (the chosen one), ``tuning`` (rate -> mean final NLL on the
      tuning seeds), ``grid_finals`` (rate -> final NLL per reported seed), ``curves``
      (``(len(seeds), points)``) and ``grad_norms`` (``(len(seeds),)``) at the chosen rate.
    """
    grid, all_seeds, n_tune = LR_GRIDS[optimizer], [*tuning_seeds, *seeds], len(tuning_seeds)
    curves, grad_norms = train_runs(
        key,
        x,
        seeds=all_seeds * len(grid),
        learning_rates=[lr for lr in grid for _ in all_seeds],
        gradient=gradient,
        optimizer=optimizer,
        epochs=epochs,
        record_every=record_every,
    )
    curves = curves.reshape(len(grid), len(all_seeds), -1)
    grad_norms = grad_norms.reshape(len(grid), len(all_seeds))
    tune = curves[:, :n_tune, -1]
    scores = np.where(np.isfinite(tune), tune, np.inf).mean(axis=1)
    best = int(np.argmin(scores))
    return {
        "learning_rate": float(grid[best]),
        "tuning": {f"{lr:g}": float(v) for lr, v in zip(grid, scores, strict=True)},
        "grid_finals": {f"{lr:g}": c[n_tune:, -1] for lr, c in zip(grid, curves, strict=True)},
        "curves": curves[best, n_tune:],
        "grad_norms": grad_norms[best, n_tune:],
    }


def run_all(
    *,
    data_seed: int,
    n: int,
    mixing: str,
    n_inits: int,
    tuning_seeds: Sequence[int],
    epochs: dict[str, int],
    record_every: int,
) -> dict:
    """Every (optimizer, gradient) pair on one problem and shared initialisations.

    Returns:
      A dict with ``reference_nll`` and, indexed ``[opt][grad]``, the :func:`run_pair` fields
      ``learning_rates``, ``tuning``, ``grid_finals``, ``curves`` (``(n_inits, points)``) and
      ``grad_norms`` (``(n_inits,)``); ``epochs_recorded[opt]``.
    """
    x_np, reference = make_problem(data_seed, n, mixing=mixing)
    x = jnp.asarray(x_np)
    key = jax.random.key(data_seed)
    fields = ("learning_rate", "tuning", "grid_finals", "curves", "grad_norms")
    names = ("learning_rates", "tuning", "grid_finals", "curves", "grad_norms")
    out: dict = {"reference_nll": reference, "epochs_recorded": {}}
    out.update({name: {} for name in names})
    for opt in epochs:
        out["epochs_recorded"][opt] = recorded_epochs(epochs[opt], record_every)
        for name in names:
            out[name][opt] = {}
        for g in MODES:
            pair = run_pair(
                key,
                x,
                optimizer=opt,
                gradient=g,
                epochs=epochs[opt],
                seeds=range(n_inits),
                tuning_seeds=tuning_seeds,
                record_every=record_every,
            )
            for name, field in zip(names, fields, strict=True):
                out[name][opt][g] = pair[field]
    return out


def _gap(a: float, b: float) -> float:
    """Relative gap ``|a - b| / |b|``."""
    return abs(a - b) / abs(b)


def _nan_stats(finals: np.ndarray) -> dict:
    """Mean, median and minimum of the finite final NLLs (``nan`` if none is finite)."""
    ok = np.isfinite(finals)
    pick = lambda f: float(f(finals[ok])) if ok.any() else float("nan")  # noqa: E731
    return {"mean": pick(np.mean), "median": pick(np.median), "min": pick(np.min)}


def _final_row(result, opt, g, curves, basin, stats) -> dict:
    """One (optimizer, gradient) row: final NLL statistics and convergence indicators."""
    epochs = result["epochs_recorded"][opt]
    tail = int(np.searchsorted(epochs, 0.9 * epochs[-1]))
    f = curves[:, -1]
    ok = np.isfinite(f)
    return {
        "optimizer": opt,
        "gradient": g,
        "learning_rate": result["learning_rates"][opt][g],
        "epochs": int(epochs[-1]),
        "initial_nll": float(np.mean(curves[:, 0])),
        "final_nll_mean": stats["mean"],
        "final_nll_std": float(np.std(f[ok])) if ok.any() else float("nan"),
        "final_nll_median": stats["median"],
        "final_nll_min": stats["min"],
        "in_global_basin": int(np.sum(basin)),
        "diverged": int(np.sum(~ok)),
        "inits": int(f.size),
        "grad_norm_median": float(np.nanmedian(result["grad_norms"][opt][g])),
        "last_10pct_change_max": float(np.nanmax(np.abs(curves[:, -1] - curves[:, tail]))),
    }


def _gap_row(opt, mode, finals, stats, basin) -> dict:
    """A relative mode against ``ordinary`` for one optimizer (tuned rates)."""
    rel, ordi = stats[mode], stats["ordinary"]
    paired = np.abs(finals[mode] - finals["ordinary"]) / np.abs(finals["ordinary"])
    both = basin[mode] & basin["ordinary"]
    return {
        "optimizer": opt,
        "gradient": mode,
        "mean_gap": _gap(rel["mean"], ordi["mean"]),
        "median_gap": _gap(rel["median"], ordi["median"]),
        "best_gap": _gap(rel["min"], ordi["min"]),
        "paired_gap_median": float(np.median(paired)),
        "paired_within_1pct": int(np.sum(paired < 0.01)),
        "same_basin": int(np.sum(basin[mode] == basin["ordinary"])),
        "both_in_global_basin": int(np.sum(both)),
        "paired_gap_max_both_global": float(np.max(paired[both])) if both.any() else None,
        "inits": int(paired.size),
    }


def _shared_rows(result: dict) -> list[dict]:
    """Each relative mode against ``ordinary`` at every shared rate of the grid."""
    shared = []
    for opt, by_grad in result["grid_finals"].items():
        for mode in RELATIVE_MODES:
            for lr in by_grad[mode]:
                rel, ordi = by_grad[mode][lr], by_grad["ordinary"][lr]
                paired = np.abs(rel - ordi) / np.abs(ordi)
                shared.append(
                    {
                        "optimizer": opt,
                        "gradient": mode,
                        "learning_rate": float(lr),
                        "relative_mean": float(np.mean(rel)),
                        "ordinary_mean": float(np.mean(ordi)),
                        "mean_gap": _gap(float(np.mean(rel)), float(np.mean(ordi))),
                        "paired_within_1pct": int(np.sum(paired < 0.01)),
                        "inits": int(paired.size),
                    }
                )
    return shared


def summarise(result: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """Final-NLL rows per (optimizer, gradient), gap rows per optimizer, shared-rate rows.

    Gap and shared-rate rows compare each mode of :data:`RELATIVE_MODES` with ``ordinary``; the
    shared-rate rows do so at every rate of the grid (same rate for both, reported
    initialisations): mean final NLLs, their gap and the paired count < 1%.

    A diverged run has a ``nan`` final NLL; means, medians and minima skip it (and it is
    counted), a paired gap with it is ``nan``.
    """
    finals_all = [c[:, -1] for by in result["curves"].values() for c in by.values()]
    best = float(np.nanmin(np.concatenate(finals_all)))
    rows, gaps = [], []
    for opt, by_grad in result["curves"].items():
        finals = {g: by_grad[g][:, -1] for g in MODES}
        basin = {g: finals[g] <= best * (1 + BASIN_TOLERANCE) for g in MODES}
        stats = {g: _nan_stats(finals[g]) for g in MODES}
        rows += [_final_row(result, opt, g, by_grad[g], basin[g], stats[g]) for g in MODES]
        gaps += [_gap_row(opt, mode, finals, stats, basin) for mode in RELATIVE_MODES]
    return rows, gaps, _shared_rows(result)


def to_markdown(
    rows: Sequence[dict], gaps: Sequence[dict], shared: Sequence[dict], *, result: dict, args
) -> str:
    """Formats :func:`summarise` output as Markdown: final NLLs, gaps, shared-rate gaps."""
    problem = {
        "teacher": "inverse of a random 2-layer smooth-leaky-ReLU teacher (model class "
        "contains the truth)",
        "leaky_relu": "2-layer leaky-ReLU MLP mixing (no finite optimum for a smooth demixer)",
    }[args.mixing]
    finals = harness.markdown_table(SUMMARY_COLUMNS, [_summary_cells(r) for r in rows])
    gap_table = harness.markdown_table(GAP_COLUMNS, [_gap_cells(r) for r in gaps])
    shared_table = harness.markdown_table(SHARED_COLUMNS, [_shared_cells(r) for r in shared])
    return harness.markdown_document(
        "Full-batch training dynamics: relative vs ordinary gradient",
        f"2-D Laplace sources, {problem}, N = {args.n} (full batch), {rows[0]['inits']} shared "
        f"initialisations (seeds 0-{rows[0]['inits'] - 1}); exact training NLL in nats per "
        f"sample. NLL of the generating model on this sample: {result['reference_nll']:.4f}.",
        "Learning rate: tuned separately for each optimizer and gradient by the same rule (grid "
        f"{', '.join(f'{o} {list(LR_GRIDS[o])}' for o in OPTIMIZERS)}; lowest mean final NLL "
        f"from {len(args.tuning_seeds)} tuning initialisations, seeds "
        f"{args.tuning_seeds[0]}-{args.tuning_seeds[-1]}, with the same epoch budget), peak "
        "of a cosine decay to 5%. Global basin: final NLL within "
        f"{100 * BASIN_TOLERANCE:g}% of the best run. |grad|: norm of the exact NLL's gradient "
        "at the end (median); last-10% change: largest NLL change of a run over the last 10% "
        "of epochs.",
        finals,
        "Each relative mode vs ordinary, gaps as |relative - ordinary| / |ordinary|. Unpaired: "
        "of the means, medians and best runs over initialisations. Paired: per shared "
        "initialisation.",
        gap_table,
        "Check of the tuning: each relative mode and ordinary at the *same* rate, every rate of "
        "the grid, reported initialisations (nan: some run diverged).",
        shared_table,
    )


SUMMARY_COLUMNS = (
    "optimizer|gradient|lr|epochs|initial NLL|final NLL (mean +- std)|median|best"
    "|in global basin|diverged|median grad|last-10% change"
).split("|")
GAP_COLUMNS = (
    "optimizer|relative mode|mean gap|median gap|best-run gap|paired gap (median)"
    "|paired gap < 1%|same basin|both in global basin|max paired gap, both global"
).split("|")
SHARED_COLUMNS = (
    "optimizer|relative mode|shared lr|relative mean final NLL"
    "|ordinary mean final NLL|mean gap|paired gap < 1%"
).split("|")


def _summary_cells(r: dict) -> tuple:
    """One row of the final-NLL table."""
    n = r["inits"]
    return (
        r["optimizer"],
        r["gradient"],
        f"{r['learning_rate']:g}",
        r["epochs"],
        f"{r['initial_nll']:.4f}",
        f"{r['final_nll_mean']:.4f} +- {r['final_nll_std']:.4f}",
        f"{r['final_nll_median']:.4f}",
        f"{r['final_nll_min']:.4f}",
        f"{r['in_global_basin']}/{n}",
        f"{r['diverged']}/{n}",
        f"{r['grad_norm_median']:.2g}",
        f"{r['last_10pct_change_max']:.2g}",
    )


def _gap_cells(r: dict) -> tuple:
    """One row of the gap table (percentages, counts out of the initialisations)."""
    n, both_max = r["inits"], r["paired_gap_max_both_global"]
    percent = (r[k] for k in ("mean_gap", "median_gap", "best_gap", "paired_gap_median"))
    return (
        r["optimizer"],
        r["gradient"],
        *(f"{100 * v:.3f}%" for v in percent),
        f"{r['paired_within_1pct']}/{n}",
        f"{r['same_basin']}/{n}",
        f"{r['both_in_global_basin']}/{n}",
        "-" if both_max is None else f"{100 * both_max:.3f}%",
    )


def _shared_cells(r: dict) -> tuple:
    """One row of the shared-rate table."""
    return (
        r["optimizer"],
        r["gradient"],
        f"{r['learning_rate']:g}",
        f"{r['relative_mean']:.4f}",
        f"{r['ordinary_mean']:.4f}",
        f"{100 * r['mean_gap']:.3f}%",
        f"{r['paired_within_1pct']}/{r['inits']}",
    )


def plot(result: dict, path: Path) -> None:
    """NLL vs epoch, one panel per optimizer: every run thin, the median over runs thick."""
    curves = result["curves"]
    fig, axes = harness.pyplot().subplots(
        1, len(curves), figsize=(5.5 * len(curves), 4.0), squeeze=False
    )
    palette = ("tab:green", "tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown")
    colors = dict(zip(MODES, palette[: len(MODES)], strict=True))
    finals = np.concatenate([c[:, -1] for by in curves.values() for c in by.values()])
    low, high = np.nanmin(finals), np.nanmax(finals)
    span = max(high - low, 1e-3)
    for ax, (opt, by_grad) in zip(axes[0], curves.items(), strict=True):
        epochs = np.maximum(result["epochs_recorded"][opt], 1)
        for g in MODES:
            lr = result["learning_rates"][opt][g]
            ax.plot(epochs, by_grad[g].T, color=colors[g], alpha=0.3, linewidth=0.8)
            ax.plot(epochs, np.nanmedian(by_grad[g], axis=0), color=colors[g], linewidth=2.2,
                    label=f"{g} (lr {lr:g}), median")  # fmt: skip
        ax.axhline(result["reference_nll"], color="k", linestyle=":", label="generating model")
        ax.set_xscale("log")
        ax.set_ylim(low - 0.1 * span, high + 1.0 * span)
        ax.set_xlabel("epoch (one full-batch step)")
        ax.set_ylabel("exact training NLL")
        ax.set_title(opt)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    harness.save_figure(fig, path, dpi=120)


def _rounded(a) -> list[float | None]:
    """Flattened values rounded to 5 decimals, ``None`` for a non-finite one (JSON)."""
    return [None if not np.isfinite(v) else round(float(v), 5) for v in np.ravel(a)]


def to_record(rows, gaps, shared, *, result: dict, args) -> dict:
    """The JSON record: settings, tuning, the :func:`summarise` tables and the NLL curves."""
    return {
        "n": args.n,
        "mixing": args.mixing,
        "seed": args.seed,
        "reference_nll": result["reference_nll"],
        "learning_rates": result["learning_rates"],
        "lr_grids": LR_GRIDS,
        "tuning_seeds": args.tuning_seeds,
        "tuning_mean_final_nll": result["tuning"],
        "summary": rows,
        "gaps": gaps,
        "shared_rate": shared,
        "grid_final_nll": {
            o: {g: {lr: _rounded(v) for lr, v in f.items()} for g, f in by.items()}
            for o, by in result["grid_finals"].items()
        },
        "epochs_recorded": {o: e.tolist() for o, e in result["epochs_recorded"].items()},
        "final_nll": {
            o: {g: _rounded(c[:, -1]) for g, c in by.items()} for o, by in result["curves"].items()
        },
        "grad_norms": {
            o: {g: _rounded(v) for g, v in by.items()} for o, by in result["grad_norms"].items()
        },
        "curves": {
            o: {g: [_rounded(run) for run in c] for g, c in by.items()}
            for o, by in result["curves"].items()
        },
    }


def main(argv: Sequence[str] | None = None) -> tuple[list[dict], list[dict], list[dict]]:
    """Parses arguments, tunes and trains all runs, writes JSON, Markdown and PNG."""
    smoke = {"n": 200, "inits": 2, "tuning_inits": 2, "adam_epochs": 20, "sgd_epochs": 20}
    parser = harness.experiment_parser(
        __doc__, out=Path("results/dynamics"), smoke={**smoke, "record_every": 1}
    )
    size = harness.positive_int
    parser.add_argument("--n", type=size, default=2000, help="training points (full batch)")
    parser.add_argument("--mixing", choices=MIXINGS, default="teacher")
    parser.add_argument("--inits", type=size, default=10)
    parser.add_argument("--tuning-inits", type=size, default=5)
    parser.add_argument("--adam-epochs", type=size, default=8000)
    parser.add_argument("--sgd-epochs", type=size, default=15000)
    parser.add_argument("--record-every", type=size, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and mixing")
    args = parser.parse_args(argv)
    args.tuning_seeds = list(range(100, 100 + args.tuning_inits))
    result = run_all(
        data_seed=args.seed,
        n=args.n,
        mixing=args.mixing,
        n_inits=args.inits,
        tuning_seeds=args.tuning_seeds,
        epochs={"adam": args.adam_epochs, "sgd": args.sgd_epochs},
        record_every=args.record_every,
    )
    rows, gaps, shared = summarise(result)
    record = to_record(rows, gaps, shared, result=result, args=args)
    table = to_markdown(rows, gaps, shared, result=result, args=args)
    harness.write_report(args.out, "dynamics", record, table, indent=None)
    plot(result, args.out / "dynamics.png")
    return rows, gaps, shared


if __name__ == "__main__":
    main()
