"""Validation of nica's iVAE and TCL against the original code's and the published numbers.

Runs (or resumes) two ``nica run`` configs into ``OUT/<config>``:

* ``ivae-original``: iVAE's own recipe (5 Gaussian sources, 40 x 1000, 3 xtanh layers with one
  matrix reused), 5 data seeds; nica's conditional model, FastICA, iVAE and TCL;
* ``icebeem-2000``: ICE-BeeM's published setting (5 sources, 20 x 2000, leaky ReLU, L = 2 and
  4), 5 data seeds; FastICA, iVAE and TCL (TCL's depth = L).

and writes ``OUT/report.md`` and ``OUT/results.json``: iVAE's MCC per data seed against the
range of the original code on that recipe (run by us on this machine class, see
:data:`ORIGINAL_IVAE`), TCL's and iVAE's medians against ICE-BeeM's published figure
(:data:`PUBLISHED`), and every model's wall time per fit against nica's conditional model on
the same data.

Command::

    .venv/bin/python -m experiments.baselines --out results/baselines

``--smoke`` runs tiny versions of both configs with FastICA only (the report code end to end).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments.harness import experiment_parser, markdown_document, markdown_table, write_report
from nica.apps.experiment import EXPERIMENTS, run_experiment
from nica.util.files import read_json

CONFIGS = ("ivae-original", "icebeem-2000")
#: The original iVAE code (ilkhem/iVAE at cf6ff68, default ``configs/ivae.yaml``) on its own
#: recipe, run on this machine class: MCC by data seed, and the range of medians it reaches.
ORIGINAL_IVAE = {
    "per_seed": {1: 0.93, 2: 0.55, 3: 0.58},
    "fresh_datasets": (0.41, 0.76),
    "median_range": (0.55, 0.93),
}
#: ICE-BeeM's published figure (5 sources, 20 x 2000, leaky ReLU): median MCC.
PUBLISHED = {
    ("L=2", "tcl"): 0.90,
    ("L=4", "tcl"): 0.83,
    ("L=2", "ivae"): 0.92,
    ("L=4", "ivae"): 0.74,
}
TOLERANCE = 0.05  # "within 0.05 of the published figure, or better"


def _cells(out: Path, name: str) -> list[dict]:
    return [c for c in read_json(out / name / "results.json")["cells"] if c["status"] == "ok"]


def _median(cells: list[dict], setting: str, model: str, key: str = "mcc_pearson") -> float:
    values = [c[key] for c in cells if c["setting"] == setting and c["model"] == model]
    return float(np.median(values)) if values else float("nan")


def ivae_section(cells: list[dict]) -> tuple[str, dict]:
    """iVAE's MCC per data seed on iVAE's recipe, with the original code's range."""
    mine = sorted((c["seed"], c["mcc_pearson"], c["mcc_spearman"]) for c in cells
                  if c["model"] == "ivae")  # fmt: skip
    median = float(np.median([m for _, m, _ in mine])) if mine else float("nan")
    low, high = ORIGINAL_IVAE["median_range"]
    rows = [(seed, f"{p:.3f}", f"{s:.3f}") for seed, p, s in mine]
    rows.append(("median", f"**{median:.3f}**", ""))
    verdict = "inside" if low <= median <= high else ("above" if median > high else "below")
    text = "\n\n".join([
        "## iVAE on iVAE's own recipe (`ivae-original`)",
        markdown_table(("data seed", "Pearson MCC", "Spearman MCC"), rows),
        f"Original code on this recipe (its default config, our runs): data seed 1: 0.93 "
        f"(restarts 0.91-0.93), seeds 2 and 3: 0.55 and 0.58; eight fresh datasets of the "
        f"leaky-ReLU, xtanh and asinh recipes: 0.41-0.76. Median range {low}-{high}: ours is "
        f"**{verdict}** it (the data generators differ, so seeds do not correspond).",
    ])  # fmt: skip
    return text, {"per_seed": mine, "median": median, "verdict": verdict}


def published_section(cells: list[dict]) -> tuple[str, dict]:
    """TCL's and iVAE's medians on ICE-BeeM's setting against the published figure."""
    rows, record = [], {}
    for (setting, model), published in PUBLISHED.items():
        mine = _median(cells, setting, model)
        ok = mine >= published - TOLERANCE
        rows.append((setting, model, f"{published:.2f}", f"{mine:.3f}", "yes" if ok else "no"))
        record[f"{setting} {model}"] = {"published": published, "median": mine, "ok": bool(ok)}
    text = "\n\n".join([
        "## TCL and iVAE on ICE-BeeM's setting (`icebeem-2000`)",
        markdown_table(("L", "model", "published", "ours (median)",
                        f"within {TOLERANCE} or better"), rows),  # fmt: skip
        "TCL is scored against |s|: its features follow the sources' absolute values (the"
        " sufficient statistics of scale-modulated Gaussians), which carry no sign, so against s"
        " itself its MCC is low for symmetric sources (0.03 and 0.16 on two L=2 seeds whose MCC"
        " against |s| is 0.995 and 0.751).",
    ])  # fmt: skip
    return text, record


def timing_section(runs: dict[str, list[dict]]) -> tuple[str, dict]:
    """Median wall time per fit of every model, and its ratio to nica's conditional model."""
    rows, record = [], {}
    for name, cells in runs.items():
        for setting in dict.fromkeys(c["setting"] for c in cells):
            base = _median(cells, setting, "conditional", "wall_s")  # nan if not run
            for model in dict.fromkeys(c["model"] for c in cells if c["setting"] == setting):
                wall = _median(cells, setting, model, "wall_s")
                ratio = "–" if np.isnan(base) else f"{wall / base:.2f}"
                rows.append((name, setting, model, f"{wall:.1f}", ratio))
                record[f"{name} {setting} {model}"] = wall
    text = "\n\n".join([
        "## Wall time per fit",
        markdown_table(("config", "setting", "model", "s per fit", "x conditional"), rows),
        "Seeds fitted together in one vmapped program share its time equally; nica's conditional"
        " model includes its restarts; `icebeem-2000` runs no nica model (see `nica run"
        " icebeem`). Machine: see each config's report (the committed runs shared 2 CPU cores"
        " with other jobs, so times are inflated alike for every model).",
    ])  # fmt: skip
    return text, record


def main(argv: Sequence[str] | None = None) -> dict:
    """Runs (resumes) both configs, then writes ``OUT/report.md`` and ``OUT/results.json``."""
    parser = experiment_parser(__doc__, out=Path("results/baselines"))
    args = parser.parse_args(argv)
    configs = {name: EXPERIMENTS[name] for name in CONFIGS}
    if args.smoke:  # FastICA only: the baselines' own smoke runs are in tests/test_baselines.py
        configs = {
            k: dataclasses.replace(c.smoke(), models=("fastica",)) for k, c in configs.items()
        }
    for name, config in configs.items():
        run_experiment(config, out=args.out / name)
    runs = {name: _cells(args.out, name) for name in configs}
    sections = [ivae_section(runs["ivae-original"]), published_section(runs["icebeem-2000"]),
                timing_section(runs)]  # fmt: skip
    text = markdown_document(
        "Baselines validated against the original code and the published figures",
        "Command: `.venv/bin/python -m experiments.baselines --out results/baselines`.",
        *(s[0] for s in sections),
    )
    record = dict(zip(("ivae", "published", "wall_s"), (s[1] for s in sections), strict=True))
    write_report(args.out, record, text)
    return record


if __name__ == "__main__":
    main()
