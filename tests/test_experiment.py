"""`nica run`: every shipped config runs at smoke size; interrupted runs resume exactly."""

import dataclasses
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
    real_fit, fitted_seeds = experiment._fit_cells, []

    def counting(*args):
        fitted_seeds.extend(args[3])
        return real_fit(*args)

    def interrupted(*args):
        if len(fitted_seeds) == 2:
            raise KeyboardInterrupt
        return counting(*args)

    monkeypatch.setattr(experiment, "_fit_cells", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=quiet)
    assert len(list((tmp_path / "run" / "cells").glob("*.json"))) == 2

    fitted_seeds.clear()
    monkeypatch.setattr(experiment, "_fit_cells", counting)
    resumed = experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=quiet)
    total = len(reference)  # one smoke seed per (setting, model)
    assert len(fitted_seeds) == total - 2  # finished cells are not recomputed
    assert _mcc_table(resumed) == _mcc_table(reference)  # same numbers as an uninterrupted run

    fitted_seeds.clear()
    experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=quiet, force=True)
    assert len(fitted_seeds) == total


def test_vmapped_seeds_match_sequential_fits_cell_by_cell(tmp_path):
    config = dataclasses.replace(experiment.EXPERIMENTS["demo"].smoke(), seeds=(0, 1, 2))
    config = dataclasses.replace(config, models=("conditional", "unconditional"))
    quiet = open("/dev/null", "w")
    experiment.run_experiment(config, out=tmp_path / "vmap", log=quiet)
    experiment.run_experiment(config, out=tmp_path / "seq", log=quiet, vmap=False)
    cells = {
        mode: {
            (c["model"], c["seed"]): c
            for c in json.loads((tmp_path / mode / "results.json").read_text())["cells"]
        }
        for mode in ("vmap", "seq")
    }
    assert cells["vmap"].keys() == cells["seq"].keys() and len(cells["seq"]) == 6
    for key, seq in cells["seq"].items():
        vmapped = cells["vmap"][key]
        assert vmapped["fitted_together"] == 3 and seq["fitted_together"] == 1
        for name in ("val_nll", "mcc_pearson", "mcc_spearman"):
            assert vmapped[name] == pytest.approx(seq[name], rel=1e-4, abs=1e-5), (key, name)


def test_unknown_experiment_is_a_clear_cli_error(capsys):
    assert main(["run", "nonesuch"]) == 2
    assert "unknown experiment 'nonesuch'" in capsys.readouterr().err


def test_seed_shares_run_separately_then_assemble(tmp_path, monkeypatch):
    """The multi-host recipe: each host runs its share of the seeds, then one run reports all."""
    quiet = open("/dev/null", "w")
    config = dataclasses.replace(experiment.EXPERIMENTS["demo"].smoke(), seeds=(0, 1))
    config = dataclasses.replace(config, models=("conditional",))
    for share in ([0], [1]):
        rows = experiment.run_experiment(config, out=tmp_path, seeds=share, log=quiet)
        assert rows[0]["n"] == 1
    real_fit, fitted_seeds = experiment._fit_cells, []
    monkeypatch.setattr(
        experiment, "_fit_cells", lambda *a: fitted_seeds.extend(a[3]) or real_fit(*a)
    )
    rows = experiment.run_experiment(config, out=tmp_path, log=quiet)
    assert fitted_seeds == [] and rows[0]["n"] == 2
    with pytest.raises(ValueError, match="seeds must be non-negative integers"):
        experiment.run_experiment(config, out=tmp_path, seeds=[-1], log=quiet)


def test_recovery_verdicts_name_the_models_on_each_side():
    def row(setting, model, median):
        return {"setting": setting, "model": model, "mcc_pearson": (median, 0.0, median)}

    rows = [row("a", "conditional", 0.97), row("a", "fastica", 0.6), row("b", "conditional", 0.9)]
    rows.append(row("c", "conditional", experiment.RECOVERED_MCC))
    assert experiment.recovery_verdicts(rows) == [
        "- a: recovered by conditional; not by fastica.",
        "- b: recovered by no model.",
        "- c: recovered by conditional.",
    ]
