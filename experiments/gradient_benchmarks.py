"""The conditional model on the shipped benchmarks with another gradient mode than the default.

Runs ``nica.apps.experiment`` configs with one change, ``FitConfig.gradient`` (default here:
``relative``, MATH.md's augmented relative gradient, against the package default
``relative_coords``), conditional model only, everything else as shipped: ``ivae``, ``icebeem``
(L = 2 and 4) and the ``dimension`` sweep at D = 10 and 20. Compare with the default reports in
``results/{ivae,icebeem,dimension}/``.

Command::

    .venv/bin/python experiments/gradient_benchmarks.py --gradient relative \
        --out results/gradient_benchmarks/relative

Writes one report directory per config under ``--out`` (resumable like ``nica run``).
``--smoke`` runs the ``ivae`` config's tiny version (for the tests).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file

from experiments.harness import COMPARED_GRADIENTS, experiment_parser
from nica.apps.experiment import EXPERIMENTS, run_experiment

BENCHMARKS = ("ivae", "icebeem", "dimension")


def configs(gradient: str) -> dict:
    """The benchmark configs with ``gradient``, conditional model only."""
    dimension = EXPERIMENTS["dimension"]
    out = {}
    for name in BENCHMARKS:
        base = EXPERIMENTS[name]
        settings = dimension.settings[1:3] if name == "dimension" else base.settings
        out[name] = dataclasses.replace(
            base,
            name=f"{name}_{gradient}",
            models=("conditional",),
            settings=settings,
            fit=base.fit + (("gradient", gradient),),
            description=f"{base.description} Conditional model, `gradient={gradient!r}`.",
            command=f"python experiments/gradient_benchmarks.py --gradient {gradient}",
        )
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Runs every chosen config (or the smoke one); returns the report rows per config."""
    parser = experiment_parser(__doc__, out=None)
    parser.add_argument("--gradient", choices=COMPARED_GRADIENTS, default="relative")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS)
    args = parser.parse_args(argv)
    out = args.out or Path("results/gradient_benchmarks") / args.gradient
    chosen = {k: v for k, v in configs(args.gradient).items() if not args.only or k in args.only}
    if args.smoke:
        chosen = {"ivae": configs(args.gradient)["ivae"].smoke()}
    return {name: run_experiment(cfg, out=out / name) for name, cfg in chosen.items()}


if __name__ == "__main__":
    main()
