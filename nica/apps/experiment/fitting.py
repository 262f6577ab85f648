"""Fitting a (setting, method)'s cells through the method registry (``nica.methods``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nica.apps.experiment.cells import cell_config
from nica.apps.experiment.design import ExperimentConfig, Setting
from nica.core.metrics import mean_correlation_coefficient
from nica.methods import Method, MethodFit, get_method
from nica.util.files import save_npz
from nica.util.provenance import environment

__all__ = ["TEST_SEED", "fit_cells", "setting_dataset", "truth_scores"]

#: Fresh held-out samples of the true model use seed ``TEST_SEED + data seed``.
TEST_SEED = 10_000


def _truth_gap(method: Method, fit: MethodFit, dataset, seed: int) -> dict:
    """The held-out NLL gap to the true model (``synthetic.truth.nll_gap``) of a finished fit
    of a method with an exact likelihood; nothing for other methods, nor for an unconditional
    fit of continuous-``u`` data (whose true marginal, an integral over ``u``, is not known)."""
    if not method.exact_likelihood or fit.diverged is not None:
        return {}
    from synthetic.truth import has_true_marginal, nll_gap

    if not method.uses_u and not has_true_marginal(dataset):
        return {}
    return nll_gap(fit.model, dataset, seed=TEST_SEED + seed, conditional=method.uses_u)


def setting_dataset(setting: Setting, seed: int):
    """The ``synthetic.Dataset`` of ``setting`` (its preset with its overrides) at data ``seed``."""
    from synthetic import make_preset

    return make_preset(setting.preset, seed, **dict(setting.overrides))


def truth_scores(fitted, dataset, seed: int, *, conditional: bool = True) -> dict:
    """A nica ``FittedModel`` of ``dataset`` (data seed ``seed``) scored against its truth:
    ``mcc`` (Pearson, on ``dataset.x``), ``nll_gap`` and ``train_gap``
    (``synthetic.truth.nll_gap`` on the held-out samples of seed ``TEST_SEED + seed``)."""
    from synthetic.truth import nll_gap

    gap = nll_gap(fitted, dataset, seed=TEST_SEED + seed, conditional=conditional)
    mcc = mean_correlation_coefficient(dataset.s, fitted.transform(dataset.x)).mcc
    return {"mcc": float(mcc), "nll_gap": gap["nll_gap"], "train_gap": gap["train_gap"]}


def fit_cells(
    config: ExperimentConfig,
    setting: Setting,
    model: str,
    seeds: list[int],
    cells: Path,
    vmap: bool,
    progress: Callable | None = None,
) -> list[dict]:
    """Fits method ``model`` on the data of ``setting`` for each seed; writes each seed's
    arrays (``s``, ``s_hat``: ``(N, D)``) to ``cells/NAME.npz`` and returns one record per seed.

    A batched method (nica's, iVAE, TCL) trains all ``seeds`` together (``vmap``, sharded
    across local devices) unless ``vmap`` is false. Each record's ``wall_s`` is its group's
    wall time over the group's size. ``s`` is what the method's MCC is measured against (its
    ``target`` of the true sources: ``|s|`` for TCL).
    """
    method = get_method(model)
    datasets = [setting_dataset(setting, seed) for seed in seeds]
    together = vmap and method.batched
    groups = [list(range(len(seeds)))] if together else [[i] for i in range(len(seeds))]
    records = []
    for group in groups:
        start = time.perf_counter()
        chosen, chosen_seeds = [datasets[i] for i in group], [seeds[i] for i in group]
        fits = method.fit_seeds(
            [d.x for d in chosen],
            [d.u for d in chosen],
            seeds=chosen_seeds,
            config=cell_config(config, setting, method, chosen_seeds[0]),
            progress=progress,
        )
        gaps = [
            _truth_gap(method, fit, d, seed)
            for fit, d, seed in zip(fits, chosen, chosen_seeds, strict=True)
        ]
        wall = (time.perf_counter() - start) / len(group)
        for i, fit, gap in zip(group, fits, gaps, strict=True):
            record = {"setting": setting.label, "model": model, "seed": seeds[i]}
            record.update(fitted_together=len(group), machine=_machine(), wall_s=wall)
            record.update(environment=environment(), target=method.target_name)
            target = method.target(datasets[i].s)
            records.append(_cell_record(record, fit, gap, target, cells))
    return records


def _cell_record(record: dict, fit: MethodFit, gap: dict, s: np.ndarray, cells: Path) -> dict:
    """Completes a cell's record from its fit; writes the ``s``/``s_hat`` arrays if it ran.

    ``s`` is what the method recovers (the true sources, or ``|s|`` for TCL): the MCCs and the
    stored ``s`` are of it."""
    if fit.diverged is not None:
        return {**record, "status": "diverged", "error": fit.diverged}
    record["status"] = "ok"
    found = {"val_nll": fit.val_nll, **gap, "depth": fit.depth, "depth_search": fit.depth_search}
    record.update((key, value) for key, value in found.items() if value is not None)
    for method in ("pearson", "spearman"):
        record[f"mcc_{method}"] = float(mean_correlation_coefficient(s, fit.sources, method).mcc)
    record["history"] = fit.history
    name = f"{record['setting']}__{record['model']}__seed{record['seed']}"
    save_npz(cells / f"{name}.npz", s=s, s_hat=fit.sources)
    return record


def _machine() -> str:
    """Where a cell ran: JAX platform and the CPU cores this process may use."""
    import jax

    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere all cores count
    cores = len(affinity(0)) if affinity else os.cpu_count()
    return f"{jax.devices()[0].platform}, {cores} CPU cores"
