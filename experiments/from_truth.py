"""Does a fit hold the truth, and from how far does it find it? Fits started at the true demixer.

Where deep mixings are not recovered (``results/depth``: 4 and 5 leaky-ReLU layers; TCL's
5-layer recipe) the fits stop 1-3 nats per sample short of the true model's likelihood. This
script tells apart the three reasons that could have: the model cannot represent the truth
(then no start reaches it), the optimiser cannot stay there (then a fit started at the truth
drifts away), or the optimiser never finds its basin from a random start (then a start near
the truth reaches it and a random one does not). Each run is one main fit of ``FitConfig``'s
defaults (one initialisation, the default schedule and optimizer) of the true depth, started
from:

* ``random``: the default random initialisation (the fit's first restart);
* ``truth xC``: the true demixer (``experiments.representability.exact_model``: the exact
  inverse of the leaky-ReLU mixing, the default spline at the inverse's slopes, the true
  prior), each hidden pre-activation at standard deviation ``C`` on the data. The spline
  smooths each kink over its knot spacing, so larger ``C`` is closer to the truth;
* ``truth x16, noise E``: the same at ``C = 16``, every square kernel ``W`` moved by ``E`` times
  its root mean square entry times a standard normal matrix;
* ``truth x16, layer k noise 0.5``: only layer ``k``'s kernel moved (layer 0 meets the
  observations and undoes the mixing's last matrix).

Per run it records the held-out NLL gap to the truth at the start and at the end, the
training gap, the Pearson MCC, and how well the first layer's kernel columns align with the
true first layer's (mean |cosine| of the matched columns; 1 is the same hyperplanes), the one
layer whose units are defined up to order and scale alone.

One JSON file per run under ``OUT/cells`` (atomic; one that exists is not rerun), so a run
resumes and several processes can split the settings (``--settings``). ``--report`` writes
``report.md`` and ``results.json`` from the cells.

Command (the committed report; one process per core, then the report)::

    .venv/bin/python -m experiments.from_truth --settings "depth L=4" "depth L=5" \\
        --out results/from_truth
    .venv/bin/python -m experiments.from_truth --settings "tcl D=5 L=5" --seeds 0 1 \\
        --out results/from_truth
    .venv/bin/python -m experiments.from_truth --settings "tcl D=20 L=5" --seeds 0 \\
        --starts random "truth x1" "truth x4" "truth x16" "truth x64" \\
        "truth x16, layer 0 noise 0.5" --out results/from_truth
    .venv/bin/python -m experiments.from_truth --out results/from_truth --report

Smoke size (used by the tests): ``--smoke`` (the ``tiny`` preset with 2 layers, a few epochs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy.optimize import linear_sum_assignment

from experiments.harness import (
    experiment_parser,
    markdown_document,
    markdown_table,
    write_record,
    write_report,
)
from experiments.representability import exact_model, true_layers
from nica.apps.experiment.configs import EXPERIMENTS
from nica.apps.experiment.design import Setting
from nica.apps.experiment.fitting import setting_dataset, truth_scores
from nica.core.activations import MonotoneSplineSpec
from nica.fitting.build import build_model, make_optimizer
from nica.fitting.config import FitConfig
from nica.fitting.data import standardise
from nica.fitting.estimator import check_inputs, seed_keys
from nica.fitting.fitted import FittedModel
from nica.fitting.runs import train_runs
from nica.fitting.steps import split_runs_data
from nica.util.files import read_json

#: The settings measured by default, as ``"<config> <setting label>"`` of ``nica run``.
SETTINGS = ("depth L=4", "depth L=5", "tcl D=5 L=5")
#: The smoke run's setting.
SMOKE = Setting(
    "tiny L=2", "tiny", (("n_layers", 2), ("n_segments", 4), ("samples_per_segment", 200))
)


class Start(NamedTuple):
    """Where a run starts: the true demixer at hidden scale ``scale`` with kernel noise
    ``noise`` on ``layers`` (``None``: every layer), or the random initialisation
    (``scale=None``)."""

    scale: float | None
    noise: float = 0.0
    layers: tuple[int, ...] | None = None


def starts(depth: int) -> dict[str, Start]:
    """The starts run at a demixer of ``depth`` layers, by name, in report order."""
    named = {"random": Start(None)}
    named |= {f"truth x{c:g}": Start(float(c)) for c in (1, 4, 16, 64)}
    named |= {f"truth x16, noise {e:g}": Start(16.0, e) for e in (0.05, 0.2, 0.5)}
    named |= {f"truth x16, layer {k} noise 0.5": Start(16.0, 0.5, (k,)) for k in range(depth)}
    return named


def setting_of(name: str) -> Setting:
    """The :class:`Setting` named ``"<config> <label>"`` (or the smoke setting's label)."""
    if name == SMOKE.label:
        return SMOKE
    config, _, label = name.partition(" ")
    found = (
        [s for s in EXPERIMENTS[config].settings if s.label == label]
        if config in EXPERIMENTS
        else []
    )
    if not found:
        raise SystemExit(f"unknown setting {name!r}; e.g. {', '.join(SETTINGS)}")
    return found[0]


def first_layer_alignment(kernel, true_kernel) -> float:
    """Mean |cosine| between the columns of ``kernel`` and ``true_kernel`` (both ``(D, D)``,
    ``z @ kernel``), matched one to one for the largest total."""
    a, b = (np.asarray(k, np.float64) for k in (kernel, true_kernel))
    cos = np.abs((a / np.linalg.norm(a, axis=0)).T @ (b / np.linalg.norm(b, axis=0)))
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].mean())


def start_model(dataset, start: Start, config: FitConfig, aux: dict, seed: int):
    """The model a run starts from (:class:`Start`; ``aux`` describes ``dataset.u``) and the
    standardisation of ``x``."""
    if start.scale is None:
        _, standardisation = standardise(dataset.x)
        key = seed_keys(seed, 1)[2][0]  # nica.fit's initialisation of seed ``seed``
        return build_model(config, dataset.x.shape[1], aux, key=key), standardisation
    model, standardisation = exact_model(dataset, start.scale, MonotoneSplineSpec())
    layers = range(len(model.demixer.layers)) if start.layers is None else start.layers
    for k in layers if start.noise else ():
        kernel = model.demixer.layers[k].kernel
        w = kernel[...]
        key = jax.random.fold_in(jax.random.key(seed), k)
        kernel[...] = w + start.noise * jnp.sqrt(jnp.mean(w**2)) * jax.random.normal(key, w.shape)
    return model, standardisation


def true_first_layer(dataset, label: str) -> np.ndarray:
    """The true demixer's first kernel at hidden scale 1, ``(D, D)``; a one-line exit for a
    mixing whose exact inverse the model cannot hold."""
    try:
        return true_layers(dataset, 1.0)[0][0]
    except ValueError as error:
        raise SystemExit(f"{label}: {error}") from None


def run(dataset, seed: int, name: str, start: Start, epochs: int | None, true_first) -> dict:
    """One main fit of ``dataset`` (data seed ``seed``) from ``start``; its record
    (``true_first``: :func:`true_first_layer` of ``dataset``)."""
    depth = len(dataset.mixing.matrices)
    config = FitConfig().replace(depth=depth, restarts=1, **({"epochs": epochs} if epochs else {}))
    aux = check_inputs(dataset.x, dataset.u, config=config)
    model, standardisation = start_model(dataset, start, config, aux.aux, seed)
    z = standardisation.apply(dataset.x).astype(np.float32)
    split_key, shuffle_key, _ = seed_keys(seed, 1)  # nica.fit's split and minibatch orders
    data = split_runs_data(
        [split_key], [z], [aux.values], config.loop.validation_fraction, jnp.float32
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    before = FittedModel(model, config, standardisation, aux.aux, None, None)
    start_scores = truth_scores(before, dataset, seed)
    start_alignment = first_layer_alignment(model.demixer.layers[0].kernel[...], true_first)
    clock = time.perf_counter()
    best, (result,) = train_runs(
        graphdef,
        jax.tree.map(lambda a: jnp.asarray(a)[None, None], params),
        rest,
        data,
        shuffle_key[None, None],
        optimizer=make_optimizer(config, z.shape[0]),
        gradient=config.optimizer.gradient,
        settings=config.loop,
        cache_key=("from_truth", config, z.shape[0]),
        nll_offset=np.array([np.log(standardisation.scale).sum()]),
    )
    wall = time.perf_counter() - clock
    trained = nnx.merge(graphdef, jax.tree.map(lambda a: a[0, 0], best), rest)
    fitted = FittedModel(trained, config, standardisation, aux.aux, result, None)
    return {
        "seed": seed,
        "start": name,
        "scale": start.scale,
        "noise": start.noise,
        "layers": None if start.layers is None else list(start.layers),
        "start_gap": start_scores["nll_gap"],
        "start_mcc": start_scores["mcc"],
        "start_alignment": start_alignment,
        **truth_scores(fitted, dataset, seed),
        "alignment": first_layer_alignment(trained.demixer.layers[0].kernel[...], true_first),
        "diverged": result.diverged,
        "epochs": config.loop.epochs,
        "wall_s": wall,
    }


def _cell(out: Path, setting: str, seed: int, start: str) -> Path:
    stem = f"{setting}_{seed}_{start}".replace(" ", "_").replace(",", "").replace("=", "")
    return out / "cells" / f"{stem}.json"


def run_all(
    out: Path,
    settings: Sequence[str],
    seeds: Sequence[int],
    epochs: int | None,
    only: Sequence[str] | None = None,
):
    """Runs every missing (setting, seed, start) cell (the starts named in ``only``, default
    all), writing each as it finishes."""
    for name in settings:
        setting = setting_of(name)
        for seed in seeds:
            dataset = setting_dataset(setting, seed)
            true_first = true_first_layer(dataset, setting.label)
            for start_name, start in starts(len(dataset.mixing.matrices)).items():
                if only is not None and start_name not in only:
                    continue
                path = _cell(out, name, seed, start_name)
                if path.exists():
                    continue
                record = {
                    **run(dataset, seed, start_name, start, epochs, true_first),
                    "setting": name,
                }
                write_record(path, record)
                print(
                    {
                        k: record[k]
                        for k in ("setting", "seed", "start", "start_gap", "nll_gap", "mcc")
                    },
                    flush=True,
                )


def _per_seed(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def to_markdown(records: Sequence[dict]) -> str:
    """The report: per setting, one row per start."""
    blocks = []
    for name in dict.fromkeys(r["setting"] for r in records):
        rows = []
        mine = [r for r in records if r["setting"] == name]
        moved = [k for r in mine if r["layers"] for k in r["layers"]]
        order = list(starts(1 + max(moved, default=0)))  # every start's name, in order
        names = sorted({r["start"] for r in mine}, key=order.index)
        for start in names:
            runs = sorted((r for r in mine if r["start"] == start), key=lambda r: r["seed"])
            rows.append(
                (
                    start,
                    f"{np.median([r['start_gap'] for r in runs]):.3g}",
                    _per_seed([r["nll_gap"] for r in runs], ".2f"),
                    _per_seed([r["train_gap"] for r in runs], ".2f"),
                    _per_seed([r["mcc"] for r in runs], ".3f"),
                    _per_seed([r["alignment"] for r in runs], ".2f"),
                )
            )
        seeds = sorted({r["seed"] for r in mine})
        header = (
            "start",
            "start gap (median)",
            "end gap per seed",
            "training gap",
            "MCC",
            "first-layer alignment",
        )
        blocks.append(f"## {name} (data seeds {', '.join(map(str, seeds))})")
        blocks.append(markdown_table(header, rows))
    note = (
        "One main fit per run with `FitConfig`'s defaults at the mixing's depth (one "
        "initialisation, the default schedule and optimizer), started from the random "
        "initialisation or from the true demixer (hidden pre-activations at standard deviation "
        "C; kernel noise E times each kernel's RMS entry; `layer k` moves that layer only, "
        "layer 0 meets the observations). Gaps: held-out and training NLL minus the true "
        "model's, nats per sample. First-layer alignment: mean |cosine| between the fitted "
        "and the true first layer's matched kernel columns (1: the same hyperplanes). "
        "Command and method: `experiments/from_truth.py`."
    )
    return markdown_document("Fits started at the true demixer", note, *blocks)


def report(out: Path) -> str:
    """Writes ``report.md`` and ``results.json`` from the cells in ``out``."""
    paths = sorted((out / "cells").glob("*.json"))
    if not paths:
        raise SystemExit(f"no cells in {out / 'cells'}: run the fits first")
    records = [read_json(p) for p in paths]
    table = to_markdown(records)
    write_report(out, {"runs": records}, table)
    return table


def main(argv: Sequence[str] | None = None) -> str | None:
    """Runs the missing cells, or (``--report``) writes the report; returns its text."""
    parser = experiment_parser(
        __doc__,
        out=Path("results/from_truth"),
        smoke={
            "settings": [SMOKE.label],
            "seeds": [0],
            "epochs": 3,
            "starts": ["random", "truth x16", "truth x16, layer 0 noise 0.5"],
        },
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: FitConfig's")
    parser.add_argument("--starts", nargs="+", default=None, help="default: every start")
    parser.add_argument("--report", action="store_true", help="write the report from the cells")
    args = parser.parse_args(argv)
    if not args.report:
        run_all(args.out, args.settings, args.seeds, args.epochs, args.starts)
    return report(args.out) if args.report or args.smoke else None


if __name__ == "__main__":
    main()
