"""Fit recipes side by side: wall time of each variant's fit of one data set, in one process
pinned to one CPU core.

A recipe is a set of flat settings over the defaults (``nica.fitting.config.FLAT_NAMES``), as
in ``experiments.scale_probe``, which measures what a recipe recovers; this script measures what
it costs. Every variant fits the same data (a ``synthetic`` preset and data seed) with
``nica.fit``, the variants taking turns, ``--repeats`` times each: the first fit of a variant
compiles its programs (the persistent cache is switched off), the later ones run compiled.
Turns rather than blocks, so that a change in the machine's load falls on every variant alike.
The report gives each variant's first and compiled times, its ratio to the first variant's
(compiled: the median over the repeats after the first), the validation NLL and the depth kept.

Command (the recipes of docs/models.md)::

    .venv/bin/python -m experiments.recipe_cost --out results/recipe_cost

``--variant NAME=JSON`` (repeatable) replaces the default variants, e.g.
``--variant defaults={} --variant full='{"restarts": 2, "restart_epochs": 300}'``.
``--smoke``: the ``tiny`` preset, 2 epochs at depth 2 (restarts of 2 epochs).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import nica
from experiments.harness import (
    experiment_parser,
    markdown_document,
    markdown_table,
    one_core,
    write_report,
)
from nica.fitting.config import FitConfig
from synthetic.presets import make_preset

#: Settings of every fit of ``--smoke`` (a tiny fit).
SMOKE_SETTINGS = {"epochs": 2, "depth": 2, "eval_every": 1}


def default_variants(epochs: int) -> dict[str, dict]:
    """The variants measured by default, for a main fit of ``epochs``: the defaults, and
    full-length restarts (2 restarts of ``epochs`` epochs) with the depth search
    (docs/models.md)."""
    return {"defaults": {}, "full-length restarts": {"restarts": 2, "restart_epochs": epochs}}


def parse_variant(text: str) -> tuple[str, dict]:
    """``NAME=JSON`` -> ``(name, settings)``; a one-line ``ValueError`` otherwise."""
    name, sep, body = text.partition("=")
    try:
        settings = json.loads(body) if sep else None
    except json.JSONDecodeError:
        settings = None
    if not name or not isinstance(settings, dict):
        raise ValueError(f"--variant takes NAME={{JSON object of flat settings}}, got {text!r}")
    return name, settings


def measure(x, u, variants: dict, repeats: int, common: dict) -> list[dict]:
    """Fits every variant ``repeats`` times, variants taking turns; one record per fit."""
    records = []
    for repeat in range(repeats):
        for name, settings in variants.items():
            start = time.perf_counter()
            fitted = nica.fit(x, u, progress=None, **{**common, **settings})
            seconds = time.perf_counter() - start
            records.append(
                {
                    "variant": name,
                    "settings": settings,
                    "repeat": repeat,
                    "seconds": seconds,
                    "val_nll": float(fitted.result.best_val_nll),
                    "depth": fitted.config.model.depth,
                }
            )
            print(f"{name} #{repeat}: {seconds:.1f} s, depth {records[-1]['depth']}", flush=True)
    return records


def summary_rows(records: list[dict], variants: Sequence[str]) -> list[tuple]:
    """One row per variant: first and compiled times, ratio to the first variant, NLL, depth."""

    def compiled(name):
        later = [r["seconds"] for r in records if r["variant"] == name and r["repeat"] > 0]
        return float(np.median(later)) if later else float("nan")

    base = compiled(variants[0])
    rows = []
    for name in variants:
        first = next(r for r in records if r["variant"] == name and r["repeat"] == 0)
        seconds = compiled(name)
        rows.append(
            (
                name,
                f"`{json.dumps(first['settings'])}`",
                f"{first['seconds']:.1f}",
                f"{seconds:.1f}",
                f"{seconds / base:.2f}",
                f"{first['val_nll']:.4f}",
                first["depth"],
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> str:
    """Parses arguments, measures, writes ``results.json`` and ``report.md``; returns the
    report."""
    parser = experiment_parser(__doc__, out=Path("results/recipe_cost"), smoke={})
    parser.add_argument("--preset", default="ivae")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="fits per variant (>= 2)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON")
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error(f"--repeats must be >= 2 (the first fit compiles), got {args.repeats}")
    try:
        variants = dict(parse_variant(v) for v in args.variant)
    except ValueError as err:
        parser.error(str(err))
    nica.set_cache_dir(None)  # every variant's first fit compiles
    pinned = one_core()
    if pinned is not None:
        os.sched_setaffinity(0, pinned)
    core = None if pinned is None else min(pinned)
    preset = "tiny" if args.smoke else args.preset
    common = SMOKE_SETTINGS if args.smoke else {}
    variants = variants or default_variants(common.get("epochs", FitConfig().loop.epochs))
    data = make_preset(preset, args.seed)
    records = measure(data.x, data.u, variants, args.repeats, common)
    table = markdown_table(
        (
            "variant",
            "settings",
            "first fit (s)",
            "compiled fit (s)",
            f"ratio to {next(iter(variants))}",
            "val NLL",
            "depth kept",
        ),
        summary_rows(records, list(variants)),
    )
    where = f"CPU core {core}" if core is not None else "every core (the platform cannot pin)"
    note = (
        f"Each variant's `nica.fit` of the `{preset}` preset (data seed {args.seed}), "
        f"{args.repeats} times, the variants taking turns, in one process on {where}; no "
        "persistent compilation cache, so the first fit of a variant compiles its programs. "
        "Compiled: the median of the later fits. Command: `python -m experiments.recipe_cost"
        f" --out {args.out}`."
    )
    text = markdown_document("Fit recipes side by side: cost", note, table)
    record = {
        "preset": preset,
        "seed": args.seed,
        "repeats": args.repeats,
        "core": core,
        "variants": variants,
        "common": common,
        "fits": records,
    }
    write_report(args.out, record, text)
    return text


if __name__ == "__main__":
    main()
