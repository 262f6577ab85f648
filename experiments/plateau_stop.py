"""Would stopping at a validation plateau save epochs without losing likelihood? (issue 27)

A fit's main phase trains a fixed 300 epochs under a cosine-decayed learning rate. The loop can
already stop a run after ``patience`` evaluations without an improvement larger than
``min_delta`` (``LoopConfig``). This script replays that rule, with
``nica.fitting.stopping.Stopping`` itself, on the validation histories of every committed
``nica run`` fit (``results/*/results.json``: the kept main fit of each nica cell, evaluated
every 10 epochs) and reports, per rule, the epochs it would have trained and the validation NLL
it would have given up against the full schedule's best (nats per sample). Truncating the
recorded trajectory is exactly what the rule does on the same schedule, so no fit is rerun.

Command::

    .venv/bin/python -m experiments.plateau_stop --out results/plateau_stop

Writes ``results.json`` (one record per rule) and ``report.md``. ``--results`` names another
folder of reports (the tests use a small one); nothing is fitted, so there is no smoke size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from experiments import harness
from nica.fitting.config import LoopConfig
from nica.fitting.stopping import Stopping
from nica.util.files import read_json

#: The rules replayed: (patience in evaluations, min_delta in nats per sample).
RULES = tuple((p, d) for p in (3, 5, 10) for d in (0.0, 0.001, 0.01))

#: The models whose cells hold nica histories.
NICA_MODELS = ("conditional", "unconditional")


def histories(results: Path) -> list[dict]:
    """Every nica cell's main-fit history in the ``results.json`` files under ``results``:
    ``{"report", "setting", "model", "seed", "epoch", "val_nll"}``."""
    found = []
    for path in sorted(results.glob("*/results.json")):
        body = read_json(path)
        cells = body.get("cells") if isinstance(body, dict) else None
        for cell in cells or []:
            history = cell.get("history") or {}
            if cell.get("model") not in NICA_MODELS or len(history.get("val_nll", [])) < 3:
                continue
            found.append(
                {
                    "report": path.parent.name,
                    "setting": cell["setting"],
                    "model": cell["model"],
                    "seed": cell["seed"],
                    "epoch": [int(e) for e in history["epoch"]],
                    "val_nll": [float(v) for v in history["val_nll"]],
                }
            )
    return found


def replay(epochs: Sequence[int], val_nll: Sequence[float], patience: int, min_delta: float):
    """``(stop_epoch, best_val_nll)`` of the early-stopping rule on one recorded history (its
    first entry the initial parameters, at epoch 0)."""
    settings = LoopConfig(patience=patience, min_delta=min_delta, explode_nats=None)
    stopping = Stopping(np.array([val_nll[0]]), settings, dim=1, gradient="replay")
    stop = epochs[-1]
    for epoch, value in zip(epochs[1:], val_nll[1:], strict=True):
        stopping.after_evaluation(epoch, np.array([value]))
        stopping.apply_patience()
        if not stopping.active[0]:
            stop = epoch
            break
    return stop, float(stopping.best_val[0])


def rule_record(found: list[dict], patience: int, min_delta: float) -> dict:
    """One rule's summary over every history: epochs trained and NLL given up."""
    stops, losses = [], []
    for h in found:
        stop, best = replay(h["epoch"], h["val_nll"], patience, min_delta)
        stops.append(stop / h["epoch"][-1])
        losses.append(best - min(h["val_nll"]))
    stops, losses = np.array(stops), np.array(losses)
    return {
        "patience": patience,
        "min_delta": min_delta,
        "fits": len(found),
        "epochs_share_mean": float(stops.mean()),
        "stopped_early": int((stops < 1).sum()),
        "nll_lost_median": float(np.median(losses)),
        "nll_lost_p90": float(np.percentile(losses, 90)),
        "nll_lost_max": float(losses.max()),
        "lost_over_0.1": int((losses > 0.1).sum()),
    }


def markdown(records: list[dict], n_reports: int) -> str:
    rows = [
        [
            r["patience"],
            r["min_delta"],
            f"{r['epochs_share_mean']:.0%}",
            f"{r['stopped_early']} / {r['fits']}",
            f"{r['nll_lost_median']:.3f}",
            f"{r['nll_lost_p90']:.3f}",
            f"{r['nll_lost_max']:.3f}",
            r["lost_over_0.1"],
        ]
        for r in records
    ]
    header = [
        "patience (evaluations)",
        "min_delta",
        "epochs trained (mean share)",
        "stopped early",
        "NLL lost median",
        "p90",
        "max",
        "fits losing > 0.1 nats",
    ]
    return "\n\n".join(
        [
            "# Early stopping at a validation plateau, replayed on the committed fits",
            f"Every nica fit (conditional and unconditional) of the {n_reports} committed"
            " `nica run` reports, its kept main fit evaluated every 10 epochs of the default"
            " 300 under a cosine-decayed rate. Each rule stops a fit after `patience`"
            " evaluations without an improvement larger than `min_delta` (nats per sample;"
            " `LoopConfig`'s rule, replayed with `nica.fitting.stopping.Stopping`). `NLL lost`:"
            " the best validation NLL up to the stop minus the full schedule's best.",
            harness.markdown_table(header, rows),
            "The likelihood often stalls while the rate is high and improves again as it"
            " decays, so a plateau within one cosine schedule is not convergence.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = harness.experiment_parser(__doc__, out=Path("results/plateau_stop"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    found = histories(args.results)
    if not found:
        parser.error(f"no nica histories in {args.results}/*/results.json")
    records = [rule_record(found, p, d) for p, d in RULES]
    n_reports = len({h["report"] for h in found})
    harness.write_report(args.out, records, markdown(records, n_reports))
    return records


if __name__ == "__main__":
    main()
