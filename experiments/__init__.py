"""Experiment scripts for nica: each runs as a module from the repository root
(``python -m experiments.NAME --out results/NAME``), writes ``report.md`` and ``results.json``
there as ``nica run`` does, and is importable for tests (``from experiments import NAME``)."""
