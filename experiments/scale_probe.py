"""Probes of fit settings at scale: MCC, held-out and training NLL gap per seed, side by side.

A diagnostic for issue 26 (fits stop short of the maximum likelihood at 20-50 sources and at
mixing depths 4-5). Each variant is a set of flat settings (``nica.fitting.config.FLAT_NAMES``)
over the defaults; all seeds of one variant are fitted together (``nica.fit_seeds``) on the
data of one setting of a shipped experiment config, and every fit is scored against the truth:
Pearson MCC, ``synthetic.truth.nll_gap`` (held-out and training gaps), the chosen depth, the
validation NLL history of the main fit, every restart's and every candidate depth's best
validation NLL (which one was kept), and wall time. One JSON file per variant, written
atomically, so variants can run in separate processes (one per core) and a finished one is
never refitted.

Command (one variant per process; ``--set`` repeats)::

    .venv/bin/python -m experiments.scale_probe --out results/scale_probe \\
        --config dimension --setting D=20 --seeds 0 1 2 --name lr3e-3 --set learning_rate=3e-3

``--report`` writes ``report.md`` from the JSON files already in ``--out``; ``--committed``
writes a setting's ``defaults`` row from its committed ``nica run`` report (no fit), so that
the probes sit beside the defaults' own numbers; ``--whiten`` fits ZCA-whitened observations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import time
from pathlib import Path

import numpy as np

from experiments.harness import assignments
from nica.apps.experiment.configs import EXPERIMENTS
from nica.apps.experiment.fitting import setting_dataset, truth_scores
from nica.fitting.config import FitConfig
from nica.fitting.estimator import fit_seeds
from nica.util.files import read_json, write_json, write_text


class Whitened:
    """A fit of ZCA-whitened observations seen in the units of ``x``: ``z = (x - mean) @ w``
    with ``w = cov(x)^(-1/2)``; ``transform`` and ``log_likelihood`` (plus ``log|det w|``, so
    the NLL gaps compare with the truth's on ``x``) are what ``truth_scores`` asks of a fit.

    Args:
      x: the observations the map is estimated on, shape ``(N, D)``.
    """

    def __init__(self, x):
        values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
        self.mean = x.mean(axis=0)
        self.w = vectors @ np.diag(values**-0.5) @ vectors.T
        self.log_det = float(-0.5 * np.sum(np.log(values)))
        self.fitted = None

    def __call__(self, x):
        """``(x - mean) @ w``, shape ``(N, D)``."""
        return (np.asarray(x, np.float64) - self.mean) @ self.w

    def transform(self, x):
        return self.fitted.transform(self(x))

    def log_likelihood(self, x, u=None):
        return self.fitted.log_likelihood(self(x), u) + self.log_det


def _variant_path(out, config_name: str, setting_label: str, name: str) -> Path:
    """``out/<config>_<setting>__<name>.json``, without ``=`` and spaces."""
    stem = f"{config_name}_{setting_label}__{name}".replace("=", "").replace(" ", "_")
    return Path(out) / f"{stem}.json"


def run_variant(
    config_name: str,
    setting_label: str,
    seeds,
    name: str,
    overrides: dict,
    out,
    data=None,
    whiten: bool = False,
):
    """Fits one variant on every seed's data (the setting's preset, with ``data`` overriding
    its overrides; ZCA-whitened before the fit with ``whiten``) and writes
    ``out/<config>_<setting>__<name>.json``."""
    path = _variant_path(out, config_name, setting_label, name)
    if path.exists():
        print(f"{path} exists: skipped")
        return
    config = EXPERIMENTS[config_name]
    (setting,) = [s for s in config.settings if s.label == setting_label]
    data = data or {}
    setting = dataclasses.replace(setting, overrides=(*setting.overrides, *data.items()))
    datasets = [setting_dataset(setting, s) for s in seeds]
    conditional = overrides.get("conditional", True)
    fit_config = FitConfig().replace(**overrides)
    maps = [Whitened(d.x) if whiten else None for d in datasets]
    xs = [d.x if m is None else m(d.x) for d, m in zip(datasets, maps, strict=True)]
    us = [d.u for d in datasets] if conditional else None
    start = time.perf_counter()
    fits = fit_seeds(xs, us, seeds=list(seeds), config=fit_config, progress=None)
    wall = time.perf_counter() - start
    records = []
    for seed, dataset, fitted, whitened in zip(seeds, datasets, fits, maps, strict=True):
        history = fitted.result.history
        if whitened is not None:
            whitened.fitted = fitted
        scored = fitted if whitened is None else whitened
        records.append(
            {
                "seed": seed,
                **truth_scores(scored, dataset, seed, conditional=conditional),
                "depth": fitted.config.model.depth,
                "diverged": fitted.result.diverged,
                "val_nll": [float(v) for v in history["val_nll"]],
                "restarts": _choices(fitted.restarts),
                "restart_curves": _restart_curves(fitted.histories),
                "depth_search": _choices(fitted.depth_search),
            }
        )
    body = {
        "config": config_name,
        "setting": setting_label,
        "variant": name,
        "overrides": overrides,
        "data": data,
        **({"whiten": "zca"} if whiten else {}),
        "wall_s": wall,
        "seeds": records,
    }
    write_json(path, body, indent=1)
    for r in records:
        print(
            f"{name} seed {r['seed']}: MCC {r['mcc']:.4f} gap {r['nll_gap']:.2f}"
            f" train {r['train_gap']:.2f} depth {r['depth']}"
        )


def _choices(record: dict | None) -> dict | None:
    """A fit's ``restarts`` or ``depth_search`` record, JSON-ready: every candidate's best
    validation NLL (in ``x``'s units) and the one kept; ``None`` when there was no choice."""
    if record is None:
        return None
    return {**record, "val_nll": [float(v) for v in record["val_nll"]]}


def _restart_curves(histories: dict | None) -> list[dict] | None:
    """The kept depth's restarts' validation curves, JSON-ready: per restart ``{"epoch": [...],
    "val_nll": [...]}`` at every evaluation; ``None`` without restarts."""
    if not histories or "restarts" not in histories:
        return None
    return [
        {"epoch": [int(e) for e in h["epoch"]], "val_nll": [float(v) for v in h["val_nll"]]}
        for h in histories["restarts"]
    ]


def committed_variant(config_name: str, setting_label: str, seeds, out, results="results") -> Path:
    """Writes ``out/<config>_<setting>__defaults.json`` from the committed report of ``nica run
    <config>`` (its conditional cells of that setting and ``seeds``): the defaults' row beside
    the probes. Reports older than the training gap leave it out (``None``)."""
    body = read_json(Path(results) / config_name / "results.json")
    cells = sorted(
        (
            c
            for c in body["cells"]
            if c["setting"] == setting_label and c["model"] == "conditional" and c["seed"] in seeds
        ),
        key=lambda c: c["seed"],
    )
    if not cells:
        raise ValueError(f"no conditional cells of {setting_label!r} in {results}/{config_name}")
    records = [
        {
            "seed": c["seed"],
            "mcc": c["mcc_pearson"],
            "nll_gap": c["nll_gap"],
            "train_gap": c.get("train_gap"),
            "depth": c["depth"],
            "diverged": None,
            "val_nll": c["history"]["val_nll"],
        }
        for c in cells
    ]
    Path(out).mkdir(parents=True, exist_ok=True)
    path = _variant_path(out, config_name, setting_label, "defaults")
    write_json(
        path,
        {
            "config": config_name,
            "setting": setting_label,
            "variant": "defaults",
            "overrides": {},
            "data": {},
            "wall_s": sum(c["wall_s"] for c in cells),
            "source": f"the committed {results}/{config_name} cells (nica run {config_name},"
            " defaults); wall_s is their sum",
            "seeds": records,
        },
        indent=1,
    )
    return path


def _per_seed(records: list, key: str) -> str:
    return " / ".join("–" if r[key] is None else f"{r[key]:.2f}" for r in records)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _command(body: dict) -> str:
    """The command line that wrote a variant's JSON file."""
    seeds = " ".join(str(r["seed"]) for r in body["seeds"])
    parts = [
        "python -m experiments.scale_probe",
        f"--config {body['config']} --setting {shlex.quote(body['setting'])} --seeds {seeds}",
        f"--name {body['variant']}",
        *(f"--set {k}={_text(v)}" for k, v in body["overrides"].items()),
        *(f"--data {k}={_text(v)}" for k, v in (body.get("data") or {}).items()),
        *(["--whiten"] if body.get("whiten") else []),
    ]
    return " ".join(parts)


def _candidate_rows(body: dict) -> list[str]:
    """One table row per seed whose fit chose among restarts: each restart's best validation
    NLL above the lowest (nats per sample; the kept one in bold) and the fit's held-out gap."""
    rows = []
    for r in body["seeds"]:
        record = r.get("restarts")
        if not record:
            continue
        low = min(record["val_nll"])
        above = [f"{v - low:.2f}" for v in record["val_nll"]]
        above[record["chosen"]] = f"**{above[record['chosen']]}**"
        rows.append(_seed_row(body, r, " ".join(above), f"{r['nll_gap']:.2f}", f"{r['mcc']:.3f}"))
    return rows


def _seed_row(body: dict, record: dict, *cells: str) -> str:
    """A per-seed table row: the probe's data, variant and seed, then ``cells``."""
    where = f"{body['config']} {body['setting']}"
    return "| " + " | ".join([where, body["variant"], str(record["seed"]), *cells]) + " |"


def _candidates_section(rows: list[str]) -> list[str]:
    if not rows:
        return []
    return [
        "Restarts of the fits that recorded them (the kept depth's, or the only depth's): each"
        " restart's best validation NLL after its short fit (`restart_epochs`; full length in"
        " the `full` variants) above the lowest one, in nats per sample (the kept restart in"
        " bold), and the final fit's held-out gap and MCC. Restarts within a few hundredths"
        " of each other ended in the same optimum; a spread of a nat, in optima as far apart"
        " as a poor fit is from the truth.",
        "",
        "| data | variant | seed | restarts' validation NLL above the lowest | gap | MCC |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


#: Epochs at which :func:`restart_ranking` reads the restarts' order, and the pruning rules it
#: tries: ``(epoch, keep)``, the ``keep`` restarts lowest at ``epoch`` train on.
RANK_EPOCHS = (30, 60, 150)
PRUNINGS = ((30, 4), (60, 2))


def restart_ranking(curves: list[dict]) -> dict | None:
    """How early the restarts' order told the best one, from their validation curves.

    Args:
      curves: per restart ``{"epoch": [...], "val_nll": [...]}`` (:func:`_restart_curves`).

    Returns:
      ``{"rank": {epoch: r}, "lost": {"epoch:keep": nats}}``: ``r`` is the rank (1: lowest) of
      the restart with the lowest final validation NLL among the restarts' lowest NLLs up to
      ``epoch``; ``nats`` is what keeping only the ``keep`` lowest at ``epoch`` would have
      cost: the lowest final NLL among them minus the lowest of all (0: the pruning keeps the
      best). ``None`` when the restarts were shorter than the last of :data:`RANK_EPOCHS`.
    """
    if not curves or min(max(c["epoch"]) for c in curves) < RANK_EPOCHS[-1]:
        return None

    def low_by(epoch):  # each restart's lowest finite NLL up to ``epoch`` (inf: none)
        pairs = [zip(c["epoch"], c["val_nll"], strict=True) for c in curves]
        return np.array(
            [min((v for e, v in p if e <= epoch and np.isfinite(v)), default=np.inf) for p in pairs]
        )

    final = low_by(np.inf)

    winner = int(np.argmin(final))
    lows = {e: low_by(e) for e in sorted({*RANK_EPOCHS, *(e for e, _ in PRUNINGS)})}
    rank = {e: int(np.sum(lows[e] < lows[e][winner])) + 1 for e in RANK_EPOCHS}
    lost = {
        f"{e}:{keep}": float(final[np.argsort(lows[e])[:keep]].min() - final.min())
        for e, keep in PRUNINGS
    }
    return {"rank": rank, "lost": lost}


def _ranking_rows(body: dict) -> list[str]:
    rows = []
    for r in body["seeds"]:
        ranking = restart_ranking(r.get("restart_curves"))
        if ranking is None:
            continue
        ranks = " / ".join(str(ranking["rank"][e]) for e in RANK_EPOCHS)
        lost = " | ".join(f"{ranking['lost'][f'{e}:{k}']:.2f}" for e, k in PRUNINGS)
        rows.append(_seed_row(body, r, str(len(r["restart_curves"])), ranks, lost))
    return rows


def _ranking_section(rows: list[str]) -> list[str]:
    if not rows:
        return []
    epochs = " / ".join(str(e) for e in RANK_EPOCHS)
    prunings = " | ".join(f"top {k} at epoch {e}: nats lost" for e, k in PRUNINGS)
    return [
        "How early full-length restarts tell the best one (fits that recorded their restarts'"
        " validation curves): the rank (1: lowest) at each epoch of the restart whose final"
        " validation NLL is the lowest, by each restart's lowest NLL so far; and what keeping"
        " only the lowest few at an epoch would have cost (the best final NLL among them"
        " minus the best of all, nats per sample; 0.00: the pruning keeps the best).",
        "",
        f"| data | variant | seed | restarts | best one's rank at epoch {epochs} | {prunings} |",
        "|---|---|---|---|---|" + "---|" * len(PRUNINGS),
        *rows,
        "",
    ]


def write_report(out) -> Path:
    """``out/report.md``: one row per (setting, variant) JSON file, seeds side by side."""
    rows, commands, candidates, rankings = [], [], [], []
    for path in sorted(Path(out).glob("*.json")):
        body = read_json(path)
        candidates.extend(_candidate_rows(body))
        rankings.extend(_ranking_rows(body))
        where = body.get("source") or f"`{_command(body)}`"
        commands.append(f"- {body['config']} {body['setting']}, {body['variant']}: {where}")
        recs = body["seeds"]
        mccs = [r["mcc"] for r in recs]
        rows.append(
            f"| {body['config']} {body['setting']} {_text(body.get('data') or '')}"
            f"{' whitened' if body.get('whiten') else ''} | "
            f"{body['variant']} | "
            f"{json.dumps(body['overrides'])} | {' / '.join(f'{m:.3f}' for m in mccs)} | "
            f"{np.median(mccs):.3f} | {_per_seed(recs, 'nll_gap')} | "
            f"{_per_seed(recs, 'train_gap')} | "
            f"{body['wall_s']:.0f} |"
        )
    text = "\n".join(
        [
            "# Scale probe: fit settings at scale (sources and mixing depth)",
            "",
            "Generated by `python -m experiments.scale_probe --report`. Each row: one variant"
            " (flat settings over the defaults) fitted on seeds' data together; MCC (Pearson),"
            " held-out NLL gap and training gap to the true model per seed (nats), wall time"
            " of the vmapped group (one process, seconds; probes ran two at a time on a"
            " 2-core machine, so times compare only roughly).",
            "",
            "| data | variant | settings | MCC per seed | median | gap per seed"
            " | training gap per seed | wall (s) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *_candidates_section(candidates),
            *_ranking_section(rankings),
            "Where each row comes from (commands with `--out results/scale_probe`):",
            "",
            *commands,
            "",
        ]
    )
    path = Path(out) / "report.md"
    write_text(path, text)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/scale_probe")
    parser.add_argument("--config", default="dimension")
    parser.add_argument("--setting", default="D=20")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="defaults")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--whiten", action="store_true", help="ZCA-whiten x before the fit (scored in x's units)"
    )
    parser.add_argument("--report", action="store_true")
    parser.add_argument(
        "--committed",
        action="store_true",
        help="write the setting's defaults row from its committed nica run report (no fit)",
    )
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.report:
        print(write_report(args.out))
        return
    if args.committed:
        print(committed_variant(args.config, args.setting, args.seeds, args.out))
        return
    overrides, data = assignments(args.set), assignments(args.data)
    run_variant(
        args.config, args.setting, args.seeds, args.name, overrides, args.out, data, args.whiten
    )


if __name__ == "__main__":
    main()
