"""Training throughput of ``nica fit``: samples per second of a whole epoch, one seed or many.

For each dimension D, gradient mode and number of seeds S, the script runs ``nica.fit_seeds``
(the library call behind ``nica fit`` and ``nica run``) with ``FitConfig``'s defaults (depth,
batch size, clipped Adam with its schedule, the conditional model with segment labels) except
``restarts=1`` and a short epoch budget, on S datasets of ``--samples`` standard-normal points
with ``--segments`` segment labels (the cost of an epoch does not depend on the values). The
wall time of each epoch is read from the progress callback; the first epoch (compilation) and
the last (exact validation NLL) are left out, and the fastest of the others is reported (on a
shared machine the slower ones measure the other load; their median is recorded too):

* ``samples_per_s = S * n_train / epoch_s`` (``n_train``: the training split, every sample of
  it is used once per epoch up to the last partial batch);
* ``speedup``: samples/s with S seeds vmapped in one program over samples/s of one seed.

Command::

    taskset -c 0 .venv/bin/python -m experiments.throughput --out results/throughput

Writes ``results.json`` (one record per (D, gradient, S), rewritten after each) and
``report.md``. ``--smoke`` runs D = 3, S = 1 and 2 on 600 points, 3 epochs, the default
mode only (for the tests).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import nica
from experiments import harness
from nica.core.gradients import DEFAULT_GRADIENT
from nica.fitting.config import AUTO_DEPTH_RULE


def make_data(dim: int, n_seeds: int, n: int, segments: int) -> tuple[list, list]:
    """``n_seeds`` datasets: ``x`` (n, dim) standard normal, ``u`` (n,) balanced labels."""
    rng = np.random.default_rng(dim)
    xs = [rng.standard_normal((n, dim)).astype(np.float32) for _ in range(n_seeds)]
    us = [np.arange(n) % segments for _ in range(n_seeds)]
    return xs, us


def time_epochs(
    dim: int, gradient: str, n_seeds: int, *, n: int, segments: int, epochs: int
) -> dict:
    """Fits ``n_seeds`` seeds at once for ``epochs`` epochs; one record of epoch timings."""
    flat = {"epochs": epochs, "restarts": 1, "eval_every": epochs, "gradient": gradient}
    config = nica.FitConfig.from_flat(flat)
    # The cost of one candidate depth: up to 10 sources ``auto`` fits two in turn.
    config = config.replace(depth=config.resolve(dim).depths[0])
    xs, us = make_data(dim, n_seeds, n, segments)
    ticks: list[tuple[int, float]] = []
    nica.fit_seeds(
        xs,
        us,
        seeds=range(n_seeds),
        config=config,
        progress=lambda event: ticks.append((event.epoch, event.seconds)),
    )
    seconds = dict(ticks)
    # Epoch e took seconds[e] - seconds[e - 1]; epoch 1 compiles, the last one evaluates.
    epoch_s = [seconds[e] - seconds[e - 1] for e in range(2, epochs)]
    n_train = int(round(n * (1 - config.loop.validation_fraction)))
    batch = min(config.loop.batch_size, n_train)
    used = n_train // batch * batch
    fastest = min(epoch_s)
    return {
        "dim": dim,
        "gradient": gradient,
        "mode": nica.resolve_gradient(gradient, dim, config.loop.batch_size).name,
        "seeds": n_seeds,
        "samples": n,
        "samples_per_epoch": used,
        "epoch_s": fastest,
        "epoch_s_median": statistics.median(epoch_s),
        "epoch_s_all": epoch_s,
        "samples_per_s": n_seeds * used / fastest,
        "first_epoch_s": seconds[1] - seconds[0],
        "depth": config.model.depth,
        "batch_size": config.loop.batch_size,
        "device": f"{jax.default_backend()}:{jax.devices()[0].device_kind}",
    }


def with_speedups(records: list[dict]) -> list[dict]:
    """Adds ``speedup`` (samples/s over the one-seed samples/s of the same D and mode)."""
    single = {(r["dim"], r["gradient"]): r["samples_per_s"] for r in records if r["seeds"] == 1}
    return [
        {**r, "speedup": r["samples_per_s"] / single[(r["dim"], r["gradient"])]}
        if (r["dim"], r["gradient"]) in single
        else r
        for r in records
    ]


def markdown(records: list[dict]) -> str:
    """The results table."""
    first = records[0]
    cells = [
        (
            r["dim"],
            r["gradient"],
            r["depth"],
            r["seeds"],
            f"{r['epoch_s']:.3f}",
            f"{r['samples_per_s']:,.0f}",
            f"{r['speedup']:.2f}" if "speedup" in r else "-",
        )
        for r in records
    ]
    header = ("D", "gradient", "depth", "seeds S", "epoch (s)", "samples/s", "vs one seed")
    return harness.markdown_document(
        "Training throughput of nica fit (samples per second of a whole epoch)",
        f"`nica.fit_seeds` with `FitConfig` defaults (depth `auto`: {AUTO_DEPTH_RULE}; where "
        "it tries two, the first, whose epochs a fit runs besides the other's; batch "
        f"{first['batch_size']}, conditional model, clipped Adam), `restarts=1`; "
        f"{first['samples']} points per seed, {first['samples_per_epoch']} trained per epoch; "
        f"fastest epoch but the first (compilation) and the last (evaluation); "
        f"device {first['device']}. Default gradient mode: `{DEFAULT_GRADIENT}`. "
        "`vs one seed`: samples/s of S seeds vmapped in one program over samples/s of one.",
        harness.markdown_table(header, cells),
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, times every cell, writes JSON and Markdown; returns the records."""
    smoke = {
        "dims": [3],
        "seeds": [1, 2],
        "samples": 600,
        "epochs": 3,
        "gradients": [DEFAULT_GRADIENT],
    }
    parser = harness.experiment_parser(__doc__, out=Path("results/throughput"), smoke=smoke)
    parser.add_argument("--dims", type=harness.positive_int, nargs="+", default=[5, 20, 50, 256])
    parser.add_argument("--seeds", type=harness.positive_int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--gradients",
        nargs="+",
        choices=[DEFAULT_GRADIENT, *nica.GRADIENTS],
        default=None,
        help="gradient modes (default: the package default and relative_pooled)",
    )
    parser.add_argument("--samples", type=harness.positive_int, default=5000)
    parser.add_argument("--segments", type=harness.positive_int, default=20)
    parser.add_argument("--epochs", type=harness.positive_int, default=6)
    args = parser.parse_args(argv)
    if args.epochs < 3:
        parser.error("--epochs must be >= 3 (compilation and evaluation epochs are left out)")
    gradients = args.gradients or list(dict.fromkeys([DEFAULT_GRADIENT, "relative_pooled"]))
    cells = (
        [time_epochs(dim, g, s, n=args.samples, segments=args.segments, epochs=args.epochs)]
        for dim in args.dims
        for g in gradients
        for s in args.seeds
    )
    records = harness.write_records_as_they_come(args.out / harness.RECORD_FILE, cells)
    records = with_speedups(records)
    harness.write_report(args.out, records, markdown(records))
    return records


if __name__ == "__main__":
    main()
