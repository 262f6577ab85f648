"""Wall time of S seeds trained together (vmap, sharded over devices) vs S sequential fits.

For each S the script draws S datasets of one setting (``synthetic`` preset, seeds 0..S-1) and
fits the conditional model on each, in two modes (after one untimed warm-up fit):

* ``sequential``: S calls of ``nica.estimator.fit_arrays``, one after another (what a plain loop
  over seeds does; each call builds and compiles its own program);
* ``vmapped``: one call of ``nica.estimator.fit_arrays_seeds`` (one compiled program, the seed
  axis ``vmap``-ped and, with several local devices, sharded across them).

Both include compilation and the exact validation evaluations, i.e. the end-to-end time a user
waits. It also records each seed's MCC in both modes. In float32 the two modes are not
bit-identical (batched kernels round differently and Adam amplifies the differences over
thousands of steps), so after many epochs a seed's fits can differ slightly; in float64 they
agree to 1e-9 (``tests/test_seeds.py``).

Command::

    .venv/bin/python experiments/seeds_vmap.py --out results/seeds_vmap

Writes ``seeds_vmap.json`` (one record per S), ``seeds_vmap.md`` (table with the ratio
sequential / vmapped). ``--smoke`` runs S = 1, 2 on tiny data (used by the tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from nica.estimator import FitConfig, fit_arrays, fit_arrays_seeds
from nica.metrics import mean_correlation_coefficient
from nica.storage import write_json


def time_modes(preset: str, n_seeds: int, config: FitConfig, overrides: dict) -> dict:
    """Times sequential and vmapped fitting of ``n_seeds`` seeds; returns one record."""
    from synthetic import make_preset

    datasets = [make_preset(preset, seed, **overrides) for seed in range(n_seeds)]
    configs = [dataclasses.replace(config, seed=seed) for seed in range(n_seeds)]
    fit_arrays(dataclasses.replace(config, epochs=1), datasets[0].x, datasets[0].u)  # warm-up

    start = time.perf_counter()
    sequential = [fit_arrays(c, d.x, d.u) for c, d in zip(configs, datasets, strict=True)]
    sequential_s = time.perf_counter() - start

    start = time.perf_counter()
    vmapped = fit_arrays_seeds(configs, [d.x for d in datasets], [d.u for d in datasets])
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
        "epochs": config.epochs,
        "n_samples": int(datasets[0].x.shape[0]),
        "dim": int(datasets[0].x.shape[1]),
    }


def markdown(records: list[dict], preset: str, device: str) -> str:
    """The results table."""
    lines = [
        "# S seeds: vmapped vs sequential fits",
        "",
        f"Preset `{preset}`, conditional model, one initialisation per seed (restarts=1), "
        f"{records[0]['epochs']} epochs per fit, "
        f"N = {records[0]['n_samples']}, D = {records[0]['dim']}; device: {device} "
        f"({len(jax.local_devices())} local). End-to-end wall time including compilation.",
        "",
        "| S | sequential (s) | vmapped (s) | sequential / vmapped | mean MCC seq. | mean MCC"
        " vmapped | max abs MCC diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['seeds']} | {r['sequential_s']:.1f} | {r['vmapped_s']:.1f} "
            f"| {r['ratio']:.2f} | {np.mean(r['mcc_sequential']):.4f} "
            f"| {np.mean(r['mcc_vmapped']):.4f} | {r['max_abs_mcc_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, runs the benchmark, writes JSON and Markdown; returns the records."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--preset", default="ivae")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results/seeds_vmap"))
    parser.add_argument("--smoke", action="store_true", help="S = 1, 2 on tiny data")
    args = parser.parse_args(argv)
    overrides = {}
    if args.smoke:
        args.seeds, args.preset, args.epochs = [1, 2], "tiny", 2
    # One initialisation per seed, so that the timing isolates the seed axis.
    config = FitConfig(epochs=args.epochs, eval_every=max(1, args.epochs // 2), restarts=1)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for n_seeds in args.seeds:
        records.append(time_modes(args.preset, n_seeds, config, overrides))
        print(records[-1], flush=True)
        write_json(args.out / "seeds_vmap.json", records)
    device = f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}"
    table = markdown(records, args.preset, device)
    (args.out / "seeds_vmap.md").write_text(table)
    print(table)
    return records


if __name__ == "__main__":
    main()
