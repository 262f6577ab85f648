"""Running an experiment: claims on cells, fitting the unfinished ones, resuming, the report.

Every (setting, model, seed) cell is written atomically to ``OUT/cells/`` as it finishes, keyed
by :func:`nica.apps.experiment.cells.cell_key`, so a rerun skips finished cells, an interrupted
run loses nothing, and a cell computed under another config is never mixed into a report: it is
refused (``force`` recomputes it). Several processes may share one ``OUT`` (the multi-host
recipe): each takes a claim file per cell before fitting it and skips cells claimed by a live
process; the report is written only once every cell is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nica.apps.experiment.cells import Cell, cell_key, read_cell
from nica.apps.experiment.configs import EXPERIMENTS
from nica.apps.experiment.design import ExperimentConfig, default_out
from nica.apps.experiment.fitting import fit_cells
from nica.apps.experiment.report import summary_rows, write_outputs
from nica.methods import METHODS
from nica.util.claims import claim, release
from nica.util.files import write_json

__all__ = ["CLAIM_TIMEOUT_S", "run_experiment"]

#: Seconds after which a claim file whose owner stopped refreshing it counts as abandoned.
CLAIM_TIMEOUT_S = 2 * 3600.0
_CLAIM_REFRESH_S = 60.0  # a fitting process touches its claims at most this often


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


def _run_group(cells: list[Cell], force: bool, fit: Callable, timeout: float) -> tuple:
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
            finished = read_cell(cell, force)  # another process may have finished it meanwhile
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
    unknown = set(config.models) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; known: {', '.join(METHODS)}")
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
    (``report.md``), tables (``results.json``, ``results.csv``) and figures
    (``nica.apps.experiment.report.FIGURES``).

    Args:
      name: a key of :data:`nica.apps.experiment.configs.EXPERIMENTS` or a config.
      out: results directory (default ``default_out``: ``runs/<name>``, git-ignored).
      force: recompute finished cells, and cells whose file is corrupt or was computed under
        another key (without it, such a cell is a one-line ValueError naming the file).
      smoke: run the config's tiny version.
      vmap: train the seeds of each (setting, model) together in one ``vmap``-ped program,
        sharded across local devices; ``False`` fits them one after another.
      seeds: run these seeds instead of the config's (e.g. one host's share of a multi-host
        run; the report then covers these seeds).
      log: where per-cell lines and the "still running elsewhere" note go.
      progress: passed to each method's ``fit_seeds`` (receives each ``nica.ProgressEvent``).
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
        [Cell(s, m, seed, cell_key(config, s, m, seed), folder) for seed in config.seeds]
        for s in config.settings
        for m in config.models
    ]
    records = {c.name: r for g in groups for c in g if (r := read_cell(c, force)) is not None}
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
            return fit_cells(config, setting, model, seeds, folder, vmap, on_event)

        new, elsewhere = _run_group(todo, force, fit, claim_timeout)
        pending += elsewhere
        for cell in todo:
            if cell.name in new:
                records[cell.name] = new[cell.name]
                _log_cell(new[cell.name], log)
                notify(len(records), total, cell.name)
    pending = _finished_elsewhere(groups, pending, records)
    ordered = [records[c.name] for g in groups for c in g if c.name in records]
    rows = summary_rows(config, ordered, pending)
    if pending:
        print(
            f"{len(pending)} cell(s) still running elsewhere ({', '.join(pending)}); "
            f"no report yet: rerun the same command once they finish to write it to {out}",
            file=log,
        )
        return rows
    write_outputs(config, rows, ordered, out)
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
            record = read_cell(cells[name], force=False)
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
