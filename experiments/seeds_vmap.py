"""Wall time of S seeds trained together (vmap, sharded over devices) vs S sequential fits.

For each S the script draws S datasets of one setting (``synthetic`` preset, seeds 0..S-1) and
fits the conditional model on each, in two modes (after one untimed warm-up fit):

* ``sequential``: S calls of ``nica.fit``, one after another (what a plain loop over seeds
  does; each call builds and compiles its own program);
* ``vmapped``: one call of ``nica.fit_seeds`` (one compiled program, the seed axis
  ``vmap``-ped and, with several local devices, sharded across them).

Both include compilation and the exact validation evaluations, i.e. the end-to-end time a user
waits. It also records each seed's MCC in both modes. In float32 the two modes are not
bit-identical (batched kernels round differently and Adam amplifies the differences over
thousands of steps), so after many epochs a seed's fits can differ slightly; in float64 they
agree to 1e-9 (``tests/test_seeds.py``).

Command::

    .venv/bin/python -m experiments.seeds_vmap --out results/seeds_vmap

Writes ``results.json`` (one record per S), ``report.md`` (table with the ratio
sequential / vmapped). ``--smoke`` runs S = 1, 2 on tiny data (used by the tests).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

import nica
from experiments import harness
from nica.core.metrics import mean_correlation_coefficient


def time_modes(preset: str, n_seeds: int, config: nica.FitConfig) -> dict:
    """Times sequential and vmapped fitting of ``n_seeds`` seeds; returns one record."""
    from synthetic import make_preset

    seeds = list(range(n_seeds))
    datasets = [make_preset(preset, seed) for seed in seeds]
    nica.fit(datasets[0].x, datasets[0].u, config=config)  # compiles the one-seed program

    start = time.perf_counter()
    sequential = [nica.fit(d.x, d.u, config=config, seed=seed) for seed, d in enumerate(datasets)]
    sequential_s = time.perf_counter() - start

    start = time.perf_counter()
    xs, us = [d.x for d in datasets], [d.u for d in datasets]
    vmapped = nica.fit_seeds(xs, us, seeds=seeds, config=config)
    vmapped_s = time.perf_counter() - start

    mcc = {
        mode: [
            float(mean_correlation_coefficient(d.s, f.transform(d.x)).mcc)
            for f, d in zip(fits, datasets, strict=True)
        ]
        for mode, fits in (("sequential", sequential), ("vmapped", vmapped))
    }
    return {
        "seeds": n_seeds,
        "sequential_s": sequential_s,
        "vmapped_s": vmapped_s,
        "ratio": sequential_s / vmapped_s,
        "mcc_sequential": mcc["sequential"],
        "mcc_vmapped": mcc["vmapped"],
        "max_abs_mcc_diff": max(
            abs(a - b) for a, b in zip(mcc["sequential"], mcc["vmapped"], strict=True)
        ),
        "epochs": config.loop.epochs,
        "n_samples": int(datasets[0].x.shape[0]),
        "dim": int(datasets[0].x.shape[1]),
    }


def markdown(records: list[dict], preset: str, device: str) -> str:
    """The results table."""
    first = records[0]
    cells = [
        (
            r["seeds"],
            f"{r['sequential_s']:.1f}",
            f"{r['vmapped_s']:.1f}",
            f"{r['ratio']:.2f}",
            f"{np.mean(r['mcc_sequential']):.4f}",
            f"{np.mean(r['mcc_vmapped']):.4f}",
            f"{r['max_abs_mcc_diff']:.1e}",
        )
        for r in records
    ]
    header = ("S", "sequential (s)", "vmapped (s)", "sequential / vmapped", "mean MCC seq.")
    return harness.markdown_document(
        "S seeds: vmapped vs sequential fits",
        f"Preset `{preset}`, conditional model, one initialisation per seed (restarts=1), "
        f"{first['epochs']} epochs per fit, N = {first['n_samples']}, D = {first['dim']}; "
        f"device: {device} ({len(jax.local_devices())} local). End-to-end wall time including "
        "compilation.",
        harness.markdown_table((*header, "mean MCC vmapped", "max abs MCC diff"), cells),
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, runs the benchmark, writes JSON and Markdown; returns the records."""
    smoke = {"seeds": [1, 2], "preset": "tiny", "epochs": 2}
    parser = harness.experiment_parser(__doc__, out=Path("results/seeds_vmap"), smoke=smoke)
    parser.add_argument("--seeds", type=harness.positive_int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--preset", default="ivae")
    parser.add_argument("--epochs", type=harness.positive_int, default=20)
    args = parser.parse_args(argv)
    # One initialisation per seed, so that the timing isolates the seed axis.
    flat = {"epochs": args.epochs, "eval_every": max(1, args.epochs // 2), "restarts": 1}
    config = nica.FitConfig.from_flat(flat)
    records = harness.write_records_as_they_come(
        args.out / harness.RECORD_FILE,
        ([time_modes(args.preset, n_seeds, config)] for n_seeds in args.seeds),
    )
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    harness.write_report(args.out, records, markdown(records, args.preset, device))
    return records


if __name__ == "__main__":
    main()
