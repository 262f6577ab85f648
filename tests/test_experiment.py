"""`nica run`: every shipped config runs at smoke size; interrupted runs resume exactly."""

import json

import pytest

import nica.experiment as experiment
from nica.cli import main


def _mcc_table(rows):
    return [(r["setting"], r["model"], r["n"], r["mcc_pearson"], r["mcc_spearman"]) for r in rows]


@pytest.mark.parametrize("name", sorted(experiment.EXPERIMENTS))
def test_every_config_runs_at_smoke_size(name, tmp_path):
    rows = experiment.run_experiment(name, out=tmp_path, smoke=True, log=open("/dev/null", "w"))
    config = experiment.EXPERIMENTS[name].smoke()
    assert len(rows) == len(config.settings) * len(config.models)
    for name_ in ("report.md", "results.json", "results.csv", "mcc.png", "scatter.png"):
        assert (tmp_path / name_).is_file(), name_
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert len(cells) == len(rows) * len(config.seeds)
    assert all(0 <= c["mcc_pearson"] <= 1 for c in cells if c["status"] == "ok")


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch):
    quiet = open("/dev/null", "w")
    reference = experiment.run_experiment("demo", out=tmp_path / "ref", smoke=True, log=quiet)
    real_fit, calls = experiment._fit_cell, []

    def interrupted(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args)
        return real_fit(*args)

    monkeypatch.setattr(experiment, "_fit_cell", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=quiet)
    assert len(list((tmp_path / "run" / "cells").glob("*.json"))) == 2

    calls.clear()
    monkeypatch.setattr(experiment, "_fit_cell", lambda *a: calls.append(a) or real_fit(*a))
    resumed = experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=quiet)
    total = len(reference)  # one smoke seed per (setting, model)
    assert len(calls) == total - 2  # finished cells are not recomputed
    assert _mcc_table(resumed) == _mcc_table(reference)  # same numbers as an uninterrupted run

    calls.clear()
    experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=quiet, force=True)
    assert len(calls) == total


def test_unknown_experiment_is_a_clear_cli_error(capsys):
    assert main(["run", "nonesuch"]) == 2
    assert "unknown experiment 'nonesuch'" in capsys.readouterr().err
