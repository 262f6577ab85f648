"""Time to result: the default fit and `nica run demo` in fresh processes, with an empty and a
warm compilation cache, on one CPU core, side by side with a baseline revision.

Every job runs in a new Python process (what a user's shell does) pinned to one CPU core, with
the code of one *version*: this checkout, and, with ``--baseline REV``, that git revision
checked out into a temporary worktree. For each version, in order:

* ``first``: the job with an empty compilation cache folder (``NICA_CACHE_DIR`` set to a new
  folder: the first run on a machine);
* ``second``: the same job again with that folder (every later run).

A revision older than the persistent cache ignores ``NICA_CACHE_DIR``, so its two rows are two
cache-less processes. Jobs:

* ``fit``: ``nica fit`` with default settings on the ``ivae`` preset (seed 0: 5 sources, 40
  segments x 1000, 3-layer mixing); records the process wall time, the fit's own "done in"
  time, the MCC and the validation NLL;
* ``demo``: ``nica run demo`` (``make demo`` after install); records the process wall time and
  each model's median MCC.

The data file is written once by this checkout's ``synthetic`` (the presets' data are
unchanged across the versions compared). Records are written as they come; a rerun with the
same ``--out`` keeps the records of the same versions and jobs and runs only the missing ones.

Command::

    .venv/bin/python -m experiments.time_to_result --baseline 6a819c7 --out results/time_to_result

``--smoke`` runs the ``fit`` job alone, on the ``tiny`` preset with 2 epochs at depth 2 (the
tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from experiments import harness
from nica.util.files import read_json
from nica.util.provenance import git_commit

#: Where this checkout lives (the code of the ``current`` version).
ROOT = Path(__file__).resolve().parents[1]
JOBS = ("fit", "demo")
MODES = ("first", "second")


def run_job(root: Path, args: Sequence[str], env: dict, core: set[int] | None) -> float:
    """Runs ``nica ARGS`` with the code under ``root`` in a new process; returns its wall
    seconds. Raises ``RuntimeError`` with the job's last output line when it fails."""
    code = "import sys; from nica.apps.cli import main; sys.argv[0] = 'nica'; sys.exit(main())"
    pin = (lambda: os.sched_setaffinity(0, core)) if core else None
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        preexec_fn=pin,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"nica {' '.join(args)} (in {root}) failed: {last}")
    return seconds


def fit_record(out: Path) -> dict:
    """What ``nica fit`` wrote to ``out/metrics.json`` that this benchmark reports."""
    metrics = read_json(out / "metrics.json")
    keep = ("wall_s", "mcc_pearson", "val_nll", "nll_gap")
    return {k: metrics[k] for k in keep if k in metrics}


def demo_record(out: Path) -> dict:
    """Each model's median Pearson MCC from ``nica run``'s ``out/results.json``."""
    cells = read_json(out / "results.json")["cells"]
    models = sorted({c["model"] for c in cells})
    return {
        "median_mcc": {
            m: float(np.median([c["mcc_pearson"] for c in cells if c["model"] == m]))
            for m in models
        }
    }


@contextlib.contextmanager
def checkout(revision: str | None) -> Iterator[tuple[Path, str | None]]:
    """``(root, commit)``: this checkout for ``None``, else ``revision`` in a temporary git
    worktree (removed afterwards)."""
    if revision is None:
        yield ROOT, git_commit()
        return
    commit = subprocess.run(
        ["git", "rev-parse", revision], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="nica-baseline-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(tree), commit], cwd=ROOT, check=True
        )
        try:
            yield tree, commit
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)


def job_args(job: str, data: Path, out: Path, smoke: bool) -> list[str]:
    """The ``nica`` command line of ``job``."""
    if job == "fit":
        quick = ["--epochs", "2", "--restarts", "2", "--depth", "2"] if smoke else []
        return ["fit", "--data", str(data), "--out", str(out), "--quiet", *quick]
    return ["run", "demo", "--out", str(out), "--quiet"]


def measure(
    version: str, revision: str | None, jobs: Sequence[str], data: Path, smoke: bool, done: set
) -> Iterator[dict]:
    """Runs every job of one version in both modes (a job whose two records are both in
    ``done`` is skipped: the second run needs the first's cache); yields each record."""
    core = harness.one_core()
    with checkout(revision) as (root, commit), tempfile.TemporaryDirectory() as scratch:
        for job in jobs:
            if all((version, commit, job, mode) in done for mode in MODES):
                continue
            cache = Path(scratch) / f"cache-{job}"  # empty for the first run of each job
            for mode in MODES:
                out = Path(scratch) / f"{job}-{mode}"
                env = {**os.environ, "NICA_CACHE_DIR": str(cache)}
                env.pop("JAX_COMPILATION_CACHE_DIR", None)
                seconds = run_job(root, job_args(job, data, out, smoke), env, core)
                result = fit_record(out) if job == "fit" else demo_record(out)
                yield {
                    "version": version,
                    "commit": commit,
                    "job": job,
                    "mode": mode,
                    "process_s": seconds,
                    "cores": len(core) if core else os.cpu_count(),
                    **result,
                }


def _key(record: dict) -> tuple:
    return (record["version"], record["commit"], record["job"], record["mode"])


def markdown(records: list[dict], preset: str) -> str:
    """One table of every record, then the ratios of this checkout to the baseline."""
    rows = []
    for r in records:
        quality = (
            f"MCC {r['mcc_pearson']:.4f}, val NLL {r['val_nll']:.4f}"
            if r["job"] == "fit"
            else ", ".join(f"{m} {v:.3f}" for m, v in r["median_mcc"].items())
        )
        inner = f"{r['wall_s']:.1f}" if "wall_s" in r else "–"
        commit = (r["commit"] or "?")[:7]
        row = (r["version"], commit, r["job"], r["mode"], f"{r['process_s']:.1f}", inner, quality)
        rows.append(row)
    header = ("version", "commit", "job", "run", "process (s)", "fit's own (s)", "result")
    by = {(r["version"], r["job"], r["mode"]): r["process_s"] for r in records}
    ratios = [
        (job, mode, f"{by[('current', job, mode)] / by[('baseline', job, mode)]:.2f}")
        for job in JOBS
        for mode in MODES
        if ("current", job, mode) in by and ("baseline", job, mode) in by
    ]
    cores = {r["cores"] for r in records}
    return harness.markdown_document(
        "Time to result",
        f"Each row is one new Python process pinned to {', '.join(map(str, cores))} CPU "
        f"core(s). `fit`: `nica fit` with default settings on the `{preset}` preset (seed 0); "
        "`demo`: `nica run demo`. `first`: an empty compilation cache folder; `second`: the "
        "same folder again (a revision without the persistent cache compiles again). "
        "Process time includes start-up, data loading, compilation, the fit and writing its "
        "outputs; the fit's own time is the one `nica fit` reports.",
        harness.markdown_table(header, rows),
        "Current / baseline process time (below 1: faster):\n\n"
        + harness.markdown_table(("job", "run", "ratio"), ratios)
        if ratios
        else "",
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Parses arguments, runs the jobs, writes JSON and Markdown; returns the records."""
    smoke = {"preset": "tiny", "jobs": ["fit"]}
    parser = harness.experiment_parser(__doc__, out=Path("results/time_to_result"), smoke=smoke)
    parser.add_argument("--baseline", default=None, help="git revision compared side by side")
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--preset", default="ivae")
    args = parser.parse_args(argv)
    from synthetic import make_preset

    path = args.out / harness.RECORD_FILE
    kept = read_json(path).get("records", []) if path.exists() else []
    done = {_key(r) for r in kept}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / f"{args.preset}.npz"
        make_preset(args.preset, 0).save(data)
        versions = [("current", None)]
        if args.baseline:
            versions.append(("baseline", args.baseline))
        records = kept.copy()
        for version, revision in versions:
            for record in measure(version, revision, args.jobs, data, args.smoke, done):
                records = [r for r in records if _key(r) != _key(record)] + [record]
                print(json.dumps(record), flush=True)
                harness.write_record(path, {"preset": args.preset, "records": records})
    harness.write_report(
        args.out, {"preset": args.preset, "records": records}, markdown(records, args.preset)
    )
    return records


if __name__ == "__main__":
    main()
