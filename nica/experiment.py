"""Identifiability experiments: data from ``synthetic``, several models and seeds, a report.

``nica run [CONFIG]`` calls :func:`run_experiment`. Every (setting, model, seed) cell is written
atomically to ``OUT/cells/`` as it finishes; a rerun skips finished cells (``force`` recomputes),
so an interrupted run loses nothing and ends with the same report. Configs are code, in
:data:`EXPERIMENTS` (see each one's docstring for its command line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from nica.estimator import FitConfig, fit_arrays_seeds
from nica.metrics import mean_correlation_coefficient
from nica.storage import load_npz, save_npz, write_json

__all__ = ["EXPERIMENTS", "ExperimentConfig", "Setting", "run_experiment"]

MODELS = ("conditional", "unconditional", "fastica")
RECOVERED_MCC = 0.95  # median Pearson MCC at which a report calls the sources recovered


@dataclasses.dataclass(frozen=True)
class Setting:
    """One data setting: a ``synthetic`` preset with overrides, shown as ``label``."""

    label: str
    preset: str
    overrides: tuple[tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: settings x models x seeds.

    Attributes:
      name: results go to ``results/<name>`` by default.
      description: one line for the report.
      settings: the data settings (the swept variable).
      sweep: name of the swept quantity (x axis of the MCC plot).
      seeds: data and fit seeds.
      models: any of ``conditional``, ``unconditional``, ``fastica`` (needs scikit-learn).
      fit: ``FitConfig`` field overrides shared by the nica models.
      command: the command that reproduces the report (default ``nica run <name>``).
    """

    name: str
    description: str
    settings: tuple[Setting, ...]
    sweep: str = "setting"
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = MODELS
    fit: tuple[tuple[str, object], ...] = ()
    command: str | None = None

    def smoke(self) -> ExperimentConfig:
        """A tiny version (2-D data, 2 restarts x 1 epoch + 2 epochs, 1 seed) for the tests."""
        small = (("n_sources", 2), ("n_segments", 4), ("samples_per_segment", 60))
        settings = tuple(
            Setting(s.label, s.preset, tuple(dict(s.overrides + small).items()))
            for s in self.settings[:2]
        )
        tiny = (("epochs", 2), ("eval_every", 1), ("restarts", 2), ("restart_epochs", 1))
        fit = tuple(dict(self.fit + tiny).items())
        return dataclasses.replace(self, settings=settings, seeds=(0,), fit=fit)


def _cell_name(setting: Setting, model: str, seed: int) -> str:
    return f"{setting.label}__{model}__seed{seed}"


def _fit_cells(
    config: ExperimentConfig,
    setting: Setting,
    model: str,
    seeds: list[int],
    cells: Path,
    vmap: bool,
) -> list[dict]:
    """Fits ``model`` on the data of ``setting`` for each seed and writes one record per seed.

    The nica models train all ``seeds`` together (``vmap``, sharded across local devices) unless
    ``vmap`` is false. Each record's ``wall_s`` is its group's wall time over the group's size.
    """
    from synthetic import make_preset

    datasets = [make_preset(setting.preset, seed, **dict(setting.overrides)) for seed in seeds]
    together = vmap and model != "fastica"
    groups = [list(range(len(seeds)))] if together else [[i] for i in range(len(seeds))]
    records = []
    for group in groups:
        start = time.perf_counter()
        fits = {}  # seed index -> (s_hat or None, history, best val NLL, divergence message)
        if model == "fastica":
            from sklearn.decomposition import FastICA

            (i,) = group
            ica = FastICA(whiten="unit-variance", random_state=seeds[i], max_iter=1000)
            fits[i] = (ica.fit_transform(datasets[i].x), None, None, None)
        else:
            fit_config = FitConfig(conditional=model == "conditional", **dict(config.fit))
            fitted = fit_arrays_seeds(
                [dataclasses.replace(fit_config, seed=seeds[i]) for i in group],
                [datasets[i].x for i in group],
                [datasets[i].u for i in group],
            )
            for i, f in zip(group, fitted, strict=True):
                r = f.result
                s_hat = None if r.diverged else f.transform(datasets[i].x)
                fits[i] = (s_hat, r.history, r.best_val_nll, r.diverged)
        wall = (time.perf_counter() - start) / len(group)
        for i in group:
            s_hat, history, val_nll, error = fits[i]
            record = {"setting": setting.label, "model": model, "seed": seeds[i]}
            record["fitted_together"] = len(group)
            record["machine"] = _machine()
            if error is not None:
                records.append({**record, "status": "diverged", "error": error, "wall_s": wall})
                continue
            record.update(status="ok", wall_s=wall)
            if val_nll is not None:
                record["val_nll"] = val_nll
            s = datasets[i].s
            for method in ("pearson", "spearman"):
                record[f"mcc_{method}"] = float(mean_correlation_coefficient(s, s_hat, method).mcc)
            record["history"] = history
            save_npz(cells / f"{_cell_name(setting, model, seeds[i])}.npz", s=s, s_hat=s_hat)
            records.append(record)
    return records


def _machine() -> str:
    """Where a cell ran: JAX platform and the CPU cores this process may use."""
    import jax

    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere all cores count
    cores = len(affinity(0)) if affinity else os.cpu_count()
    return f"{jax.devices()[0].platform}, {cores} CPU cores"


def _summary_rows(config: ExperimentConfig, records: list[dict]) -> list[dict]:
    rows = []
    for setting in config.settings:
        for model in config.models:
            cell = [r for r in records if r["setting"] == setting.label and r["model"] == model]
            ok = [r for r in cell if r["status"] == "ok"]
            row = {"setting": setting.label, "model": model, "n": len(ok)}
            row["diverged"] = len(cell) - len(ok)
            for key in ("mcc_pearson", "mcc_spearman", "wall_s"):
                values = np.array([r[key] for r in ok]) if ok else np.array([np.nan])
                row[key] = (float(values.mean()), float(values.std()), float(np.median(values)))
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


def _report(config: ExperimentConfig, rows: list[dict], records: list[dict], out: Path) -> str:
    lines = [
        f"# {config.name}",
        "",
        config.description,
        "",
        f"Seeds: {list(config.seeds)}. Command: `{config.command or f'nica run {config.name}'}`.",
        "",
        f"| {config.sweep} | model | Pearson MCC mean ± std | median | Spearman MCC mean ± std"
        " | median | fit time (s) | n | diverged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, s, t = r["mcc_pearson"], r["mcc_spearman"], r["wall_s"]
        lines.append(
            f"| {r['setting']} | {r['model']} | {p[0]:.3f} ± {p[1]:.3f} | {p[2]:.3f} "
            f"| {s[0]:.3f} ± {s[1]:.3f} | {s[2]:.3f} | {t[0]:.1f} | {r['n']} | {r['diverged']} |"
        )
    lines += ["", f"Recovered = median Pearson MCC >= {RECOVERED_MCC}:", ""]
    lines += recovery_verdicts(rows)
    lines += [
        "",
        "Fit time is wall time per fit, including the restarts, on "
        + (" / ".join(sorted({r["machine"] for r in records if "machine" in r})) or "this machine")
        + ". Seeds fitted together in one vmapped program share its time equally.",
        "",
        "Figures: `mcc.png`, `scatter.png`, `training_curves.png`.",
        "",
    ]
    text = "\n".join(lines)
    tmp = out / "report.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "report.md")
    return text


def _figures(config: ExperimentConfig, rows: list[dict], records: list[dict], out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nica.plots import plot_matched_scatter, plot_training_curves

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    labels = [s.label for s in config.settings]
    for model in config.models:
        model_rows = [r for r in rows if r["model"] == model]
        means = [r["mcc_pearson"][0] for r in model_rows]
        stds = [r["mcc_pearson"][1] for r in model_rows]
        ax.errorbar(range(len(labels)), means, yerr=stds, marker="o", capsize=3, label=model)
    ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=8)
    ax.set_xlabel(config.sweep)
    ax.set_ylabel("Pearson MCC")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(out / "mcc.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    # Representative seed: the median-MCC conditional fit of the first setting.
    first = config.settings[0].label
    ok = [r for r in records if r["setting"] == first and r["status"] == "ok"]
    chosen = sorted(
        (r for r in ok if r["model"] == config.models[0]), key=lambda r: r["mcc_pearson"]
    )
    if not chosen:
        return
    seed = chosen[len(chosen) // 2]["seed"]
    arrays = load_npz(
        out / "cells" / f"{_cell_name(config.settings[0], config.models[0], seed)}.npz"
    )
    match = mean_correlation_coefficient(arrays["s"], arrays["s_hat"])
    plot_matched_scatter(
        arrays["s"],
        arrays["s_hat"],
        match.matching,
        match.correlations,
        out / "scatter.png",
        title=f"{config.models[0]}, {first}, seed {seed}: Pearson MCC {match.mcc:.3f}",
    )
    curves = {
        r["model"]: r["history"] for r in ok if r["seed"] == seed and r.get("history") is not None
    }
    if curves:
        plot_training_curves(curves, out / "training_curves.png")


def run_experiment(
    name: str | ExperimentConfig,
    *,
    out: str | Path | None = None,
    force: bool = False,
    smoke: bool = False,
    vmap: bool = True,
    seeds: list[int] | None = None,
    log=sys.stderr,
) -> list[dict]:
    """Runs (or resumes) an experiment and writes its report, tables and figures.

    Args:
      name: a key of :data:`EXPERIMENTS` or a config.
      out: results directory (default ``results/<name>``, or ``results/scratch/<name>`` for smoke).
      force: recompute cells that are already finished.
      smoke: run the config's tiny version.
      vmap: train the seeds of each (setting, model) together in one ``vmap``-ped program,
        sharded across local devices; ``False`` fits them one after another.
      seeds: run these seeds instead of the config's (e.g. one host's share of a multi-host
        run; the report then covers these seeds).
      log: where progress lines go.

    Returns:
      The summary rows (one per setting and model).
    """
    if isinstance(name, str):
        if name not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
        config = EXPERIMENTS[name]
    else:
        config = name
    config = config.smoke() if smoke else config
    if seeds is not None:
        if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
            raise ValueError(f"seeds must be non-negative integers, got {seeds}")
        config = dataclasses.replace(config, seeds=tuple(dict.fromkeys(seeds)))
    unknown = set(config.models) - set(MODELS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; known: {', '.join(MODELS)}")
    default = Path("results") / ("scratch" if smoke else "") / config.name
    out = Path(out) if out is not None else default
    cells = out / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    records = []
    for setting in config.settings:
        for model in config.models:
            done, todo = {}, []
            for seed in config.seeds:
                path = cells / f"{_cell_name(setting, model, seed)}.json"
                if path.is_file() and not force:
                    done[seed] = json.loads(path.read_text())
                else:
                    todo.append(seed)
            if todo:
                for record in _fit_cells(config, setting, model, todo, cells, vmap):
                    write_json(cells / f"{_cell_name(setting, model, record['seed'])}.json", record)
                    done[record["seed"]] = record
                    mcc = record.get("mcc_pearson", float("nan"))
                    print(
                        f"  {setting.label:>12} {model:>13} seed {record['seed']}: "
                        f"{record['status']}, MCC {mcc:.3f}, {record['wall_s']:.1f} s/fit",
                        file=log,
                        flush=True,
                    )
            records.extend(done[seed] for seed in config.seeds)
    rows = _summary_rows(config, records)
    write_json(out / "results.json", {"rows": rows, "cells": records})
    with open(out / "results.csv.tmp", "w") as f:
        f.write("setting,model,seed,status,mcc_pearson,mcc_spearman,wall_s\n")
        for r in records:
            f.write(
                f"{r['setting']},{r['model']},{r['seed']},{r['status']},"
                f"{r.get('mcc_pearson', '')},{r.get('mcc_spearman', '')},{r.get('wall_s', '')}\n"
            )
    (out / "results.csv.tmp").replace(out / "results.csv")
    _figures(config, rows, records, out)
    print(_report(config, rows, records, out), file=log)
    return rows


def _mixing_depths() -> tuple[Setting, ...]:
    return tuple(Setting(f"L={n}", "ivae", (("n_layers", n),)) for n in range(1, 6))


#: Shipped experiments; ``nica run NAME``.
EXPERIMENTS: dict[str, ExperimentConfig] = {
    "demo": ExperimentConfig(
        name="demo",
        description=(
            "Default demo (`make demo`, `nica run demo`): 3 Gaussian sources whose variances"
            " change over 20 segments x 500 points (TCL-style nonstationarity), 2-layer"
            " leaky-ReLU mixing; conditional (Eq. 4) vs unconditional (Eq. 3), both with Gaussian"
            " component densities, vs FastICA. Without u, Gaussian components are not identifiable."
        ),
        settings=(
            Setting(
                "demo",
                "ivae",
                (
                    ("n_sources", 3),
                    ("n_segments", 20),
                    ("samples_per_segment", 500),
                    ("n_layers", 2),
                    ("distribution", "gaussian"),
                ),  # fmt: skip
            ),
        ),
        seeds=(0, 1, 2, 3, 4),
        fit=(("epochs", 150), ("prior", "gaussian")),
    ),
    "ivae": ExperimentConfig(
        name="ivae",
        description="iVAE benchmark (`nica run ivae`): 5 sources, 40 x 1000, 3-layer mixing.",
        settings=(Setting("ivae", "ivae"),),
        seeds=(0, 1, 2, 3, 4),
    ),
    "icebeem": ExperimentConfig(
        name="icebeem",
        description=(
            "ICE-BeeM/TCL benchmark (`nica run icebeem`): 5 sources, 20 x 1000, L in {2, 4}."
        ),
        settings=(Setting("L=2", "icebeem-l2"), Setting("L=4", "icebeem-l4")),
        sweep="mixing layers",
        seeds=(0, 1, 2, 3, 4),
    ),
    "depth": ExperimentConfig(
        name="depth",
        description=(
            "Sweep of mixing depth 1-5 on the iVAE setting (`nica run depth`); the demixer keeps"
            " its default depth 4."
        ),
        settings=_mixing_depths(),
        sweep="mixing layers",
    ),
    "segments": ExperimentConfig(
        name="segments",
        description="Sweep of the number of segments (`nica run segments`).",
        settings=tuple(Setting(f"M={m}", "ivae", (("n_segments", m),)) for m in (5, 10, 20, 40)),
        sweep="segments",
    ),
    "samples": ExperimentConfig(
        name="samples",
        description="Sweep of samples per segment (`nica run samples`).",
        settings=tuple(
            Setting(f"n={n}", "ivae", (("samples_per_segment", n),)) for n in (100, 250, 500, 1000)
        ),
        sweep="samples per segment",
    ),
    "dimension": ExperimentConfig(
        name="dimension",
        description=(
            "Sweep of source dimension 5 -> 50 on the iVAE setting (40 segments x 1000 points,"
            " 3-layer mixing; `nica run dimension`). Scale-only segment variation identifies"
            " the sources only with at least D + 1 segments, so D = 50 (40 segments) is past"
            " what the theory covers."
        ),
        settings=tuple(Setting(f"D={d}", "ivae", (("n_sources", d),)) for d in (5, 10, 20, 50)),
        sweep="source dimension",
    ),
}
