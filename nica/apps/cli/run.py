"""``nica run``: run (or resume) an experiment of ``nica.apps.experiment`` and print its
report."""

from __future__ import annotations

import time
from pathlib import Path

from nica.apps import experiment
from nica.apps.cli.console import Discard, Interrupted, status
from nica.util.progress import progress_enabled, run_progress

__all__ = ["run_run"]


def run_run(args) -> int:
    """Runs ``args.config``; prints report.md on stdout once every cell is done."""
    if args.config not in experiment.EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {args.config!r}; known: {', '.join(experiment.EXPERIMENTS)}"
        )
    out = Path(args.out) if args.out else experiment.default_out(args.config, smoke=args.smoke)
    status(f"nica run {args.config}: results in {out}")
    start = time.perf_counter()
    try:
        with run_progress(progress_enabled(args.quiet)) as (progress, on_cell, log):
            rows = experiment.run_experiment(
                args.config,
                out=args.out,
                force=args.force,
                smoke=args.smoke,
                vmap=not args.sequential,
                seeds=args.seeds,
                progress=progress,
                on_cell=on_cell,
                log=Discard() if args.quiet else log,
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"the finished cells in {out / 'cells'} are kept; run the same command to resume"
        ) from None
    wall = time.perf_counter() - start
    if any(row.get("pending") for row in rows):
        status(f"nica run {args.config}: cells still running elsewhere; no report yet")
        return 0
    print((out / "report.md").read_text(), end="", flush=True)  # the report, on stdout
    status(f"nica run {args.config}: done in {wall:.1f} s; wrote {out}")
    return 0
