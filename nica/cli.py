"""The ``nica`` command: thin parsing and file writing around :mod:`nica.estimator`.

    nica fit --data FILE.npz --out DIR [--seed N] [--epochs E] [--depth L] [--prior NAME]
             [--unconditional] [--gradient relative|relative_coords|ordinary]
    nica transform --checkpoint DIR --data FILE.npz --out FILE.npz
    nica run [CONFIG] [--out DIR] [--force]

Bad input ends with exit status 2 and one line on stderr, ``nica: error: ...``; a diverged fit
with status 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from nica.estimator import FitConfig, FittedModel, check_labels, fit_arrays
from nica.metrics import mean_correlation_coefficient
from nica.network import GRADIENTS
from nica.observations import load_observations
from nica.storage import save_npz, write_json
from nica.training import TrainingDivergedError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(2, f"nica: error: {message}\n")


def _progress(total_epochs: int):
    def show(record: dict) -> None:
        print(
            f"  epoch {record['epoch']:>5}/{total_epochs}  train NLL {record['train_nll']:9.4f}"
            f"  val NLL {record['val_nll']:9.4f}  ({record['seconds']:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    return show


def source_metrics(s: np.ndarray, s_hat: np.ndarray) -> dict:
    """Pearson and Spearman MCC (with matching and per-component correlations) as a dict."""
    out = {}
    for method in ("pearson", "spearman"):
        result = mean_correlation_coefficient(s, s_hat, method=method)
        out[f"mcc_{method}"] = float(result.mcc)
        out[f"matching_{method}"] = [int(i) for i in result.matching]
        out[f"correlations_{method}"] = [float(c) for c in result.correlations]
    return out


def write_fit_outputs(out: Path, fitted: FittedModel, data, s_hat, extra: dict) -> dict:
    """Writes metrics.json, recovered.npz, the checkpoint and figures; returns the metrics."""
    from nica.plots import plot_matched_scatter, plot_training_curves

    history = fitted.result.history
    metrics = {
        "train_nll": history["train_nll"][-1],
        "val_nll": history["val_nll"][-1],
        "best_val_nll": fitted.result.best_val_nll,
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": fitted.result.epochs_run,
        "stop_reason": fitted.result.stop_reason,
        "restarts": fitted.restarts,
        **extra,
    }
    if data.s is not None:
        metrics.update(source_metrics(data.s, s_hat))
        plot_matched_scatter(
            data.s,
            s_hat,
            np.asarray(metrics["matching_pearson"]),
            np.asarray(metrics["correlations_pearson"]),
            out / "scatter.png",
            title=f"Pearson MCC {metrics['mcc_pearson']:.3f}",
        )
    save_npz(out / "recovered.npz", s_hat=s_hat.astype(np.float32))
    fitted.save(out / "checkpoint")
    plot_training_curves({"fit": history}, out / "training_curve.png")
    write_json(out / "metrics.json", metrics)
    return metrics


def _fit(args) -> int:
    data = load_observations(args.data)
    conditional = data.u is not None and not args.unconditional
    config = FitConfig(
        seed=args.seed,
        epochs=args.epochs,
        depth=args.depth,
        prior=args.prior,
        conditional=conditional,
        gradient=args.gradient,
        restarts=args.restarts,
    ).validate()
    if conditional and data.u.ndim == 1:
        check_labels(data.u)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_name = "conditional (Eq. 4)" if conditional else "unconditional (Eq. 3)"
    n, d = data.x.shape
    plan = f"{config.epochs} epochs"
    if config.restarts > 1:
        plan = (
            f"best of {config.restarts} initialisations after {config.resolved_restart_epochs}"
            f" epochs each, then {plan}"
        )
    print(f"nica fit: {model_name}, N={n}, D={d}, {plan}", file=sys.stderr)
    start = time.perf_counter()
    fitted = fit_arrays(config, data.x, data.u, callback=_progress(config.epochs))
    wall = time.perf_counter() - start
    resolved = {
        **dataclasses.asdict(config),
        "prior": config.prior_family,
        "data": str(args.data),
        "n_samples": n,
        "dim": d,
        "aux": fitted.aux,
        "model": "conditional" if conditional else "unconditional",
    }
    write_json(out / "config.json", resolved)
    metrics = write_fit_outputs(out, fitted, data, fitted.transform(data.x), {"wall_s": wall})
    summary = f"val NLL {metrics['val_nll']:.4f}"
    if "mcc_pearson" in metrics:
        summary += f", MCC {metrics['mcc_pearson']:.4f} (Spearman {metrics['mcc_spearman']:.4f})"
    print(f"nica fit: done in {wall:.1f} s, {summary}; wrote {out}", file=sys.stderr)
    return 0


def _transform(args) -> int:
    fitted = FittedModel.load(args.checkpoint)
    data = load_observations(args.data)
    save_npz(args.out, s_hat=fitted.transform(data.x).astype(np.float32))
    print(f"nica transform: wrote {args.out}", file=sys.stderr)
    return 0


def _run(args) -> int:
    from nica.experiment import run_experiment

    run_experiment(
        args.config,
        out=args.out,
        force=args.force,
        smoke=args.smoke,
        vmap=not args.sequential,
        seeds=args.seeds,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nica", description="Exact maximum-likelihood nonlinear ICA.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    defaults = FitConfig()

    fit_cmd = commands.add_parser("fit", help="fit a demixer to an .npz file")
    fit_cmd.add_argument("--data", required=True, help=".npz with x (N,D), optional u and s")
    fit_cmd.add_argument("--out", required=True, help="output directory")
    fit_cmd.add_argument("--seed", type=int, default=defaults.seed)
    fit_cmd.add_argument("--epochs", type=int, default=defaults.epochs)
    fit_cmd.add_argument("--depth", type=int, default=defaults.depth)
    fit_cmd.add_argument("--prior", default=defaults.prior, help="auto, gaussian, laplace, ...")
    fit_cmd.add_argument("--unconditional", action="store_true", help="ignore u (Eq. 3)")
    fit_cmd.add_argument(
        "--gradient", choices=[g for g in GRADIENTS if g != "autodiff"], default=defaults.gradient
    )
    fit_cmd.add_argument(
        "--restarts",
        type=int,
        default=defaults.restarts,
        help="initialisations tried (trained together), best validation NLL kept; 1 = none",
    )
    fit_cmd.set_defaults(handler=_fit)

    transform_cmd = commands.add_parser("transform", help="demix new data with a checkpoint")
    transform_cmd.add_argument("--checkpoint", required=True, help="DIR/checkpoint of a fit")
    transform_cmd.add_argument("--data", required=True, help=".npz with x (N,D)")
    transform_cmd.add_argument("--out", required=True, help="output .npz (key s_hat)")
    transform_cmd.set_defaults(handler=_transform)

    run_cmd = commands.add_parser("run", help="run an identifiability experiment")
    run_cmd.add_argument("config", nargs="?", default="demo", help="experiment config name")
    run_cmd.add_argument("--out", default=None, help="results directory")
    run_cmd.add_argument("--force", action="store_true", help="recompute finished cells")
    run_cmd.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    run_cmd.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="run only these seeds (e.g. one share per host); default: the config's seeds",
    )
    run_cmd.add_argument(
        "--sequential",
        action="store_true",
        help="fit seeds one after another (default: together, vmapped over devices)",
    )
    run_cmd.set_defaults(handler=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nica`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except TrainingDivergedError as err:
        print(f"nica: error: {err}", file=sys.stderr)
        return 3
    except (ValueError, OSError) as err:
        print(f"nica: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
