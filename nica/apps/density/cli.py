"""``nica density``: fit a density to a tabular ``.npz`` and report its test log-likelihood.

    nica density --data FILE.npz --out DIR [--logit LOW HIGH] [--dequantise] [--alpha A]
                 [--copies K] [--test-fraction F] [--image-shape H W] [--conditional]
                 [--seed N] [--epochs E] [--depth L] [--prior NAME] [--gradient MODE]
                 [--force] [--quiet]

Without ``--depth`` the demixer's depth is chosen on the validation rows among
``nica.apps.density.DENSITY_CANDIDATES``. Prints every test log-likelihood with its model, what it
is (``log p(x | u)`` or ``log p(x)``), its unit and direction, and one line per comparison
with the Gaussian baseline saying whether nica beats it or loses to it. Writes
``config.json``, ``metrics.json`` (the same numbers, labelled, with ``units``,
``comparisons``, ``nica_loses_to_gaussian`` and ``selection``), ``report.md``,
``samples.png`` (data next to samples drawn through the exact inverse; an image grid with
``--image-shape``), ``training_curve.png`` (every candidate's) and ``checkpoint/``. The
parsing lives here (the files are written by :mod:`nica.apps.density.outputs`);
:mod:`nica.apps.cli` only hooks it in.
"""

from __future__ import annotations

import time
from pathlib import Path

from nica.apps.density.fitting import DENSITY_PRESET
from nica.apps.density.outputs import DENSITY_OUTPUTS, write_outputs
from nica.apps.density.pipeline import fit_density
from nica.apps.density.preprocessing import Preprocessing, resolve_copies
from nica.apps.density.selection import DENSITY_CANDIDATES
from nica.fitting.data import load_observations
from nica.util.progress import fit_progress, progress_enabled

__all__ = ["DENSITY_OUTPUTS", "add_density_parser", "run_density"]


def add_density_parser(commands, formatter_class) -> None:
    """Adds the ``density`` subcommand to ``commands`` (an argparse subparsers object)."""
    defaults = DENSITY_PRESET.replace(conditional=False)
    depths = ", ".join(c.name for c in DENSITY_CANDIDATES)
    cmd = commands.add_parser(
        "density",
        help="fit a density to an .npz file (test log-likelihood, samples)",
        description="Splits x into train/validation/test, fits a nica density (a Gaussian "
        "base through the demixer, conditional on the labels u with --conditional) and "
        "reports the exact test log-likelihood in the data's units, counting the "
        "preprocessing's log-Jacobian, next to a full-covariance Gaussian's on the same split.",
        formatter_class=formatter_class,
    )
    cmd.add_argument("--data", required=True, metavar="FILE", help=".npz with x (N, D)")
    cmd.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cmd.add_argument(
        "--logit",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=None,
        help="data bounded in [LOW, HIGH]: model logit((x - LOW) / width) (default: x as is)",
    )
    cmd.add_argument(
        "--dequantise",
        action="store_true",
        help="integer data: add U(0, 1) noise first (needs --logit with integer bounds)",
    )
    cmd.add_argument("--alpha", type=float, default=Preprocessing().alpha, help="logit shrink")
    cmd.add_argument(
        "--copies",
        type=int,
        default=None,
        metavar="K",
        help="noise draws per training row (default: 8 with --dequantise, else 1)",
    )
    for flag, default, text in (
        ("--test-fraction", 0.2, "share of rows held out for the test log-likelihood"),
        ("--validation-fraction", 0.1, "share of rows held out for early stopping and depth"),
    ):
        cmd.add_argument(flag, type=float, default=default, metavar="F", help=text)
    cmd.add_argument(
        "--image-shape", nargs=2, type=int, metavar=("H", "W"), help="show rows as H x W images"
    )
    cmd.add_argument(
        "--conditional", action="store_true", help="condition on the labels u of the file"
    )
    cmd.add_argument("--seed", type=int, default=0, metavar="N", help="split, noise, fit")
    cmd.add_argument("--epochs", type=int, default=defaults.loop.epochs, metavar="E")
    cmd.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="L",
        help=f"demixer layers (default: chosen on the validation rows among {depths})",
    )
    cmd.add_argument(
        "--prior", default=defaults.model.prior.family, metavar="NAME", help="base density"
    )
    cmd.add_argument("--gradient", default=defaults.optimizer.gradient, metavar="MODE")
    cmd.add_argument(
        "--learning-rate", type=float, default=defaults.optimizer.learning_rate, metavar="LR"
    )
    cmd.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    cmd.add_argument("--quiet", action="store_true", help="no progress bars")
    cmd.set_defaults(handler=run_density)


def _preprocessing(args) -> Preprocessing:
    if args.logit is None:
        if args.dequantise:
            raise ValueError("--dequantise needs --logit LOW HIGH (the data's integer bounds)")
        return Preprocessing()
    low, high = args.logit
    return Preprocessing(
        logit=True, low=low, high=high, dequantise=args.dequantise, alpha=args.alpha
    ).validate()


def _prepare_out(out: Path, force: bool) -> None:
    earlier = [name for name in DENSITY_OUTPUTS if (out / name).exists()]
    if earlier and not force:
        raise ValueError(
            f"--out {out} holds an earlier run ({', '.join(earlier)}); pass --force to replace it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write there ({err.strerror or err})") from None


def run_density(args) -> int:
    """The ``nica density`` handler: fit, evaluate, write; returns the exit status."""
    data = load_observations(args.data)
    if args.conditional and data.u is None:
        raise ValueError(f"{args.data}: --conditional needs labels u in the file")
    if args.image_shape and args.image_shape[0] * args.image_shape[1] != data.x.shape[1]:
        raise ValueError(
            f"--image-shape {args.image_shape} does not hold {data.x.shape[1]} columns"
        )
    preprocessing = _preprocessing(args)
    copies = resolve_copies(args.copies, preprocessing)
    out = Path(args.out)
    _prepare_out(out, args.force)
    u = data.u if args.conditional else None
    names = ("epochs", "depth", "prior", "gradient", "learning_rate")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    start = time.perf_counter()
    with fit_progress(progress_enabled(args.quiet)) as progress:
        result = fit_density(
            data.x,
            u,
            preprocessing=preprocessing,
            seed=args.seed,
            test_fraction=args.test_fraction,
            validation_fraction=args.validation_fraction,
            copies=copies,
            progress=progress,
            where=str(args.data),
            **overrides,
        )
    wall = time.perf_counter() - start
    write_outputs(out, args, result, data.x, copies, wall)
    return 0
