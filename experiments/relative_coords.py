"""The conditional model on the shipped benchmarks with ``gradient="relative_coords"``.

Runs ``nica.experiment`` configs with one change, the optimizer in relative coordinates
(``nica.relative.in_relative_coordinates``), conditional model only, everything else as
shipped: ``ivae``, ``icebeem`` (L = 2 and 4) and the ``dimension`` sweep at D = 10 and 20.
Compare with the default reports in ``results/{ivae,icebeem,dimension}/``.

Command::

    .venv/bin/python experiments/relative_coords.py --out results/relative_coords

Writes one report directory per config under ``--out`` (resumable like ``nica run``).
``--smoke`` runs the ``ivae`` config's tiny version (for the tests).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from nica.experiment import EXPERIMENTS, run_experiment

OVERRIDE = (("gradient", "relative_coords"),)


def configs() -> dict:
    """The benchmark configs with the override, conditional model only."""
    dimension = EXPERIMENTS["dimension"]
    out = {}
    for name in ("ivae", "icebeem", "dimension"):
        base = EXPERIMENTS[name]
        settings = dimension.settings[1:3] if name == "dimension" else base.settings
        out[name] = dataclasses.replace(
            base,
            name=f"{name}_relative_coords",
            models=("conditional",),
            settings=settings,
            fit=base.fit + OVERRIDE,
        )
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Runs every config (or the smoke one); returns the report rows per config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=("ivae", "icebeem", "dimension"))
    parser.add_argument("--out", type=Path, default=Path("results/relative_coords"))
    parser.add_argument("--smoke", action="store_true", help="tiny ivae config")
    args = parser.parse_args(argv)
    chosen = {k: v for k, v in configs().items() if not args.only or k in args.only}
    if args.smoke:
        chosen = {"ivae": chosen.get("ivae", configs()["ivae"]).smoke()}
    return {name: run_experiment(cfg, out=args.out / name) for name, cfg in chosen.items()}


if __name__ == "__main__":
    main()
