"""Does a component's reliability across seeds (nica.stability) track its true recovery?

For each data set of a shipped ``nica run`` config (one per setting and data seed, the data
``nica run`` fits), :func:`nica.stability` fits ``K`` seeds with the settings ``nica run`` gives
the conditional model, and its reference fit (the lowest validation NLL) is scored against the
true sources: the Pearson MCC, and per component the ``|corr|`` with the true source it is
matched to. Across data sets the mean reliability is compared with the MCC; across all
components, each reliability with its true ``|corr|``; both by Spearman's rank correlation
(``scipy.stats.spearmanr``). A reliability that tracks the truth flags the failing settings
(deep mixings) without knowing the sources.

One JSON file per data set under ``OUT/cells`` (written atomically; one that exists is never
refitted), so a run resumes, and runs on several cores split the data sets between them
(``--settings``). ``--report`` writes ``report.md``, ``results.json`` and ``reliability.png``
from the cells in ``OUT``, of every config run there.

Command (the committed report: one process per core, then the report)::

    .venv/bin/python -m experiments.stability_validation --config depth \\
        --out results/stability_validation
    .venv/bin/python -m experiments.stability_validation --out results/stability_validation \\
        --report

Smoke size (used by the tests): ``--smoke`` (the ``tiny`` preset, 2 data seeds, 2 fit seeds,
a few epochs).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.harness import (
    assignments,
    experiment_parser,
    markdown_document,
    markdown_table,
    pyplot,
    save_figure,
    write_record,
    write_report,
)
from nica.apps.experiment.cells import cell_config
from nica.apps.experiment.configs import EXPERIMENTS
from nica.apps.experiment.design import Setting
from nica.apps.experiment.fitting import setting_dataset
from nica.core.metrics import mean_correlation_coefficient
from nica.fitting.stability import DEFAULT_SEEDS, stability
from nica.methods import get_method

#: The method whose settings the fits take (``nica run``'s conditional model, Eq. 4).
MODEL = "conditional"
#: Recovered: reference MCC at least this (as ``nica run``'s reports count); flagged: mean
#: reliability below it.
FLAG_BELOW = 0.95


def settings_of(config_name: str | None, preset: str | None, labels) -> list[Setting]:
    """The data settings to run: a config's (``labels`` of them, or all), or one ``preset``."""
    if preset is not None:
        return [Setting(preset, preset)]
    settings = EXPERIMENTS[config_name].settings
    known = [s.label for s in settings]
    unknown = sorted(set(labels or ()) - set(known))
    if unknown:
        raise SystemExit(f"unknown settings {unknown} of {config_name}; known: {known}")
    return [s for s in settings if not labels or s.label in labels]


def component_truth(s: np.ndarray, s_hat: np.ndarray) -> np.ndarray:
    """``(D,)``: per column of ``s_hat``, ``|corr|`` with the true source (column of ``s``)
    matched to it by :func:`nica.core.metrics.mean_correlation_coefficient` (Pearson)."""
    result = mean_correlation_coefficient(s, s_hat)
    truth = np.zeros(s_hat.shape[1])
    truth[np.asarray(result.matching)] = np.abs(np.asarray(result.correlations))
    return truth


def run_cell(
    config_name: str | None,
    setting: Setting,
    data_seed: int,
    fit_seeds: Sequence[int],
    overrides: dict,
    cells: Path,
) -> dict:
    """Fits one data set's ``K`` seeds (unless its cell exists) and returns its record."""
    source = config_name or "preset"
    path = cells / f"{source}_{setting.label}_data{data_seed}.json".replace("=", "")
    if path.exists():
        return json.loads(path.read_text())
    dataset = setting_dataset(setting, data_seed)
    if config_name is None:
        config = get_method(MODEL).config({}, fit_seeds[0])
    else:
        config = cell_config(EXPERIMENTS[config_name], setting, get_method(MODEL), fit_seeds[0])
    start = time.perf_counter()
    st = stability(dataset.x, dataset.u, seeds=fit_seeds, config=config.replace(**overrides))
    wall = time.perf_counter() - start
    truth = component_truth(dataset.s, st.best.transform(dataset.x))
    mccs = [mean_correlation_coefficient(dataset.s, f.transform(dataset.x)).mcc for f in st.fits]
    record = {
        "config": source,
        "setting": setting.label,
        "data_seed": data_seed,
        "fit_seeds": list(st.seeds),
        "overrides": overrides,
        "reliability": st.reliability.tolist(),
        "true_corr": truth.tolist(),
        "mcc": float(truth.mean()),
        "fit_mccs": [float(m) for m in mccs],
        "val_nll": st.val_nll.tolist(),
        "reference_seed": st.seeds[st.reference],
        "depth": st.best.config.model.depth,
        "diverged": st.diverged,
        "wall_s": wall,
    }
    write_record(path, record, indent=1)
    print(
        f"{source} {setting.label} data {data_seed}: MCC {record['mcc']:.3f}, mean reliability"
        f" {np.mean(record['reliability']):.3f} ({wall:.0f} s)"
    )
    return record


def _spearman(a, b) -> dict:
    """Spearman's rank correlation of ``a`` and ``b`` with its two-sided p-value."""
    from scipy.stats import spearmanr

    result = spearmanr(a, b)
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": len(a)}


def summarise(records: list[dict]) -> dict:
    """The rank correlations: per data set (mean reliability vs reference MCC) and per
    component (reliability vs true ``|corr|``); and how many data sets, recovered or not
    (reference MCC at least :data:`FLAG_BELOW`), a mean reliability below it flags."""
    recovered = [bool(r["mcc"] >= FLAG_BELOW) for r in records]
    flagged = [bool(np.mean(r["reliability"]) < FLAG_BELOW) for r in records]
    return {
        "flags": {
            "recovered": sum(recovered),
            "failed": len(records) - sum(recovered),
            "flagged_recovered": sum(f and ok for f, ok in zip(flagged, recovered, strict=True)),
            "flagged_failed": sum(f and not ok for f, ok in zip(flagged, recovered, strict=True)),
        },
        "data_sets": _spearman(
            [np.mean(r["reliability"]) for r in records], [r["mcc"] for r in records]
        ),
        "typical_fit": _spearman(
            [np.mean(r["reliability"]) for r in records],
            [np.median(r["fit_mccs"]) for r in records],
        ),
        "components": _spearman(
            [v for r in records for v in r["reliability"]],
            [v for r in records for v in r["true_corr"]],
        ),
    }


def _figure(records: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    labels = sorted({(r["config"], r["setting"]) for r in records})
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(labels)))
    for (config, label), colour in zip(labels, colours, strict=True):
        chosen = [r for r in records if (r["config"], r["setting"]) == (config, label)]
        name = label if config == "preset" else f"{config} {label}"
        left.scatter(
            [r["mcc"] for r in chosen],
            [np.mean(r["reliability"]) for r in chosen],
            color=colour,
            label=name,
        )
        right.scatter(
            [v for r in chosen for v in r["true_corr"]],
            [v for r in chosen for v in r["reliability"]],
            color=colour,
            s=10,
        )
    left.set(xlabel="reference fit's MCC (Pearson)", ylabel="mean reliability")
    left.set_title("per data set")
    right.set(xlabel="component's true |corr|", ylabel="component's reliability")
    right.set_title("per component")
    left.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def report(out: Path) -> str:
    """Writes ``out/report.md``, ``results.json`` and ``reliability.png`` from ``out/cells``."""
    records = sorted(
        (json.loads(p.read_text()) for p in (out / "cells").glob("*.json")),
        key=lambda r: (r["config"], r["setting"], r["data_seed"]),
    )
    if len(records) < 3:
        raise SystemExit(f"{out / 'cells'} holds {len(records)} data sets; the report needs 3")
    summary = summarise(records)
    rows = [
        (
            f"{r['config']} {r['setting']}",
            r["data_seed"],
            f"{r['mcc']:.3f}",
            f"{np.mean(r['reliability']):.3f}",
            f"{min(r['reliability']):.3f}",
            " ".join(f"{m:.2f}" for m in r["fit_mccs"]),
            r["depth"],
            r["diverged"],
            f"{r['wall_s']:.0f}",
        )
        for r in records
    ]
    table = markdown_table(
        (
            "setting",
            "data seed",
            "reference MCC",
            "mean reliability",
            "lowest reliability",
            "each fit's MCC",
            "depth",
            "diverged",
            "wall (s)",
        ),
        rows,
    )
    data_sets, components = summary["data_sets"], summary["components"]
    typical = summary["typical_fit"]
    seeds = sorted({tuple(r["fit_seeds"]) for r in records})
    overrides = sorted({json.dumps(r["overrides"], sort_keys=True) for r in records})
    settings = "the defaults" if overrides == ["{}"] else ", ".join(overrides)
    configs = sorted({r["config"] for r in records} - {"preset"})
    labels = {c: sorted({r["setting"] for r in records if r["config"] == c}) for c in configs}
    flags = summary["flags"]
    text = markdown_document(
        "Reliability without ground truth against the true recovery",
        "Each data set is fitted by `nica.stability` with the fit seeds"
        f" {', '.join(map(str, seeds))} ({settings} of nica run's conditional model). Reference"
        " MCC: the Pearson MCC of the fit with the lowest validation NLL; reliability: per"
        " reference component, the median over the other fits of the matched |corr| (no"
        " ground truth used); each fit's MCC uses the truth, for comparison only.",
        f"Spearman rank correlation, per data set (mean reliability vs reference MCC):"
        f" rho = {data_sets['rho']:.3f} (p = {data_sets['p']:.2g}, n = {data_sets['n']});"
        f" per component (reliability vs true |corr|): rho = {components['rho']:.3f}"
        f" (p = {components['p']:.2g}, n = {components['n']}); per data set against the"
        f" median MCC of its {len(records[0]['fit_mccs'])} fits (what one fit gives):"
        f" rho = {typical['rho']:.3f} (p = {typical['p']:.2g}).",
        f"At {FLAG_BELOW} (recovered: reference MCC >= {FLAG_BELOW}, as nica run's reports"
        f" count; flagged: mean reliability < {FLAG_BELOW}): {flags['flagged_failed']} of"
        f" {flags['failed']} data sets not recovered were flagged, and"
        f" {flags['flagged_recovered']} of {flags['recovered']} recovered ones.",
        table,
        "Figure: `reliability.png` (left: per data set; right: per component).",
        "Commands: "
        + ", ".join(
            f"`python -m experiments.stability_validation --config {c} --settings"
            f" {' '.join(shlex.quote(label) for label in labels[c])} --out OUT`"
            for c in configs
        )
        + " (OUT: `results/stability_validation`), then `--report`.",
    )
    _figure(records, out / "reliability.png")
    write_report(out, {"summary": summary, "records": records}, text)
    return text


def main(argv: Sequence[str] | None = None) -> None:
    parser = experiment_parser(
        __doc__,
        out=Path("results/stability_validation"),
        smoke={
            "preset": "tiny",
            "data_seeds": [0, 1, 2],
            "fit_seeds": [0, 1],
            "set": ["epochs=3", "restarts=1", "depth=2", "eval_every=1"],
        },
    )
    parser.add_argument("--config", choices=sorted(EXPERIMENTS), default="depth")
    parser.add_argument("--preset", default=None, help="one synthetic preset instead of --config")
    parser.add_argument("--settings", nargs="+", default=None, help="labels (default: all)")
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fit-seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--set", nargs="+", default=[], metavar="NAME=VALUE")
    parser.add_argument("--report", action="store_true", help="only write the report")
    args = parser.parse_args(argv)
    if not args.report:
        config = None if args.preset else args.config
        overrides = assignments(args.set)
        for setting in settings_of(config, args.preset, args.settings):
            for seed in args.data_seeds:
                run_cell(config, setting, seed, args.fit_seeds, overrides, args.out / "cells")
    if args.report or args.smoke:
        report(args.out)


if __name__ == "__main__":
    main()
