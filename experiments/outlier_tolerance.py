"""What one outlier row does to a default fit, and how often the outlier rule refuses clean
heavy-tailed data: the measurement behind ``nica.fitting.data.ISOLATION``.

Fits: one row of a preset is moved out along every column, far enough to inflate the columns'
standard deviations (``nica.fitting.data.squash``) from 1.05x to 30x; each data set is fitted with
the defaults (the outlier check switched off for the measurement) and the MCC is computed on the
other rows, at two sample sizes. Each row of the table gives the planted row's distance in
robust standard deviations and its isolation (that distance over the next farthest rows',
``nica.fitting.data.isolation``), the quantity the rule limits.

False positives: the share of clean samples (Gaussian, Laplace, Student-t, lognormal, Cauchy;
50 to 40,000 rows, 5 columns) that the rule refuses.

Command (writes ``results/outlier_tolerance/report.md`` and ``results.json``)::

    .venv/bin/python -m experiments.outlier_tolerance

Smoke size (used by the tests): ``--smoke``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import nica
import nica.fitting.data
from experiments.harness import (
    experiment_parser,
    markdown_document,
    markdown_table,
    write_report,
)
from nica.core.metrics import mean_correlation_coefficient
from synthetic import make_preset

#: Target squash factors of the planted row (1.0: no outlier).
SQUASHES = (1.0, 1.05, 1.2, 1.5, 2.0, 4.0, 10.0, 30.0)


def _plant(x: np.ndarray, row: int, target: float) -> tuple[np.ndarray, float]:
    """``x`` with ``row`` moved along every column so that it squashes them ``target`` times;
    also returns its distance in robust standard deviations."""
    if target == 1.0:
        return x, 0.0
    n = x.shape[0]
    median = np.median(x, axis=0)
    robust_sd = 1.482602218505602 * np.median(np.abs(x - median), axis=0)
    others = np.delete(x, row, axis=0)
    # With the row at distance d from the others' mean m: var = (n-1)/n (v + d^2/n).
    v, m = others.var(axis=0), others.mean(axis=0)
    d = np.sqrt(n * v * (n / (n - 1) * target**2 - 1))
    planted = x.copy()
    planted[row] = m + d
    return planted, float(np.median(np.abs(planted[row] - median) / robust_sd))


def measure(preset: str, overrides: dict, squashes: Sequence[float], fit: dict) -> list[dict]:
    """One default fit per squash level on ``preset`` (data seed 0); one record each."""
    data = make_preset(preset, 0, **overrides)
    row = 7
    keep = np.arange(data.x.shape[0]) != row
    records = []
    for target in squashes:
        x, z = _plant(data.x, row, target)
        factor = float(np.median(nica.fitting.data.squash(x)[0]))
        ratio = float(np.median(nica.fitting.data.isolation(x)[2][0]))
        start = time.perf_counter()
        fitted = nica.fit(x, data.u, progress=None, **fit)
        s_hat = fitted.transform(x)
        mcc = mean_correlation_coefficient(data.s[keep], s_hat[keep], "pearson").mcc
        records.append(
            {
                "preset": preset,
                "n_samples": int(data.x.shape[0]),
                "target_squash": target,
                "squash": factor,
                "robust_z": z,
                "isolation": ratio,
                "mcc_pearson": float(mcc),
                "wall_s": time.perf_counter() - start,
            }
        )
        print(records[-1], flush=True)
    return records


#: Clean families for the false-positive count: name -> draw(rng, shape).
FAMILIES = {
    "gaussian": lambda r, shape: r.normal(size=shape),
    "laplace": lambda r, shape: r.laplace(size=shape),
    "student-t(5)": lambda r, shape: r.standard_t(5, size=shape),
    "student-t(3)": lambda r, shape: r.standard_t(3, size=shape),
    "lognormal(0, 1)": lambda r, shape: r.lognormal(0.0, 1.0, size=shape),
    "student-t(2)": lambda r, shape: r.standard_t(2, size=shape),
    "lognormal(0, 2)": lambda r, shape: r.lognormal(0.0, 2.0, size=shape),
    "cauchy": lambda r, shape: r.standard_cauchy(size=shape),
}


def false_positives(sizes: Sequence[int], draws: int, seed: int = 0) -> list[dict]:
    """The share of ``draws`` clean ``(n, 5)`` samples of each family that the rule refuses."""
    rng = np.random.default_rng(seed)
    records = []
    for name, draw in FAMILIES.items():
        for n in sizes:
            refused = 0
            for _ in range(draws):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", nica.fitting.data.OutlierWarning)
                        nica.fitting.data.standardise(draw(rng, (n, 5)))
                except ValueError as err:
                    refused += "gross outlier" in str(err)
            records.append({"family": name, "n": n, "draws": draws, "refused": refused / draws})
    return records


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = experiment_parser(
        __doc__,
        out=Path("results/outlier_tolerance"),
        smoke={
            "sizes": [25],
            "squashes": [1.0, 30.0],
            "epochs": 2,
            "draws": 2,
            "depth": "2",
            "restarts": 1,
        },
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100])
    parser.add_argument("--squashes", type=float, nargs="+", default=list(SQUASHES))
    parser.add_argument("--epochs", type=int, default=nica.FitConfig().loop.epochs)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument(
        "--depth", default=nica.FitConfig().flat()["depth"], help="auto or an integer"
    )
    parser.add_argument("--restarts", type=int, default=nica.FitConfig().restarts.count)
    args = parser.parse_args(argv)
    clean = false_positives([50, 200, 4000, 40000], args.draws)
    # The fits need the refused data: switch the check off in this process from here on.
    limit, nica.fitting.data.ISOLATION = nica.fitting.data.ISOLATION, np.inf
    records = []
    try:
        for per_segment in args.sizes:
            overrides = {"samples_per_segment": per_segment}
            depth = args.depth if args.depth == "auto" else int(args.depth)
            fit = {"epochs": args.epochs, "depth": depth, "restarts": args.restarts}
            records += measure("ivae", overrides, args.squashes, fit)
    finally:
        nica.fitting.data.ISOLATION = limit
    rows = [
        (
            r["n_samples"],
            f"{r['target_squash']:g}",
            f"{r['squash']:.3g}",
            f"{r['robust_z']:.3g}",
            f"{r['isolation']:.3g}",
            f"{r['mcc_pearson']:.4f}",
            f"{r['wall_s']:.0f}",
        )
        for r in records
    ]
    header = ("N", "target squash", "squash", "robust z", "isolation", "MCC", "fit s")
    fits = markdown_table(header, rows)
    refusals = markdown_table(
        ("family", "N", "draws", "refused"),
        [(r["family"], r["n"], r["draws"], f"{r['refused']:.3f}") for r in clean],
    )
    text = markdown_document(
        "Outlier tolerance",
        "Default fits of the `ivae` preset (data seed 0) with one row moved out along every"
        " column; MCC on the other rows. Squash, robust z and isolation are medians over the"
        f" columns. `nica.fitting.data` refuses a row whose isolation is above {limit:g}"
        f" (`ISOLATION`) and warns from {nica.fitting.data.WARN_ISOLATION:g}"
        " (`WARN_ISOLATION`), both"
        f" only beyond {nica.fitting.data.MIN_OUTLIER_Z:g} robust standard deviations.",
        fits,
        "Clean samples (5 columns) that the rule refuses (a warning is not counted):",
        refusals,
        "Command: `.venv/bin/python -m experiments.outlier_tolerance`.",
    )
    write_report(args.out, {"fits": records, "clean": clean}, text)
    return records


if __name__ == "__main__":
    main()
