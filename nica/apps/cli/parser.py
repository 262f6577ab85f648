"""The ``nica`` command's parser: ``fit``, ``stability``, ``transform``, ``run`` and
``density``."""

from __future__ import annotations

import argparse
import textwrap

import nica
from nica.apps.cli.console import HelpFormatter, Parser, version
from nica.apps.cli.fit import NICA, run_fit
from nica.apps.cli.run import run_run
from nica.apps.cli.stability import STABILITY_OUTPUTS, run_stability
from nica.apps.cli.transform import run_transform
from nica.apps.experiment import EXPERIMENTS, default_out
from nica.core.activations import ACTIVATIONS
from nica.core.conditional import CONDITIONAL_FAMILIES
from nica.core.metrics import METHODS as CORRELATIONS
from nica.core.priors import PRIORS
from nica.fitting.config import AUTO_DEPTH, AUTO_DEPTH_RULE, AUTO_PRIORS, AUTO_WARM_START_RULE
from nica.fitting.stability import DEFAULT_SEEDS
from nica.fitting.warm import WARM_STARTS
from nica.methods import METHODS
from nica.util.cache import CACHE_ENV, CACHE_OFF, cache_dir

__all__ = ["build_parser"]


def _depth_option(text: str) -> int | str | list[int]:
    """``--depth``: ``auto``, an integer, or integers separated by commas (the depths to search);
    their range is checked by ``FitConfig``."""
    if text == AUTO_DEPTH:
        return text
    depths = [int(part) for part in text.split(",")]
    return depths if "," in text else depths[0]


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
        f"number of square layers of the demixer; auto: {AUTO_DEPTH_RULE}; L1,L2,...: fit "
        "each, keep the lowest validation NLL",
    ),
    (
        "--restarts",
        "K",
        int,
        "initialisations trained together for a twelfth of --epochs; the one with the best "
        "validation NLL is kept; 1 = none",
    ),
    (
        "--restart-epochs",
        "E",
        int,
        "epochs of each initialisation's short fit (default: a twelfth of --epochs); on deep "
        "mixings as many as --epochs picks better optima, at a few times the cost",
    ),
    ("--batch-size", "B", int, "minibatch size"),
    (
        "--learning-rate",
        "LR",
        float,
        "peak Adam learning rate, cosine-decayed to 0 over the epochs",
    ),
)


def _add_config_option(cmd, defaults: dict, flag: str, metavar: str, kind, text: str) -> None:
    field = flag[2:].replace("-", "_")
    cmd.add_argument(flag, metavar=metavar, type=kind, default=defaults[field], help=text)


def _add_fit_settings(cmd, *, seed: bool = True) -> None:
    """The options of ``nica fit`` that set the model and its training (``FitConfig``'s
    defaults); ``seed=False`` leaves out ``--seed`` (a command that takes several seeds)."""
    defaults = nica.FitConfig().flat()  # the flat settings
    conditional_auto, unconditional_auto = AUTO_PRIORS[True], AUTO_PRIORS[False]
    relative = [name for name, mode in nica.GRADIENTS.items() if mode.relative]
    gradients = ["auto", *(name for name in nica.GRADIENTS if name != "autodiff")]
    for flag, metavar, kind, text in _CONFIG_OPTIONS[:3]:
        if seed or flag != "--seed":
            _add_config_option(cmd, defaults, flag, metavar, kind, text)
    cmd.add_argument(
        "--prior",
        metavar="NAME",
        default=defaults["prior"],
        help=f"component density; the conditional model (u given) takes auto, "
        f"{', '.join(CONDITIONAL_FAMILIES)}; the unconditional one (no u, or --unconditional) "
        f"takes auto, {', '.join(PRIORS)}; auto = {conditional_auto} (its exponent learned "
        f"per component, Laplace to Gaussian) with u, {unconditional_auto} without",
    )
    cmd.add_argument(
        "--gradient",
        metavar="MODE",
        choices=gradients,
        default=defaults["gradient"],
        help=f"training rule of the square layers, one of {', '.join(gradients)}; the "
        f"relative-gradient modes ({', '.join(relative)}) need no slogdet or inverse in a step; "
        "auto = relative_coords while D <= batch size, relative_pooled above",
    )
    cmd.add_argument(
        "--activation",
        metavar="NAME",
        choices=list(ACTIVATIONS),
        default=defaults["activation"],
        help=f"demixer activation, one of {', '.join(ACTIVATIONS)}; the learnable "
        "monotone_spline and monotone_mixture presuppose no mixing nonlinearity",
    )
    for flag, metavar, kind, text in _CONFIG_OPTIONS[3:]:
        _add_config_option(cmd, defaults, flag, metavar, kind, text)
    cmd.add_argument(
        "--warm-start",
        metavar="NAME",
        choices=["auto", *WARM_STARTS],
        default=defaults["warm_start"],
        help=f"how a deep demixer starts, one of auto, {', '.join(WARM_STARTS)}: linear fits the"
        " linear model first (with the restarts) and starts every depth from it, the further"
        " layers at the identity; progressive then grows each depth from the one below; auto ="
        f" {AUTO_WARM_START_RULE}",
    )


def _add_fit_parser(commands) -> None:
    """``nica fit``: every option named like a ``FitConfig`` field sets it (its default)."""
    cmd = commands.add_parser(
        "fit",
        help="fit a demixer to an .npz file",
        description=textwrap.fill(
            "Fits the conditional model (Eq. 4) when the file has u, else Eq. 3. Writes "
            "config.json, metrics.json, recovered.npz, checkpoint/, training_curve.png and, "
            "when the file has the true sources s, scatter.png.",
            width=80,
        ),
        formatter_class=HelpFormatter,
    )
    _add_data_and_out(cmd, "output folder (created; checked before the fit)")
    _add_fit_settings(cmd)
    listed = "; ".join(f"{name}: {method.description}" for name, method in METHODS.items())
    cmd.add_argument(
        "--method",
        choices=(NICA, *METHODS),
        default=NICA,
        help=f"{NICA}: this package's model, conditional with u (unless --unconditional), else "
        f"unconditional; or a method of nica.methods ({listed}); FastICA, iVAE and TCL run "
        "with their own defaults and --seed, and write no checkpoint",
    )
    for flag, text in (
        ("--unconditional", "ignore u: fit Eq. 3"),
        ("--force", "replace the outputs of an earlier fit in --out (refused without it)"),
        ("--quiet", "no progress bars, only a line at start and end (also without a terminal)"),
    ):
        cmd.add_argument(flag, action="store_true", help=text)
    cmd.set_defaults(handler=run_fit)


def _add_data_and_out(cmd, out_help: str) -> None:
    """``--data FILE`` (an .npz of x, u, s) and ``--out DIR``, both required."""
    cmd.add_argument(
        "--data", required=True, metavar="FILE", help=".npz with x (N,D), optional u and s"
    )
    cmd.add_argument("--out", required=True, metavar="DIR", help=out_help)


def _add_stability_parser(commands) -> None:
    """``nica stability``: ``nica fit``'s model options, several seeds instead of ``--seed``."""
    cmd = commands.add_parser(
        "stability",
        help="which components come back across seeds (no true sources needed)",
        description=textwrap.fill(
            "Fits nica's model with every seed (conditional when the file has u, else Eq. 3), "
            "matches each fit's components to those of the fit with the lowest validation NLL, "
            "and scores each component by the median matched |correlation|: near 1, it comes "
            f"back in every fit. Writes {', '.join(STABILITY_OUTPUTS)}; when the file has the "
            "true sources s, each fit's MCC against them too.",
            width=80,
        ),
        formatter_class=HelpFormatter,
    )
    _add_data_and_out(cmd, "output folder (created; checked first)")
    cmd.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        metavar="S",
        help="one fit per seed (at least 2, distinct), all in one vmapped program",
    )
    cmd.add_argument(
        "--bootstrap",
        action="store_true",
        help="each fit on its own resample of the rows (with replacement; drawn from its "
        "seed); the sources are compared on the file's x either way",
    )
    cmd.add_argument(
        "--correlation",
        choices=CORRELATIONS,
        default=CORRELATIONS[0],
        help="the correlation matched on; spearman (ranks) ignores monotone distortions",
    )
    _add_fit_settings(cmd, seed=False)
    for flag, text in (
        ("--unconditional", "ignore u: fit Eq. 3"),
        ("--force", "replace the outputs of an earlier stability run in --out"),
        ("--quiet", "no progress bars, only a line at start and end (also without a terminal)"),
    ):
        cmd.add_argument(flag, action="store_true", help=text)
    cmd.set_defaults(handler=run_stability)


def _add_run_parser(commands) -> None:
    """``nica run``: the shipped configs listed in the epilog."""
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
        formatter_class=HelpFormatter,
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
    cmd.set_defaults(handler=run_run)


def build_parser() -> argparse.ArgumentParser:
    """The ``nica`` parser; each command sets ``handler(args) -> exit status``."""
    cached = f"cached in {cache_dir()}" if cache_dir() else "not cached"
    parser = Parser(
        prog="nica",
        description="Exact maximum-likelihood nonlinear ICA.",
        epilog=f"Compiled programs are {cached} ({CACHE_ENV}=DIR moves the compilation cache, "
        f"{CACHE_ENV}={CACHE_OFF} turns it off).",
    )
    parser.add_argument("--version", action="version", version=f"nica {version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _add_fit_parser(commands)
    _add_stability_parser(commands)
    transform_cmd = commands.add_parser(
        "transform", help="demix new data with a checkpoint", formatter_class=HelpFormatter
    )
    transform_cmd.add_argument("--checkpoint", required=True, help="DIR/checkpoint of a fit")
    transform_cmd.add_argument("--data", required=True, help=".npz with x (N,D)")
    transform_cmd.add_argument("--out", required=True, help="output .npz file (key s_hat)")
    transform_cmd.set_defaults(handler=run_transform)
    _add_run_parser(commands)
    from nica.apps.density.cli import add_density_parser  # the density command's own module

    add_density_parser(commands, HelpFormatter)
    return parser
