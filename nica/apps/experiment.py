"""Identifiability experiments: data from ``synthetic``, several models and seeds, a report.

``nica run [CONFIG]`` calls :func:`run_experiment`. Configs are code, in :data:`EXPERIMENTS`.
A user's run writes to the git-ignored ``runs/<name>`` (:func:`default_out`); the committed
reports are regenerated explicitly with ``nica run <name> --out results/<name>``.

Every (setting, model, seed) cell is written atomically to ``OUT/cells/`` as it finishes, keyed
by :func:`cell_key` (a hash of everything that determines it), so a rerun skips finished cells,
an interrupted run loses nothing, and a cell computed under another config is never mixed into a
report: it is refused (``force`` recomputes it). Several processes may share one ``OUT`` (the
multi-host recipe): each takes a claim file per cell before fitting it and skips cells claimed
by a live process; the report is written only once every cell is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import nica
from nica.core.metrics import mean_correlation_coefficient
from nica.fitting.estimator import AUTO_DEPTH_RULE
from nica.util.claims import claim, release
from nica.util.files import load_npz, read_json, save_npz, write_json, write_text
from nica.util.provenance import describe, environment

__all__ = [
    "CLAIM_TIMEOUT_S",
    "EXPERIMENTS",
    "RESULT_FORMAT",
    "ExperimentConfig",
    "Setting",
    "cell_key",
    "default_out",
    "run_experiment",
]

#: Every model ``nica run`` knows: nica's two, FastICA, and the baselines of ``nica.methods``.
MODELS = ("conditional", "unconditional", "fastica", "ivae", "tcl")
#: The models of a config that names none.
DEFAULT_MODELS = ("conditional", "unconditional", "fastica")
#: The benchmark configs' models: nica's, FastICA and the baselines side by side.
BENCHMARK_MODELS = (*DEFAULT_MODELS, "ivae", "tcl")
RECOVERED_MCC = 0.95  # median Pearson MCC at which a report calls the sources recovered
#: Version of the cell record; bump it when what a cell stores or means changes.
RESULT_FORMAT = 3  # 3: cells hold the held-out NLL gap to the true model
#: Seconds after which a claim file whose owner stopped refreshing it counts as abandoned.
CLAIM_TIMEOUT_S = 2 * 3600.0
_CLAIM_REFRESH_S = 60.0  # a fitting process touches its claims at most this often
FIGURES = ("mcc.png", "scatter.png", "training_curves.png")
_FASTICA = {"whiten": "unit-variance", "max_iter": 1000}
_NICA_MODELS = ("conditional", "unconditional")
_TEST_SEED = 10_000  # fresh held-out samples of the true model use seed _TEST_SEED + data seed


#: ``(model, field, value)`` triples: settings of a baseline's config (``nica.methods``).
ModelFit = tuple[tuple[str, str, object], ...]


@dataclasses.dataclass(frozen=True)
class Setting:
    """One data setting: a ``synthetic`` preset with overrides, shown as ``label``;
    ``model_fit`` sets baseline fields for this setting only (e.g. ``(("tcl", "depth", 4),)``,
    TCL's depth matched to the mixing's as ICE-BeeM runs it)."""

    label: str
    preset: str
    overrides: tuple[tuple[str, object], ...] = ()
    model_fit: ModelFit = ()


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """An experiment: settings x models x seeds.

    Attributes:
      name: a user's run goes to ``runs/<name>`` (git-ignored); the committed report in
        ``results/<name>`` is regenerated with ``nica run <name> --out results/<name>``.
      description: one line for the report.
      settings: the data settings (the swept variable).
      sweep: name of the swept quantity (x axis of the MCC plot).
      seeds: data and fit seeds.
      models: any of :data:`MODELS`: ``conditional``, ``unconditional``, ``fastica`` (needs
        scikit-learn), and the baselines ``ivae`` and ``tcl`` (``nica.methods``; TCL's final
        linear ICA needs scikit-learn).
      fit: ``FitConfig`` field overrides shared by the nica models.
      model_fit: baseline config fields for every setting (``(model, field, value)``
        triples; a setting's own ``model_fit`` wins).
      command: the command that regenerates the committed report (default
        ``nica run <name> --out results/<name>``), quoted in the report.
    """

    name: str
    description: str
    settings: tuple[Setting, ...]
    sweep: str = "setting"
    seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = DEFAULT_MODELS
    fit: tuple[tuple[str, object], ...] = ()
    model_fit: ModelFit = ()
    command: str | None = None

    @property
    def reproduce(self) -> str:
        """The command line quoted in the report (``command`` or the default)."""
        return self.command or f"nica run {self.name} --out results/{self.name}"

    def smoke(self) -> ExperimentConfig:
        """A tiny version (2-D data, a 2-layer demixer, 2 restarts x 1 epoch + 2 epochs, 1 seed;
        baselines a few steps) for the tests."""
        small = (("n_sources", 2), ("n_segments", 4), ("samples_per_segment", 60))
        settings = tuple(
            dataclasses.replace(s, overrides=tuple(dict(s.overrides + small).items()))
            for s in self.settings[:2]
        )
        tiny = (("epochs", 2), ("eval_every", 1), ("restarts", 2), ("restart_epochs", 1))
        tiny += (("depth", 2),)  # one depth: ``auto``'s search is tested on its own
        fit = tuple(dict(self.fit + tiny).items())
        model_fit = self.model_fit + _SMOKE_MODEL_FIT
        return dataclasses.replace(
            self, settings=settings, seeds=(0,), fit=fit, model_fit=model_fit
        )


_SMOKE_MODEL_FIT: ModelFit = (
    ("ivae", "epochs", 2),
    ("ivae", "hidden", 8),
    ("tcl", "init_steps", 4),
    ("tcl", "steps", 8),
    ("tcl", "batch_size", 60),
)


def default_out(name: str, *, smoke: bool = False) -> Path:
    """Where ``nica run NAME`` writes without ``--out``: ``runs/NAME`` (``runs/NAME-smoke``)."""
    return Path("runs") / (f"{name}-smoke" if smoke else name)


# ---------------------------------------------------------------------------- cell identity


def _fit_config(config: ExperimentConfig, model: str, seed: int):
    """The resolved ``nica.FitConfig`` of a nica model's cell."""
    return nica.FitConfig(conditional=model == "conditional", seed=seed, **dict(config.fit))


def _baseline_config(config: ExperimentConfig, setting: Setting, model: str, seed: int):
    """The resolved config of a baseline's cell (``IVAEConfig`` / ``TCLConfig``)."""
    from nica.methods import get_baseline

    fields = {f: v for m, f, v in config.model_fit + setting.model_fit if m == model}
    return get_baseline(model).config(**fields, seed=seed).validate()


def cell_recipe(config: ExperimentConfig, setting: Setting, model: str, seed: int) -> dict:
    """Everything that determines a cell's result, as a JSON-ready dict."""
    recipe = {"format": RESULT_FORMAT, "model": model}
    if model == "fastica":
        recipe["fit"] = {**_FASTICA, "random_state": seed}
    elif model in _NICA_MODELS:
        recipe["fit"] = _fit_config(config, model, seed).to_dict()  # resolved values included
    else:
        from nica.methods import get_baseline

        recipe["fit"] = _baseline_config(config, setting, model, seed).to_dict()
        recipe["target"] = get_baseline(model).target_name  # what its MCC is measured against
    recipe["data"] = {"preset": setting.preset, "overrides": dict(setting.overrides), "seed": seed}
    return recipe


def cell_key(config: ExperimentConfig, setting: Setting, model: str, seed: int) -> str:
    """Short sha256 hex of :func:`cell_recipe`: cells are reused only under the same key."""
    text = json.dumps(cell_recipe(config, setting, model, seed), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class _Cell:
    setting: Setting
    model: str
    seed: int
    key: str
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.setting.label}__{self.model}__seed{self.seed}"

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}.json"

    @property
    def claim_path(self) -> Path:
        return self.folder / f"{self.name}.claim"


def _read_cell(cell: _Cell, force: bool) -> dict | None:
    """The finished record of ``cell``, or None if it is to be (re)computed.

    Raises a one-line ValueError naming the file when it is empty/corrupt or was computed under
    another key (unless ``force``: then it is recomputed).
    """
    if force or not cell.path.exists():
        return None
    try:
        record = read_json(cell.path)
        if not isinstance(record, dict):
            raise ValueError(f"{cell.path}: not a cell record (a JSON {type(record).__name__})")
    except ValueError as err:
        raise ValueError(f"{err}; delete it or rerun with --force to recompute the cell") from None
    if record.get("key") != cell.key:
        raise ValueError(
            f"{cell.path}: cell was computed under another config, data or result format "
            f"(key {record.get('key')}, expected {cell.key}); rerun with --force to recompute "
            "it, or use another --out"
        )
    return record


# ---------------------------------------------------------------------------- claims


def _refreshing(paths: list[Path], progress: Callable | None) -> Callable:
    """A progress callback that keeps the claims ``paths`` alive (touched at most once a
    minute) while the fit runs, then forwards the event to ``progress``."""
    last = [time.monotonic()]

    def on_event(event) -> None:
        if time.monotonic() - last[0] > _CLAIM_REFRESH_S:
            last[0] = time.monotonic()
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path)
        if progress is not None:
            progress(event)

    return on_event


# ---------------------------------------------------------------------------- fitting


def _fit_baselines(config, setting, model, datasets, seeds, progress) -> list[dict]:
    """Fits the baseline ``model`` to each dataset (one per seed) together: one dict per seed
    with ``s_hat`` (unless diverged), ``error`` and ``target`` (the array its MCC is measured
    against: ``s``, or ``|s|`` for TCL)."""
    from nica.methods import get_baseline

    baseline = get_baseline(model)
    fitted = baseline.fit_seeds(
        [d.x for d in datasets],
        [d.u for d in datasets],
        seeds=list(seeds),
        config=_baseline_config(config, setting, model, seeds[0]),
        progress=progress,
    )
    fits = []
    for f, d in zip(fitted, datasets, strict=True):
        fit = {"error": f.diverged, "target": baseline.target(d.s), "history": None}
        fit["target_name"] = baseline.target_name
        if f.diverged is None:
            fit["s_hat"] = f.transform(d.x, d.u)
        fits.append(fit)
    return fits


def _fit_group(config: ExperimentConfig, model: str, datasets: list, seeds: list[int], progress):
    """Fits ``model`` to each dataset (one per seed) together; one dict per seed with
    ``s_hat`` (None if diverged), ``history``, ``val_nll``, ``error`` and, for the nica
    models, the held-out NLL gap to the true model (``synthetic.truth.nll_gap``)."""
    from synthetic.truth import nll_gap

    if model == "fastica":
        from sklearn.decomposition import FastICA

        ica = FastICA(**_FASTICA, random_state=seeds[0])
        return [{"s_hat": ica.fit_transform(datasets[0].x)}]
    conditional = model == "conditional"
    fitted = nica.fit_seeds(
        [d.x for d in datasets],
        [d.u for d in datasets] if conditional else None,
        seeds=list(seeds),
        config=_fit_config(config, model, seeds[0]),
        progress=progress,
    )
    fits = []
    for f, d, seed in zip(fitted, datasets, seeds, strict=True):
        r = f.result
        fit = {"history": r.history, "val_nll": r.best_val_nll, "error": r.diverged}
        fit.update(depth=f.config.depth, depth_search=f.depth_search)
        if r.diverged is None:
            gap = nll_gap(f, d, seed=_TEST_SEED + seed, conditional=conditional)
            fit.update(s_hat=f.transform(d.x), **gap)
        fits.append(fit)
    return fits


def _fit_cells(
    config: ExperimentConfig,
    setting: Setting,
    model: str,
    seeds: list[int],
    cells: Path,
    vmap: bool,
    progress: Callable | None = None,
) -> list[dict]:
    """Fits ``model`` on the data of ``setting`` for each seed; writes each seed's arrays
    (``s``, ``s_hat``: ``(N, D)``) to ``cells/NAME.npz`` and returns one record per seed.

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
        chosen, chosen_seeds = [datasets[i] for i in group], [seeds[i] for i in group]
        if model in _NICA_MODELS or model == "fastica":
            fits = _fit_group(config, model, chosen, chosen_seeds, progress)
        else:
            fits = _fit_baselines(config, setting, model, chosen, chosen_seeds, progress)
        wall = (time.perf_counter() - start) / len(group)
        for i, fit in zip(group, fits, strict=True):
            record = {"setting": setting.label, "model": model, "seed": seeds[i]}
            record.update(fitted_together=len(group), machine=_machine(), wall_s=wall)
            record["environment"] = environment()
            if "target_name" in fit:
                record["target"] = fit["target_name"]
            records.append(_cell_record(record, fit, fit.get("target", datasets[i].s), cells))
    return records


def _cell_record(record: dict, fit: dict, s: np.ndarray, cells: Path) -> dict:
    """Completes a cell's record from its fit; writes the ``s``/``s_hat`` arrays if it ran.

    ``s`` is what the model recovers (the true sources, or ``|s|`` for TCL): the MCCs and the
    stored ``s`` are of it."""
    if fit.get("error") is not None:
        return {**record, "status": "diverged", "error": fit["error"]}
    record["status"] = "ok"
    for key in ("val_nll", "test_nll", "true_nll", "nll_gap", "depth", "depth_search"):
        if fit.get(key) is not None:
            record[key] = fit[key]
    for method in ("pearson", "spearman"):
        record[f"mcc_{method}"] = float(mean_correlation_coefficient(s, fit["s_hat"], method).mcc)
    record["history"] = fit.get("history")
    name = f"{record['setting']}__{record['model']}__seed{record['seed']}"
    save_npz(cells / f"{name}.npz", s=s, s_hat=fit["s_hat"])
    return record


def _machine() -> str:
    """Where a cell ran: JAX platform and the CPU cores this process may use."""
    import jax

    affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere all cores count
    cores = len(affinity(0)) if affinity else os.cpu_count()
    return f"{jax.devices()[0].platform}, {cores} CPU cores"


def _run_group(cells: list[_Cell], force: bool, fit: Callable, timeout: float) -> tuple:
    """Claims the unfinished ``cells`` of one (setting, model), fits the claimed ones with
    ``fit(seeds, claim_paths)`` and writes their records; releases the claims in any case.

    Returns ``(records by cell name, names of cells claimed by another live process)``.
    """
    claimed, records, pending = [], {}, []
    try:
        for cell in cells:
            if not claim(cell.claim_path, stale_after=timeout):
                pending.append(cell.name)
                continue
            claimed.append(cell)
            finished = _read_cell(cell, force)  # another process may have finished it meanwhile
            if finished is not None:
                records[cell.name] = finished
        todo = [c for c in claimed if c.name not in records]
        if todo:
            fitted = fit([c.seed for c in todo], [c.claim_path for c in todo])
            for cell, record in zip(todo, fitted, strict=True):
                record = {**record, "key": cell.key}
                write_json(cell.path, record)
                records[cell.name] = record
    finally:
        for cell in claimed:
            release(cell.claim_path)
    return records, pending


# ---------------------------------------------------------------------------- running


def _resolve(name: str | ExperimentConfig, smoke: bool, seeds: list[int] | None):
    """The config to run: looked up by name, shrunk for ``smoke``, restricted to ``seeds``."""
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
    return config


def run_experiment(
    name: str | ExperimentConfig,
    *,
    out: str | Path | None = None,
    force: bool = False,
    smoke: bool = False,
    vmap: bool = True,
    seeds: list[int] | None = None,
    log=sys.stderr,
    progress: Callable | None = None,
    on_cell: Callable[[int, int, str], None] | None = None,
    claim_timeout: float = CLAIM_TIMEOUT_S,
) -> list[dict]:
    """Runs (or resumes) an experiment; once every cell is done, writes its report
    (``report.md``), tables (``results.json``, ``results.csv``) and figures (:data:`FIGURES`).

    Args:
      name: a key of :data:`EXPERIMENTS` or a config.
      out: results directory (default :func:`default_out`: ``runs/<name>``, git-ignored).
      force: recompute finished cells, and cells whose file is corrupt or was computed under
        another key (without it, such a cell is a one-line ValueError naming the file).
      smoke: run the config's tiny version.
      vmap: train the seeds of each (setting, model) together in one ``vmap``-ped program,
        sharded across local devices; ``False`` fits them one after another.
      seeds: run these seeds instead of the config's (e.g. one host's share of a multi-host
        run; the report then covers these seeds).
      log: where per-cell lines and the "still running elsewhere" note go.
      progress: passed to ``nica.fit_seeds`` (receives each ``nica.ProgressEvent``).
      on_cell: called as ``on_cell(done, total, label)`` once at the start (``done``: cells
        already finished, ``label`` empty) and after each cell finishes.
      claim_timeout: seconds after which another process's claim on a cell counts as abandoned.

    Returns:
      The summary rows, one per setting and model: ``n`` finished fits, ``diverged``,
      ``pending`` (cells claimed by another running process; then no report is written),
      ``mcc_pearson``/``mcc_spearman``/``wall_s`` as (mean, std, median).
    """
    config = _resolve(name, smoke, seeds)
    out = Path(out) if out is not None else default_out(config.name, smoke=smoke)
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    groups = [
        [_Cell(s, m, seed, cell_key(config, s, m, seed), folder) for seed in config.seeds]
        for s in config.settings
        for m in config.models
    ]
    records = {c.name: r for g in groups for c in g if (r := _read_cell(c, force)) is not None}
    total = sum(len(g) for g in groups)
    notify = on_cell or (lambda done, total, label: None)
    notify(len(records), total, "")
    pending = []
    for group in groups:
        todo = [c for c in group if c.name not in records]
        if not todo:
            continue
        setting, model = todo[0].setting, todo[0].model

        def fit(seeds, claims, setting=setting, model=model):
            on_event = _refreshing(claims, progress)
            return _fit_cells(config, setting, model, seeds, folder, vmap, on_event)

        new, elsewhere = _run_group(todo, force, fit, claim_timeout)
        pending += elsewhere
        for cell in todo:
            if cell.name in new:
                records[cell.name] = new[cell.name]
                _log_cell(new[cell.name], log)
                notify(len(records), total, cell.name)
    pending = _finished_elsewhere(groups, pending, records)
    ordered = [records[c.name] for g in groups for c in g if c.name in records]
    rows = _summary_rows(config, ordered, pending)
    if pending:
        print(
            f"{len(pending)} cell(s) still running elsewhere ({', '.join(pending)}); "
            f"no report yet: rerun the same command once they finish to write it to {out}",
            file=log,
        )
        return rows
    _write_outputs(config, rows, ordered, out)
    return rows


def _finished_elsewhere(groups: list, pending: list[str], records: dict) -> list[str]:
    """Reads the cells that other processes held when this one reached them, now that its own
    are written; adds the finished ones to ``records`` and returns the names still pending.

    The last process to write its cells then sees every cell and writes the report, even when
    two processes split a group's cells between them (each saw some of them claimed)."""
    cells = {c.name: c for g in groups for c in g}
    still = []
    for name in pending:
        try:
            record = _read_cell(cells[name], force=False)
        except ValueError:  # written under another key by another run: not this run's result
            record = None
        if record is None:
            still.append(name)
        else:
            records[name] = record
    return still


def _log_cell(record: dict, log) -> None:
    mcc = record.get("mcc_pearson", float("nan"))
    print(
        f"  {record['setting']:>12} {record['model']:>13} seed {record['seed']}: "
        f"{record['status']}, MCC {mcc:.3f}, {record['wall_s']:.1f} s/fit",
        file=log,
        flush=True,
    )


# ---------------------------------------------------------------------------- outputs


def _summary_rows(config: ExperimentConfig, records: list[dict], pending: list[str]) -> list:
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
        "Demixer depth: the depth each seed's fit kept, in seed order (with `depth` `auto`, the"
        f" rule is {AUTO_DEPTH_RULE}).",
        "",
        f"Fit time is wall time per fit, including the restarts, on {machines or 'this machine'}."
        " Seeds fitted together in one vmapped program share its time equally.",
        "",
        "Figures: `mcc.png` (every seed, median marked), `scatter.png` (true vs recovered"
        " sources, one row per model), `training_curves.png`.",
        "",
        *_provenance(records),
    ]
    return "\n".join(lines)


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
    lines = ["setting,model,seed,status,mcc_pearson,mcc_spearman,nll_gap,depth,wall_s,key"]
    for r in records:
        lines.append(
            f"{r['setting']},{r['model']},{r['seed']},{r['status']},{r.get('mcc_pearson', '')},"
            f"{r.get('mcc_spearman', '')},{r.get('nll_gap', '')},{r.get('depth', '')},"
            f"{r.get('wall_s', '')},{r.get('key', '')}"
        )
    return "\n".join(lines) + "\n"


def _write_outputs(config: ExperimentConfig, rows: list, records: list, out: Path) -> None:
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


def _mixing_family() -> tuple[Setting, ...]:
    from synthetic.presets import MIXING_FAMILY

    return tuple(
        Setting(name, "ivae", tuple(overrides.items())) for name, overrides in MIXING_FAMILY.items()
    )


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
        description=(
            "iVAE benchmark (`nica run ivae`): 5 sources, 40 x 1000, 3-layer mixing; nica,"
            " FastICA and the iVAE and TCL baselines."
        ),
        settings=(Setting("ivae", "ivae"),),
        seeds=(0, 1, 2, 3, 4),
        models=BENCHMARK_MODELS,
    ),
    "icebeem": ExperimentConfig(
        name="icebeem",
        description=(
            "ICE-BeeM/TCL benchmark (`nica run icebeem`): 5 sources, 20 x 1000, L in {2, 4};"
            " nica, FastICA and the iVAE and TCL baselines (TCL's depth = L, as ICE-BeeM runs it)."
        ),
        settings=(
            Setting("L=2", "icebeem-l2", model_fit=(("tcl", "depth", 2),)),
            Setting("L=4", "icebeem-l4", model_fit=(("tcl", "depth", 4),)),
        ),
        sweep="mixing layers",
        seeds=(0, 1, 2, 3, 4),
        models=BENCHMARK_MODELS,
    ),
    "ivae-original": ExperimentConfig(
        name="ivae-original",
        description=(
            "iVAE's own recipe (`nica run ivae-original`, the default config of iVAE's code):"
            " 5 Gaussian sources, std ~ U(0.5, 3) over 40 x 1000, 3 xtanh layers with one matrix"
            " reused in every layer; the conditional model vs FastICA, iVAE and TCL."
        ),
        settings=(Setting("ivae-original", "ivae-original"),),
        seeds=(0, 1, 2, 3, 4),
        models=("conditional", "fastica", "ivae", "tcl"),
        command="nica run ivae-original --out results/baselines/ivae-original",
    ),
    "icebeem-2000": ExperimentConfig(
        name="icebeem-2000",
        description=(
            "ICE-BeeM's published setting for TCL and iVAE (`nica run icebeem-2000`): 5 Gaussian"
            " sources, 20 x 2000, leaky-ReLU mixing, L in {2, 4}; TCL's depth = L."
        ),
        settings=(
            Setting("L=2", "icebeem-l2", (("samples_per_segment", 2000),), (("tcl", "depth", 2),)),
            Setting("L=4", "icebeem-l4", (("samples_per_segment", 2000),), (("tcl", "depth", 4),)),
        ),
        sweep="mixing layers",
        seeds=(0, 1, 2, 3, 4),
        models=("fastica", "ivae", "tcl"),  # nica's conditional model: `nica run icebeem`
        command="nica run icebeem-2000 --out results/baselines/icebeem-2000",
    ),
    "depth": ExperimentConfig(
        name="depth",
        description=(
            "Sweep of mixing depth 1-5 on the iVAE setting (`nica run depth`); the demixer keeps"
            " its default depth (4 at 5 sources)."
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
            "Sweep of source dimension 5 -> 50 on the iVAE setting (3-layer mixing) with segments"
            " growing with D (at least 4D, since scale-only segment variation identifies the"
            " sources only with more than D segments): D=5 40 x 1000, D=10 40 x 1000, D=20"
            " 80 x 1000, D=50 200 x 500 (`nica run dimension`)."
        ),
        settings=tuple(
            Setting(f"D={d}", "ivae", (("n_sources", d), ("n_segments", m), *extra))
            for d, m, extra in (
                (5, 40, ()),
                (10, 40, ()),
                (20, 80, ()),
                (50, 200, (("samples_per_segment", 500),)),
            )
        ),
        sweep="source dimension",
    ),
    "mixings": ExperimentConfig(
        name="mixings",
        description=(
            "Robustness to the mixing nonlinearity (`nica run mixings`): the iVAE setting"
            " (5 sources, 40 x 1000, 3 layers) with each mixing of `synthetic.MIXING_FAMILY`"
            " (leaky ReLU at slopes 0.05 / 0.2 / 0.5, xtanh, asinh, smooth leaky ReLU, leaky ELU,"
            " tanhshrink); a user never knows the mixing, so the defaults must hold for all."
        ),
        settings=_mixing_family(),
        sweep="mixing nonlinearity",
    ),
}
