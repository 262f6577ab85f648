"""Relative vs ordinary gradient under Adam and SGD with momentum, across source dimension.

A diagnostic for a weakness seen in the ``dimension`` sweep: with the default relative gradient
and Adam, the conditional model degrades sharply beyond 5-10 sources. For each dimension ``D``
the script fits the conditional model (``FitConfig`` defaults, one initialisation, no restarts)
on the iVAE preset with ``n_sources = D``, for every combination of

* gradient: each mode of ``nica.GRADIENTS`` but ``autodiff``: ``relative_coords`` (the
  default), ``relative`` and ``ordinary``;
* optimizer: ``adam`` or ``sgd`` with momentum 0.9 (both clipped to global norm 10, cosine
  decay of the peak rate over the whole fit),

all seeds of one combination trained together (``nica.fitting.training.train_seeds``), and records
the Pearson MCC, the best validation NLL and the epoch it was reached.

Command::

    .venv/bin/python -m experiments.optimizer_probe --out results/optimizer_probe

Writes ``results.json`` (one record per dimension, gradient, optimizer and seed) and
``report.md`` (means over seeds). ``--gradients`` picks modes. ``--smoke`` runs D = 2 on tiny
data with one gradient mode (for the tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
import optax

from experiments import harness
from nica.core.metrics import mean_correlation_coefficient
from nica.fitting.build import build_model, make_optimizer
from nica.fitting.config import FitConfig
from nica.fitting.training import train_seeds

#: Base optimizers (``base`` of ``nica.fitting.build.make_optimizer``), given the lr schedule.
OPTIMIZERS = {
    "adam": optax.adam,
    "sgd_momentum": lambda schedule: optax.sgd(schedule, momentum=0.9),
}


def probe(
    dim: int, gradient: str, optimizer: str, seeds: Sequence[int], config: FitConfig, preset: str
) -> list[dict]:
    """Fits the seeds of one (dimension, gradient, optimizer) cell; one record per seed."""
    from synthetic import make_preset

    datasets = [make_preset(preset, seed, n_sources=dim) for seed in seeds]
    xs = [((d.x - d.x.mean(0)) / d.x.std(0)).astype(np.float32) for d in datasets]
    aux = {"kind": "segments", "n_segments": int(datasets[0].u.max()) + 1}
    depth = config.resolve(dim).depths[0]  # one model per seed: the first depth ``auto`` tries
    configs = [config.replace(seed=s, gradient=gradient, depth=depth) for s in seeds]
    # One initialisation per seed: initialisation 0 of ``fold_in(key(seed), k)``.
    init_keys = [jax.random.fold_in(jax.random.key(c.seed), 0) for c in configs]
    models = [build_model(c, dim, aux, key=k) for c, k in zip(configs, init_keys, strict=True)]
    tx = make_optimizer(config, xs[0].shape[0], base=OPTIMIZERS[optimizer])
    start = time.perf_counter()
    results = train_seeds(
        [jax.random.key(s) for s in seeds],
        models,
        xs,
        [d.u for d in datasets],
        gradient=gradient,
        optimizer=tx,
        loop=config.loop,
    )
    wall = (time.perf_counter() - start) / len(seeds)
    records = []
    for seed, model, x, d, r in zip(seeds, models, xs, datasets, results, strict=True):
        s_hat = np.asarray(jax.jit(model.demixer)(x))
        records.append(
            {
                "dim": dim,
                "gradient": gradient,
                "optimizer": optimizer,
                "seed": seed,
                "mcc_pearson": float(mean_correlation_coefficient(d.s, s_hat).mcc),
                "best_val_nll": r.best_val_nll,
                "best_epoch": r.best_epoch,
                "diverged": r.diverged,
                "wall_s": wall,
            }
        )
    return records


def markdown(records: list[dict], config: FitConfig, preset: str) -> str:
    """Table of means over seeds per (dimension, gradient, optimizer)."""
    cells = []
    for cell in dict.fromkeys((r["dim"], r["gradient"], r["optimizer"]) for r in records):
        rs = [r for r in records if (r["dim"], r["gradient"], r["optimizer"]) == cell]
        cells.append(
            (
                *cell,
                f"{np.mean([r['mcc_pearson'] for r in rs]):.3f}",
                f"{np.mean([r['best_val_nll'] for r in rs]):.3f}",
                f"{np.mean([r['best_epoch'] for r in rs]):.0f}",
                f"{sum(r['diverged'] is not None for r in rs)}/{len(rs)}",
            )
        )
    header = ("D", "gradient", "optimizer", "Pearson MCC", "best val NLL", "best epoch")
    return harness.markdown_document(
        "Relative vs ordinary gradient, Adam vs SGD with momentum, across dimension",
        f"Preset `{preset}` with `n_sources = D`, conditional model, one initialisation, "
        f"{config.loop.epochs} epochs, peak lr {config.optimizer.learning_rate} (cosine decay), "
        f"clip {config.optimizer.clip_norm}, batch {config.loop.batch_size}. Means over seeds "
        f"{sorted({r['seed'] for r in records})}.",
        harness.markdown_table((*header, "diverged"), cells),
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, runs the probe, writes JSON and Markdown; returns the records."""
    # The smoke size covers both optimizers with one gradient mode (each mode has its own tests).
    smoke = {
        "dims": [2],
        "seeds": [0],
        "epochs": 2,
        "preset": "tiny",
        "gradients": [harness.COMPARED_GRADIENTS[0]],
    }
    parser = harness.experiment_parser(__doc__, out=Path("results/optimizer_probe"), smoke=smoke)
    parser.add_argument("--dims", type=harness.positive_int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=harness.positive_int, default=300)
    parser.add_argument("--preset", default="ivae")
    parser.add_argument(
        "--gradients",
        nargs="+",
        default=list(harness.COMPARED_GRADIENTS),
        choices=list(harness.COMPARED_GRADIENTS),
    )
    args = parser.parse_args(argv)
    config = FitConfig.from_flat(
        {"epochs": args.epochs, "restarts": 1, "eval_every": min(10, args.epochs)}
    )
    cells = (
        probe(dim, gradient, optimizer, args.seeds, config, args.preset)
        for dim in args.dims
        for gradient in args.gradients
        for optimizer in OPTIMIZERS
    )
    records = harness.write_records_as_they_come(args.out / harness.RECORD_FILE, cells)
    table = markdown(records, config, args.preset)
    harness.write_report(args.out, records, table)
    return records


if __name__ == "__main__":
    main()
