"""Can the depth search choose from the short restart phase instead of two full fits?

``depth='auto'`` up to 10 sources fits depths 4 and 5 to the end (restarts and a 300-epoch main
fit each) and keeps the one with the lower validation NLL. This script measures, on shipped
benchmark settings, how often choosing by the restart phase's best validation NLL (the lowest
of the ``K`` short fits, already computed before any main fit) picks the same depth as the full
fits, and what the choice costs in MCC and held-out NLL gap when it differs. Each candidate
depth is fitted with the defaults (``nica.fit_seeds``, all seeds together) and scored against
the truth.

Command::

    .venv/bin/python -m experiments.depth_choice --out results/depth_choice

One JSON file per (config, setting), written atomically; a finished one is never refitted.
``--report`` writes ``report.md`` from them. ``--smoke`` runs a tiny size (for the tests).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from nica.apps.experiment.configs import EXPERIMENTS
from nica.apps.experiment.fitting import setting_dataset, truth_scores
from nica.fitting.config import SHALLOW_DEPTHS
from nica.fitting.estimator import fit_seeds
from nica.util.files import read_json, write_json, write_text

#: (config, setting label) pairs measured by default: every shipped setting at <= 10 sources
#: whose defaults search depths 4 and 5.
DEFAULT_SETTINGS = (
    *(("depth", f"L={n}") for n in range(1, 6)),
    ("dimension", "D=10"),
    *(("mixings", label) for label in ("leaky_relu-0.05", "leaky_relu-0.5", "xtanh", "tanhshrink")),
    ("ivae", "ivae"),
    *(("icebeem", label) for label in ("L=2", "L=4")),
    ("tcl", "D=5 L=5"),
)


def _fit_depth(datasets, seeds, depth: int, overrides: dict) -> list[dict]:
    """Every seed's fit at ``depth``: MCC, held-out gap, restart-phase and final val NLL."""
    start = time.perf_counter()
    fits = fit_seeds(
        [d.x for d in datasets],
        [d.u for d in datasets],
        seeds=list(seeds),
        progress=None,
        depth=depth,
        **overrides,
    )
    wall = time.perf_counter() - start
    records = []
    for seed, dataset, fitted in zip(seeds, datasets, fits, strict=True):
        scores = truth_scores(fitted, dataset, seed)
        records.append(
            {
                "seed": seed,
                "mcc": scores["mcc"],
                "nll_gap": scores["nll_gap"],
                "restart_val_nll": float(min(fitted.restarts["val_nll"])),
                "final_val_nll": float(fitted.result.best_val_nll),
                "diverged": fitted.result.diverged,
                "wall_s": wall / len(seeds),
            }
        )
    return records


def run_setting(config_name: str, label: str, seeds, out, overrides: dict) -> Path:
    """Fits each of :data:`SHALLOW_DEPTHS` on one setting's seeds; writes one JSON file."""
    path = Path(out) / f"{config_name}_{label}.json".replace(" ", "_").replace("=", "")
    if path.exists():
        return path
    (setting,) = [s for s in EXPERIMENTS[config_name].settings if s.label == label]
    datasets = [setting_dataset(setting, s) for s in seeds]
    by_depth = {str(d): _fit_depth(datasets, seeds, d, overrides) for d in SHALLOW_DEPTHS}
    body = {"config": config_name, "setting": label, "overrides": overrides, "depths": by_depth}
    write_json(path, body, indent=1)
    return path


def _choices(body: dict) -> list[dict]:
    """Per seed: the depth chosen by the restart phase and by the full fits, and the MCC and
    gap each choice gives."""
    depths = list(body["depths"])
    rows = []
    for i, _ in enumerate(body["depths"][depths[0]]):
        recs = [body["depths"][d][i] for d in depths]
        by_restart = int(np.argmin([r["restart_val_nll"] for r in recs]))
        by_final = int(np.argmin([r["final_val_nll"] for r in recs]))
        rows.append(
            {
                "seed": recs[0]["seed"],
                "restart_choice": depths[by_restart],
                "final_choice": depths[by_final],
                "mcc_restart": recs[by_restart]["mcc"],
                "mcc_final": recs[by_final]["mcc"],
                "gap_restart": recs[by_restart]["nll_gap"],
                "gap_final": recs[by_final]["nll_gap"],
                "wall_s": sum(r["wall_s"] for r in recs),
            }
        )
    return rows


def _median(rows: list, key: str) -> float:
    return float(np.median([r[key] for r in rows]))


def write_report(out) -> Path:
    """``out/report.md``: per setting, agreement of the two choices and their median MCC."""
    lines, measured = [], set()
    agree = total = 0
    for path in sorted(Path(out).glob("*.json")):
        body = read_json(path)
        measured.add((body["config"], body["setting"]))
        rows = _choices(body)
        same = sum(r["restart_choice"] == r["final_choice"] for r in rows)
        agree, total = agree + same, total + len(rows)
        diffs = " / ".join(f"{r['mcc_final'] - r['mcc_restart']:+.4f}" for r in rows)
        lines.append(
            f"| {body['config']} {body['setting']} | {same}/{len(rows)} | "
            f"{_median(rows, 'mcc_final'):.4f} | {_median(rows, 'mcc_restart'):.4f} | "
            f"{diffs} | {_median(rows, 'gap_final'):.2f} | {_median(rows, 'gap_restart'):.2f} |"
        )
    text = "\n".join(
        [
            "# Depth choice: restart phase vs full fits",
            "",
            "Generated by `python -m experiments.depth_choice`. Per setting: how many seeds'"
            f" choice among depths {' and '.join(map(str, SHALLOW_DEPTHS))} by the restart"
            " phase's best validation NLL equals the choice by the full fits' (today's rule);"
            " the median Pearson MCC and held-out NLL gap (nats) of each choice; the MCC"
            " difference (full-fit choice minus restart choice) per seed.",
            "",
            f"Same choice on {agree} of {total} data sets.",
            "",
            "| data | same choice | median MCC, full fits | median MCC, restart phase"
            " | MCC difference per seed | median gap, full fits | median gap, restart phase |",
            "|---|---|---|---|---|---|---|",
            *lines,
            "",
            *(
                [f"Not measured here: {', '.join(f'{c} {label}' for c, label in missing)}.", ""]
                if (missing := [s for s in DEFAULT_SETTINGS if s not in measured])
                else []
            ),
        ]
    )
    path = Path(out) / "report.md"
    write_text(path, text)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/depth_choice")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", help="settings as CONFIG:LABEL (default: all)")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if not args.report:
        settings = [tuple(s.split(":", 1)) for s in args.only] if args.only else DEFAULT_SETTINGS
        overrides = {}
        if args.smoke:
            settings, args.seeds = [("demo", "demo")], args.seeds[:1]
            overrides = {"epochs": 2, "restarts": 2, "restart_epochs": 1, "eval_every": 1}
        for config_name, label in settings:
            print(run_setting(config_name, label, args.seeds, args.out, overrides), flush=True)
    print(write_report(args.out))


if __name__ == "__main__":
    main()
