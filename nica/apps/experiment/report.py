"""An experiment's outputs: summary rows, report.md, results.json/.csv and the figures."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from nica.apps.experiment.design import ExperimentConfig
from nica.core.metrics import mean_correlation_coefficient
from nica.fitting.config import AUTO_DEPTH_RULE, AUTO_WARM_START_RULE
from nica.util.files import load_npz, write_json, write_text
from nica.util.provenance import describe, environment

__all__ = ["FIGURES", "RECOVERED_MCC", "recovery_verdicts", "summary_rows", "write_outputs"]

RECOVERED_MCC = 0.95  # median Pearson MCC at which a report calls the sources recovered
FIGURES = ("mcc.png", "scatter.png", "training_curves.png")


def summary_rows(config: ExperimentConfig, records: list[dict], pending: list[str]) -> list:
    """One row per setting and model: ``n`` finished fits, ``diverged``, ``pending`` cells,
    (mean, std, median) of ``mcc_pearson``, ``mcc_spearman``, ``wall_s``, ``nll_gap``, and the
    ``depths`` kept in seed order."""
    rows = []
    for setting in config.settings:
        for model in config.models:
            cell = [r for r in records if r["setting"] == setting.label and r["model"] == model]
            ok = [r for r in cell if r["status"] == "ok"]
            prefix = f"{setting.label}__{model}__"
            row = {"setting": setting.label, "model": model, "n": len(ok)}
            row["diverged"] = len(cell) - len(ok)
            row["pending"] = sum(name.startswith(prefix) for name in pending)
            for key in ("mcc_pearson", "mcc_spearman", "wall_s", "nll_gap"):
                values = np.array([r.get(key, np.nan) for r in ok]) if ok else np.array([np.nan])
                row[key] = (float(values.mean()), float(values.std()), float(np.median(values)))
            row["depths"] = [r["depth"] for r in ok if "depth" in r]  # in seed order
            rows.append(row)
    return rows


def recovery_verdicts(rows: list[dict]) -> list[str]:
    """One Markdown bullet per setting: which models recovered the sources (median Pearson MCC
    at least :data:`RECOVERED_MCC`) and which did not."""
    lines = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        verdict = {
            r["model"]: r["mcc_pearson"][2] >= RECOVERED_MCC
            for r in rows
            if r["setting"] == setting
        }
        yes = [m for m, ok in verdict.items() if ok]
        no = [m for m, ok in verdict.items() if not ok]
        parts = [f"recovered by {', '.join(yes)}" if yes else "recovered by no model"]
        parts += [f"not by {', '.join(no)}"] if yes and no else []
        lines.append(f"- {setting}: {'; '.join(parts)}.")
    return lines


def _report(config: ExperimentConfig, rows: list[dict], records: list[dict]) -> str:
    """The Markdown report: table, verdicts, machine note."""
    lines = [
        f"# {config.name}",
        "",
        config.description,
        "",
        f"Seeds: {list(config.seeds)}. Command: `{config.reproduce}`.",
        "",
        f"| {config.sweep} | model | Pearson MCC mean ± std | median | Spearman MCC mean ± std"
        " | median | NLL gap (nats) | demixer depth | fit time (s) | n | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, s, t, g = r["mcc_pearson"], r["mcc_spearman"], r["wall_s"], r["nll_gap"][2]
        gap = "–" if np.isnan(g) else f"{g:.3f}"
        depths = " ".join(map(str, r.get("depths") or [])) or "–"
        lines.append(
            f"| {r['setting']} | {r['model']} | {p[0]:.3f} ± {p[1]:.3f} | {p[2]:.3f} "
            f"| {s[0]:.3f} ± {s[1]:.3f} | {s[2]:.3f} | {gap} | {depths} | {t[0]:.1f} | {r['n']} "
            f"| {r['diverged']} |"
        )
    unfinished = [f"{r['setting']} {r['model']}: {r['pending']}" for r in rows if r["pending"]]
    if unfinished:
        lines += [
            "",
            "Unfinished cells, not in the table (the report was written before they ran; the"
            f" command above completes it): {'; '.join(unfinished)}.",
        ]
    targets = {r["model"]: r["target"] for r in records if r.get("target", "s") != "s"}
    if targets:
        scored = ", ".join(f"{model} against {target}" for model, target in targets.items())
        lines += [
            "",
            f"MCC of every model against the true sources s, except {scored}: TCL's features"
            " are the sufficient statistics of scale-modulated sources, which carry no sign.",
        ]
    lines += ["", f"Recovered = median Pearson MCC >= {RECOVERED_MCC}:", ""]
    lines += recovery_verdicts(rows)
    machines = " / ".join(sorted({r["machine"] for r in records if "machine" in r}))
    lines += [
        "",
        "NLL gap: median over seeds of the fit's held-out NLL minus the true model's (the exact"
        " inverse of the mixing with its own source densities; for the unconditional model the"
        " true marginal over segments), in nats per sample on fresh samples of the true model."
        " Near 0: the fit is as likely as the truth (the optimiser found the optimum); large:"
        " optimisation or representation falls short.",
        "",
        *_per_seed(config, records),
        "Demixer depth: the depth each seed's fit kept, in seed order (with `depth` `auto`, the"
        f" rule is {AUTO_DEPTH_RULE}; with `warm_start` `auto`, {AUTO_WARM_START_RULE}: the"
        " deep fit starts from each seed's linear fit).",
        "",
        "Fit time is wall time per fit, including the restarts and any warm start, on"
        f" {machines or 'this machine'}. Seeds fitted together in one vmapped program share its"
        " time equally.",
        "",
        "Figures: `mcc.png` (every seed, median marked), `scatter.png` (true vs recovered"
        " sources, one row per model), `training_curves.png`.",
        "",
        *_provenance(records),
    ]
    return "\n".join(lines)


def _per_seed(config: ExperimentConfig, records: list[dict]) -> list[str]:
    """Report lines: each finished fit's MCC, held-out and training gaps and depth (fits that
    have a gap: nica's models), in the order of the settings, models and seeds."""
    order = {
        (s.label, m): i
        for i, (s, m) in enumerate((s, m) for s in config.settings for m in config.models)
    }
    gapped = [r for r in records if r["status"] == "ok" and "nll_gap" in r]
    if not gapped:
        return []
    gapped.sort(key=lambda r: (order.get((r["setting"], r["model"]), len(order)), r["seed"]))
    lines = [
        "Per seed: the held-out gap as above, and the training gap, the same difference on"
        " the data set the fit was given (its validation split included). A training gap as"
        " large as the held-out one means the fit stopped short of the maximum likelihood"
        " (optimisation or representation); a training gap near 0 under a large held-out gap"
        " means overfitting.",
        "",
        f"| {config.sweep} | model | seed | Pearson MCC | held-out gap | training gap | depth |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in gapped:
        train = f"{r['train_gap']:.3f}" if "train_gap" in r else "–"
        lines.append(
            f"| {r['setting']} | {r['model']} | {r['seed']} | {r['mcc_pearson']:.3f} "
            f"| {r['nll_gap']:.3f} | {train} | {r.get('depth', '–')} |"
        )
    return [*lines, ""]


def _provenance(records: list[dict]) -> list[str]:
    """Report lines naming the software and machine of the report and of its cells."""
    lines = [f"Report written with {describe()}."]
    cells = {describe(r["environment"]) for r in records if "environment" in r}
    old = sum("environment" not in r for r in records)
    if cells:
        lines += ["", "Cells computed with:", "", *(f"- {c}" for c in sorted(cells))]
    if old:
        lines += ["", f"{old} cell(s) computed before environments were recorded."]
    return [*lines, ""]


def _results_csv(records: list[dict]) -> str:
    lines = [
        "setting,model,seed,status,mcc_pearson,mcc_spearman,nll_gap,train_gap,depth,wall_s,key"
    ]
    for r in records:
        lines.append(
            f"{r['setting']},{r['model']},{r['seed']},{r['status']},{r.get('mcc_pearson', '')},"
            f"{r.get('mcc_spearman', '')},{r.get('nll_gap', '')},{r.get('train_gap', '')},"
            f"{r.get('depth', '')},"
            f"{r.get('wall_s', '')},{r.get('key', '')}"
        )
    return "\n".join(lines) + "\n"


def write_outputs(config: ExperimentConfig, rows: list, records: list, out: Path) -> None:
    """Writes results.json, results.csv, the figures and report.md (last), all atomically."""
    write_json(out / "results.json", {"environment": environment(), "rows": rows, "cells": records})
    write_text(out / "results.csv", _results_csv(records))
    written = _figures(config, records, out)
    for name in set(FIGURES) - set(written):  # never leave an older run's figure beside these
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    write_text(out / "report.md", _report(config, rows, records))


def _figures(config: ExperimentConfig, records: list[dict], out: Path) -> list[str]:
    """Draws :data:`FIGURES` from the records and cell arrays; returns the names written."""
    from nica.apps import plots

    ok = [r for r in records if r["status"] == "ok"]
    mcc = {(r["setting"], r["model"]): [] for r in records}
    for r in ok:
        mcc[(r["setting"], r["model"])].append(r["mcc_pearson"])
    labels = [s.label for s in config.settings]
    plots.plot_mcc_seeds(mcc, labels, list(config.models), out / "mcc.png", sweep=config.sweep)
    written = ["mcc.png"]
    # Representative seed: the median-MCC fit of the first model on the first setting.
    first = config.settings[0]
    chosen = sorted(
        (r for r in ok if r["setting"] == first.label and r["model"] == config.models[0]),
        key=lambda r: r["mcc_pearson"],
    )
    if not chosen:
        return written
    seed = chosen[len(chosen) // 2]["seed"]
    shown = [r for r in ok if r["setting"] == first.label and r["seed"] == seed]
    panels = {}
    for r in shown:
        arrays = load_npz(out / "cells" / f"{first.label}__{r['model']}__seed{seed}.npz")
        match = mean_correlation_coefficient(arrays["s"], arrays["s_hat"])
        label = r["model"] if r.get("target", "s") == "s" else f"{r['model']} vs {r['target']}"
        panels[label] = (arrays["s"], arrays["s_hat"], match.matching, match.correlations)
    where = f"{first.label}, seed {seed}"
    plots.plot_scatter_by_model(panels, out / "scatter.png", title=f"True vs recovered: {where}")
    written.append("scatter.png")
    curves = {r["model"]: r["history"] for r in shown if r.get("history") is not None}
    if curves:
        plots.plot_training_curves(curves, out / "training_curves.png", title=where)
        written.append("training_curves.png")
    return written
