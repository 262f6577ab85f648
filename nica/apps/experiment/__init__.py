"""Identifiability experiments: data from ``synthetic``, several methods and seeds, a report.

``nica run [CONFIG]`` calls :func:`run_experiment`. Configs are code, in :data:`EXPERIMENTS`
(:mod:`.configs`). A user's run writes to the git-ignored ``runs/<name>`` (:func:`default_out`);
the committed reports are regenerated explicitly with ``nica run <name> --out results/<name>``.

The modules, one job each: :mod:`.design` (what a config is), :mod:`.configs` (the shipped
ones), :mod:`.cells` (a cell's identity and record), :mod:`.fitting` (fitting cells through
``nica.methods``), :mod:`.runner` (claims, running, resuming), :mod:`.report` (report.md,
tables, figures).
"""

from __future__ import annotations

from nica.apps.experiment.cells import RESULT_FORMAT, cell_key, cell_recipe
from nica.apps.experiment.configs import BENCHMARK_MODELS, EXPERIMENTS
from nica.apps.experiment.design import DEFAULT_MODELS, ExperimentConfig, Setting, default_out
from nica.apps.experiment.report import FIGURES, RECOVERED_MCC, recovery_verdicts
from nica.apps.experiment.runner import CLAIM_TIMEOUT_S, run_experiment

__all__ = [
    "BENCHMARK_MODELS",
    "CLAIM_TIMEOUT_S",
    "DEFAULT_MODELS",
    "EXPERIMENTS",
    "FIGURES",
    "RECOVERED_MCC",
    "RESULT_FORMAT",
    "ExperimentConfig",
    "Setting",
    "cell_key",
    "cell_recipe",
    "default_out",
    "recovery_verdicts",
    "run_experiment",
]
