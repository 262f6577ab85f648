"""The ``nica`` command: thin parsing, checks and file writing around the public API.

    nica fit --data FILE.npz --out DIR [--seed N] [--epochs E] [--depth L] [--prior NAME]
             [--gradient MODE] [--restarts K] [--batch-size B] [--learning-rate LR]
             [--unconditional] [--method nica|conditional|unconditional|fastica|ivae|tcl]
             [--force] [--quiet]
    nica stability --data FILE.npz --out DIR [--seeds S ...] [--bootstrap]
             [--correlation pearson|spearman] [nica fit's model options] [--force] [--quiet]
    nica transform --checkpoint DIR --data FILE.npz --out FILE.npz
    nica run [CONFIG] [--out DIR] [--force] [--smoke] [--seeds S ...] [--sequential] [--quiet]
    nica density --data FILE.npz --out DIR [--logit LOW HIGH] [--dequantise] ...
    nica --version

Every default is ``nica.FitConfig``'s. Progress bars (``nica.util.progress``) go to stderr on a
terminal; ``nica run`` prints its report on stdout. Bad input ends with exit status 2 and one
line on stderr, ``nica: error: ...``; a diverged fit with status 3; Ctrl-C with status 130 and
one line saying what was kept.

Modules: :mod:`.parser` (the options), :mod:`.fit`, :mod:`.stability`, :mod:`.run`,
:mod:`.transform` (one command each), :mod:`.outputs` (what ``nica fit`` writes),
:mod:`.console` (messages and exit lines).
"""

from __future__ import annotations

import warnings

import nica
from nica.apps.cli.console import Interrupted, status, version
from nica.apps.cli.outputs import FIT_OUTPUTS, NLL_UNITS
from nica.apps.cli.parser import build_parser

__all__ = ["FIT_OUTPUTS", "NLL_UNITS", "build_parser", "main", "version"]


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command: one line, ``nica: warning: ...``."""
    status(f"nica: warning: {message}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``nica`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_line  # restored on exit
        return _handle(args)


def _handle(args) -> int:
    try:
        return args.handler(args)
    except Interrupted as err:
        status(f"nica: interrupted: {err}")
        return 130
    except KeyboardInterrupt:
        status("nica: interrupted")
        return 130
    except nica.TrainingDivergedError as err:
        status(f"nica: error: {err}")
        return 3
    except (ValueError, OSError) as err:
        status(f"nica: error: {err}")
        return 2
