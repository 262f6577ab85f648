"""The ``nica`` command: thin parsing, checks and file writing around the public estimator API.

    nica fit --data FILE.npz --out DIR [--seed N] [--epochs E] [--depth L] [--prior NAME]
             [--gradient MODE] [--restarts K] [--batch-size B] [--learning-rate LR]
             [--unconditional] [--method nica|ivae|tcl] [--force] [--quiet]
    nica transform --checkpoint DIR --data FILE.npz --out FILE.npz
    nica run [CONFIG] [--out DIR] [--force] [--smoke] [--seeds S ...] [--sequential] [--quiet]
    nica density --data FILE.npz --out DIR [--logit LOW HIGH] [--dequantise] ...
    nica --version

Every default is ``nica.FitConfig``'s. Progress bars (``nica.util.progress``) go to stderr on a
terminal; ``nica run`` prints its report on stdout. Bad input ends with exit status 2 and one
line on stderr, ``nica: error: ...``; a diverged fit with status 3; Ctrl-C with status 130 and
one line saying what was kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np

import nica
from nica.apps.experiment import EXPERIMENTS, default_out
from nica.core.activations import ACTIVATIONS
from nica.core.conditional import CONDITIONAL_FAMILIES
from nica.core.metrics import mean_correlation_coefficient
from nica.core.priors import PRIORS
from nica.fitting.auxiliary import IdentifiabilityWarning, read_aux
from nica.fitting.data import OutlierWarning, load_observations, standardise
from nica.fitting.estimator import AUTO_DEPTH, AUTO_DEPTH_RULE, check_inputs
from nica.methods import BASELINES
from nica.util.files import save_npz, write_json
from nica.util.progress import fit_progress, progress_enabled, run_progress
from nica.util.provenance import environment

__all__ = ["FIT_OUTPUTS", "main"]

#: What ``nica fit`` writes into ``--out``; ``--force`` removes these (and nothing else) first.
FIT_OUTPUTS = (
    "config.json",
    "metrics.json",
    "recovered.npz",
    "checkpoint",
    "scatter.png",
    "training_curve.png",
)


#: The unit of every NLL that ``nica fit`` prints, saves and plots.
NLL_UNITS = "nats per sample, in the units of x (-log p(x|u), or -log p(x) without u)"


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(2, f"nica: error: {message}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks; adds ``(default: X)`` to every option taking a value."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class _Discard:
    """A text stream that drops what is written (``nica run --quiet``)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what was kept."""


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version() -> str:
    return nica.__version__


def source_metrics(s: np.ndarray, s_hat: np.ndarray) -> dict:
    """Pearson and Spearman MCC (with matching and per-component correlations) as a dict."""
    out = {}
    for method in ("pearson", "spearman"):
        result = mean_correlation_coefficient(s, s_hat, method=method)
        out[f"mcc_{method}"] = float(result.mcc)
        out[f"matching_{method}"] = [int(i) for i in result.matching]
        out[f"correlations_{method}"] = [float(c) for c in result.correlations]
    return out


def write_fit_outputs(out: Path, fitted, data, s_hat, extra: dict) -> dict:
    """Writes metrics.json, recovered.npz, the checkpoint and figures; returns the metrics."""
    from nica.apps.plots import plot_matched_scatter, plot_training_curves

    history = fitted.result.history
    metrics = {
        "nll_units": NLL_UNITS,
        "train_nll": history["train_nll"][-1],
        "val_nll": history["val_nll"][-1],
        "best_val_nll": fitted.result.best_val_nll,
        "best_epoch": fitted.result.best_epoch,
        "epochs_run": fitted.result.epochs_run,
        "stop_reason": fitted.result.stop_reason,
        "restarts": fitted.restarts,
        "depth_search": fitted.depth_search,
        "prior_shape": fitted.prior_shape,
        **extra,
        "environment": environment(),
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


def _earlier_fit(out: Path) -> list[str]:
    return [name for name in FIT_OUTPUTS if (out / name).exists() or (out / name).is_symlink()]


def prepare_fit_out(out: Path, *, force: bool) -> bool:
    """Creates ``out`` and test-writes a file there, before any training.

    Returns:
      Whether ``out`` was created (so a failed fit can remove it again).

    Raises:
      ValueError: one line, when ``out`` cannot be created or written, or when it holds the
        outputs of an earlier fit and ``force`` is not set.
    """
    created = not out.is_dir()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".nica-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    earlier = _earlier_fit(out)
    if earlier and not force:
        raise ValueError(
            f"--out {out} holds an earlier fit ({', '.join(earlier)}); "
            "pass --force to replace it, or choose another folder"
        )
    return created


def remove_fit_outputs(out: Path) -> None:
    """Removes an earlier fit's :data:`FIT_OUTPUTS` from ``out`` (other files stay)."""
    for name in _earlier_fit(out):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _fit_config(args, conditional: bool):
    """The ``FitConfig`` of the parsed options: every option named like a field sets it."""
    names = {f.name for f in dataclasses.fields(nica.FitConfig)}
    fields = {name: value for name, value in vars(args).items() if name in names}
    return nica.FitConfig(**fields, conditional=conditional).validate()


def _plan(config, dim: int) -> str:
    plan = f"{config.epochs} epochs"
    if config.restarts > 1:
        plan = (
            f"best of {config.restarts} initialisations after {config.resolved_restart_epochs}"
            f" epochs each, then {plan}"
        )
    depths = config.candidate_depths(dim)
    if len(depths) > 1:
        listed = " and ".join(map(str, depths))
        return f"{plan}; at depths {listed} in turn, keeping the lower validation NLL"
    return f"{plan}; depth {depths[0]}"


def _abandon(err: BaseException, out: Path, created: bool) -> None:
    """After a fit that failed or was stopped: removes ``out`` if the command created it and it
    is still empty; Ctrl-C becomes the one line saying that nothing was written."""
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if isinstance(err, KeyboardInterrupt):
        raise _Interrupted(f"the fit was stopped; nothing was written to {out}") from None


def _fit(args) -> int:
    if args.method != "nica":
        return _fit_baseline(args)
    data = load_observations(args.data)
    conditional = data.u is not None and not args.unconditional
    config = _fit_config(args, conditional)
    reading = check_inputs(
        data.x, data.u if conditional else None, config=config, where=args.data, where_u=args.data
    )
    out = Path(args.out)
    created = prepare_fit_out(out, force=args.force)
    model = "conditional" if conditional else "unconditional"
    n, d = data.x.shape
    how = "" if reading is None else f", {reading.description}"
    _status(
        f"nica fit: {model} model (Eq. {4 if conditional else 3}), N={n}, D={d}{how}, "
        f"{_plan(config, d)}"
    )
    with fit_progress(progress_enabled(args.quiet)) as progress:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():  # check_inputs has said them
                warnings.simplefilter("ignore", IdentifiabilityWarning)
                warnings.simplefilter("ignore", OutlierWarning)
                fitted = nica.fit(
                    data.x,
                    data.u if conditional else None,
                    config=config,
                    progress=progress,
                    where=args.data,
                    where_u=args.data,
                )
        except BaseException as err:
            _abandon(err, out, created)
            raise
        wall = time.perf_counter() - start
        if progress is not None:
            progress.status("writing metrics, checkpoint and figures")
        metrics = _write_fit(args, out, config, fitted, data, wall, conditional)
    summary = f"val NLL {metrics['val_nll']:.4f} nats/sample (units of x)"
    search = fitted.depth_search
    if search is not None:
        tried = zip(search["depths"], search["val_nll"], strict=True)
        listed = ", ".join(f"depth {depth}: {nll:.4f}" for depth, nll in tried)
        summary += f" at depth {fitted.config.depth} ({listed})"
    if "nll_gap" in metrics:
        summary += f", NLL gap to the true model {metrics['nll_gap']:.3f} nats"
    if "mcc_pearson" in metrics:
        summary += f", MCC {metrics['mcc_pearson']:.4f} (Spearman {metrics['mcc_spearman']:.4f})"
    _status(f"nica fit: done in {wall:.1f} s, {summary}; wrote {out}")
    return 0


def _write_fit(args, out: Path, config, fitted, data, wall: float, conditional: bool) -> dict:
    """Writes config.json and the fit's outputs (:func:`write_fit_outputs`); the metrics."""
    n, d = data.x.shape
    model = "conditional" if conditional else "unconditional"
    resolved = {
        **config.to_dict(),
        "prior": config.prior_family,
        "gradient": config.resolved_gradient(d, n).name,
        "gradient_rule": config.gradient,
        "depth": fitted.config.depth,
        "depth_rule": config.depth,
        "depth_search": fitted.depth_search,
        "restart_epochs": config.resolved_restart_epochs,
        "data": str(Path(args.data).resolve()),
        "n_samples": n,
        "dim": d,
        "aux": fitted.aux,
        "model": model,
        "nica_version": _version(),
        "environment": environment(),
    }
    try:
        remove_fit_outputs(out)
        write_json(out / "config.json", resolved)
        extra = {"wall_s": wall, **_truth_gap(args.data, fitted, conditional)}
        metrics = write_fit_outputs(out, fitted, data, fitted.transform(data.x), extra)
    except KeyboardInterrupt:
        raise _Interrupted(
            f"the outputs in {out} are incomplete; run again with --force to replace them"
        ) from None
    return metrics


#: ``nica fit`` options of the nica model only, refused with ``--method ivae|tcl``.
_NICA_ONLY = ("epochs", "depth", "prior", "gradient", "restarts", "batch_size", "learning_rate")


def _fit_baseline(args) -> int:
    """``nica fit --method ivae|tcl``: the baseline with its own defaults and ``--seed``;
    writes config.json, metrics.json, recovered.npz and, with true sources, scatter.png."""
    from nica.apps.plots import plot_matched_scatter
    from nica.methods import get_baseline

    baseline = get_baseline(args.method)
    defaults = nica.FitConfig()
    for name in _NICA_ONLY:
        if getattr(args, name) != getattr(defaults, name):
            raise ValueError(
                f"--{name.replace('_', '-')} sets the nica model; --method {args.method} runs "
                f"with the defaults of nica.methods.{baseline.config.__name__} and --seed"
            )
    if args.unconditional:
        raise ValueError(f"--unconditional sets the nica model; {args.method} needs u")
    data = load_observations(args.data)
    if data.u is None:
        raise ValueError(
            f"{args.data}: {args.method} needs the auxiliary variable u; the file has none"
        )
    reading = read_aux(data.u, where=args.data)  # errors name the file, not the library's x
    standardise(data.x, where=args.data)
    config = baseline.config(seed=args.seed).validate()
    out = Path(args.out)
    created = prepare_fit_out(out, force=args.force)
    _status(
        f"nica fit: {args.method} baseline, N={data.x.shape[0]}, D={data.x.shape[1]}, "
        f"{reading.description}"
    )
    start = time.perf_counter()
    try:
        with fit_progress(progress_enabled(args.quiet)) as progress:
            (fitted,) = baseline.fit_seeds(
                [data.x], [data.u], seeds=[args.seed], config=config, progress=progress
            )
    except BaseException as err:
        _abandon(err, out, created)
        raise
    if fitted.diverged is not None:
        raise nica.TrainingDivergedError(fitted.diverged, epoch=len(fitted.losses), history={})
    wall = time.perf_counter() - start
    s_hat = fitted.transform(data.x, data.u)
    remove_fit_outputs(out)
    resolved = {"method": args.method, **config.to_dict(), "data": str(Path(args.data).resolve())}
    env = environment()
    write_json(out / "config.json", {**resolved, "nica_version": _version(), "environment": env})
    metrics = {"method": args.method, "wall_s": wall, "final_loss": float(fitted.losses[-1])}
    metrics["environment"] = env
    if hasattr(fitted, "accuracy"):
        metrics["segment_accuracy"] = fitted.accuracy
    if data.s is not None:
        metrics["mcc_target"] = baseline.target_name
        metrics.update(source_metrics(baseline.target(data.s), s_hat))
        plot_matched_scatter(
            baseline.target(data.s),
            s_hat,
            np.asarray(metrics["matching_pearson"]),
            np.asarray(metrics["correlations_pearson"]),
            out / "scatter.png",
            title=f"Pearson MCC {metrics['mcc_pearson']:.3f} against {baseline.target_name}",
            label=args.method,
        )
    save_npz(out / "recovered.npz", s_hat=s_hat.astype(np.float32))
    write_json(out / "metrics.json", metrics)
    summary = f", MCC {metrics['mcc_pearson']:.4f}" if "mcc_pearson" in metrics else ""
    _status(f"nica fit: done in {wall:.1f} s{summary}; wrote {out}")
    return 0


def _truth_gap(path, fitted, conditional: bool) -> dict:
    """``test_nll``, ``true_nll``, ``nll_gap`` (``synthetic.truth.nll_gap``) when the file is a
    synthetic dataset that carries its mixing and source parameters; else nothing."""
    from synthetic.dataset import load_dataset
    from synthetic.truth import nll_gap

    dataset = load_dataset(path)
    if dataset.mixing is None or dataset.u is None or dataset.u.ndim != 1:
        return {}
    seed = 10_000 + int((dataset.config or {}).get("seed", 0))
    try:
        return nll_gap(fitted, dataset, seed=seed, conditional=conditional)
    except ValueError:  # no recorded source parameters: the truth's density is unknown
        return {}


def _transform(args) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the path of the .npz file to write")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: folder {out.parent} does not exist")
    fitted = nica.load(args.checkpoint)
    data = load_observations(args.data)
    save_npz(out, s_hat=fitted.transform(data.x).astype(np.float32))
    _status(f"nica transform: wrote {out}")
    return 0


def _run(args) -> int:
    from nica.apps.experiment import run_experiment

    if args.config not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {args.config!r}; known: {', '.join(EXPERIMENTS)}")
    out = Path(args.out) if args.out else default_out(args.config, smoke=args.smoke)
    _status(f"nica run {args.config}: results in {out}")
    start = time.perf_counter()
    try:
        with run_progress(progress_enabled(args.quiet)) as (progress, on_cell, log):
            rows = run_experiment(
                args.config,
                out=args.out,
                force=args.force,
                smoke=args.smoke,
                vmap=not args.sequential,
                seeds=args.seeds,
                progress=progress,
                on_cell=on_cell,
                log=_Discard() if args.quiet else log,
            )
    except KeyboardInterrupt:
        raise _Interrupted(
            f"the finished cells in {out / 'cells'} are kept; run the same command to resume"
        ) from None
    wall = time.perf_counter() - start
    if any(row.get("pending") for row in rows):
        _status(f"nica run {args.config}: cells still running elsewhere; no report yet")
        return 0
    print((out / "report.md").read_text(), end="", flush=True)  # the report, on stdout
    _status(f"nica run {args.config}: done in {wall:.1f} s; wrote {out}")
    return 0


def _depth_option(text: str) -> int | str:
    """``--depth``: ``auto`` or an integer (its range is checked by ``FitConfig.validate``)."""
    return text if text == AUTO_DEPTH else int(text)


_depth_option.__name__ = "depth"  # argparse's message: "invalid depth value: 'x'"


#: ``nica fit`` options that set the ``FitConfig`` field of the same name: (flag, metavar,
#: type, help); the default shown is FitConfig's.
_CONFIG_OPTIONS = (
    ("--seed", "N", int, "PRNG seed of initialisation, validation split and shuffling"),
    ("--epochs", "E", int, "passes over the data in the main fit"),
    (
        "--depth",
        "L",
        _depth_option,
        f"number of square layers of the demixer; auto: {AUTO_DEPTH_RULE}",
    ),
    (
        "--restarts",
        "K",
        int,
        "initialisations trained together for a twelfth of --epochs; the one with the best "
        "validation NLL is kept; 1 = none",
    ),
    ("--batch-size", "B", int, "minibatch size"),
    (
        "--learning-rate",
        "LR",
        float,
        "peak Adam learning rate, cosine-decayed to 0 over the epochs",
    ),
)


def _add_config_option(cmd, defaults, flag: str, metavar: str, kind, text: str) -> None:
    field = flag[2:].replace("-", "_")
    cmd.add_argument(flag, metavar=metavar, type=kind, default=getattr(defaults, field), help=text)


def _add_fit_parser(commands) -> None:
    defaults = nica.FitConfig()
    conditional_auto = dataclasses.replace(defaults, prior="auto").prior_family
    unconditional_auto = dataclasses.replace(defaults, prior="auto", conditional=False).prior_family
    relative = [name for name, mode in nica.GRADIENTS.items() if mode.relative]
    gradients = ["auto", *(name for name in nica.GRADIENTS if name != "autodiff")]
    cmd = commands.add_parser(
        "fit",
        help="fit a demixer to an .npz file",
        description=textwrap.fill(
            "Fits the conditional model (Eq. 4) when the file has u, else Eq. 3. Writes "
            "config.json, metrics.json, recovered.npz, checkpoint/, training_curve.png and, "
            "when the file has the true sources s, scatter.png.",
            width=80,
        ),
        formatter_class=_HelpFormatter,
    )
    cmd.add_argument(
        "--data", required=True, metavar="FILE", help=".npz with x (N,D), optional u and s"
    )
    cmd.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (created; checked before the fit)",
    )
    for flag, metavar, kind, text in _CONFIG_OPTIONS[:3]:
        _add_config_option(cmd, defaults, flag, metavar, kind, text)
    cmd.add_argument(
        "--prior",
        metavar="NAME",
        default=defaults.prior,
        help=f"component density; the conditional model (u given) takes auto, "
        f"{', '.join(CONDITIONAL_FAMILIES)}; the unconditional one (no u, or --unconditional) "
        f"takes auto, {', '.join(PRIORS)}; auto = {conditional_auto} (its exponent learned "
        f"per component, Laplace to Gaussian) with u, {unconditional_auto} without",
    )
    cmd.add_argument(
        "--gradient",
        metavar="MODE",
        choices=gradients,
        default=defaults.gradient,
        help=f"training rule of the square layers, one of {', '.join(gradients)}; the "
        f"relative-gradient modes ({', '.join(relative)}) need no slogdet or inverse in a step; "
        "auto = relative_coords while D <= batch size, relative_pooled above",
    )
    cmd.add_argument(
        "--activation",
        metavar="NAME",
        choices=list(ACTIVATIONS),
        default=defaults.activation,
        help=f"demixer activation, one of {', '.join(ACTIVATIONS)}; the learnable "
        "monotone_spline and monotone_mixture presuppose no mixing nonlinearity",
    )
    for flag, metavar, kind, text in _CONFIG_OPTIONS[3:]:
        _add_config_option(cmd, defaults, flag, metavar, kind, text)
    cmd.add_argument(
        "--method",
        choices=("nica", *BASELINES),
        default="nica",
        help="nica (this package's model), or a baseline of nica.methods that needs u: ivae "
        "(posterior means) or tcl (FastICA of its features, which follow |s|); a baseline runs "
        "with its own defaults and --seed, and writes no checkpoint",
    )
    for flag, text in (
        ("--unconditional", "ignore u: fit Eq. 3"),
        ("--force", "replace the outputs of an earlier fit in --out (refused without it)"),
        ("--quiet", "no progress bars, only a line at start and end (also without a terminal)"),
    ):
        cmd.add_argument(flag, action="store_true", help=text)
    cmd.set_defaults(handler=_fit)


def _add_run_parser(commands) -> None:
    column = max(map(len, EXPERIMENTS))
    configs = "\n".join(
        textwrap.fill(
            config.description,
            width=96,
            initial_indent=f"  {name:<{column}} ",
            subsequent_indent=" " * (column + 3),
        )
        for name, config in EXPERIMENTS.items()
    )
    cmd = commands.add_parser(
        "run",
        help="run an identifiability experiment",
        description=textwrap.fill(
            "Runs (or resumes) an experiment: every finished cell is kept in OUT/cells, so an "
            "interrupted run resumes where it stopped. Writes report.md, tables and figures "
            "to OUT and prints the report on stdout.",
            width=80,
        ),
        epilog=f"configs:\n{configs}",
        formatter_class=_HelpFormatter,
    )
    cmd.add_argument(
        "config", nargs="?", default="demo", metavar="CONFIG", help="experiment config, see below"
    )
    cmd.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"results folder (default: {default_out('CONFIG')}, or "
        f"{default_out('CONFIG', smoke=True)} with --smoke: git-ignored; the committed "
        "reports are made with --out results/CONFIG)",
    )
    cmd.add_argument("--force", action="store_true", help="recompute finished cells")
    cmd.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    cmd.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="S",
        help="run only these seeds (e.g. one share per host); default: the config's seeds",
    )
    for flag, text in (
        ("--sequential", "fit seeds one after another (default: together, vmapped over devices)"),
        ("--quiet", "only a line at start and end (without a terminal: no bars, a line per cell)"),
    ):
        cmd.add_argument(flag, action="store_true", help=text)
    cmd.set_defaults(handler=_run)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nica", description="Exact maximum-likelihood nonlinear ICA.")
    parser.add_argument("--version", action="version", version=f"nica {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_fit_parser(commands)
    transform_cmd = commands.add_parser(
        "transform", help="demix new data with a checkpoint", formatter_class=_HelpFormatter
    )
    transform_cmd.add_argument("--checkpoint", required=True, help="DIR/checkpoint of a fit")
    transform_cmd.add_argument("--data", required=True, help=".npz with x (N,D)")
    transform_cmd.add_argument("--out", required=True, help="output .npz file (key s_hat)")
    transform_cmd.set_defaults(handler=_transform)
    _add_run_parser(commands)
    from nica.apps.density_cli import add_density_parser  # the density command's own module

    add_density_parser(commands, _HelpFormatter)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command: one line, ``nica: warning: ...``."""
    _status(f"nica: warning: {message}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nica`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line  # restored on exit
        return _handle(args)


def _handle(args) -> int:
    try:
        return args.handler(args)
    except _Interrupted as err:
        _status(f"nica: interrupted: {err}")
        return 130
    except KeyboardInterrupt:
        _status("nica: interrupted")
        return 130
    except nica.TrainingDivergedError as err:
        _status(f"nica: error: {err}")
        return 3
    except (ValueError, OSError) as err:
        _status(f"nica: error: {err}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
