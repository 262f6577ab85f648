"""`nica run`: every shipped config runs at smoke size; interrupted runs resume exactly; cells are
keyed by what determines them; processes sharing one output folder never fit a cell twice."""

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nica.apps.experiment as experiment
import nica.apps.experiment.cells as experiment_cells
import nica.apps.experiment.runner as runner
from nica.apps.cli import main

QUIET = open(os.devnull, "w")  # noqa: SIM115


def _mcc_table(rows):
    return [(r["setting"], r["model"], r["n"], r["mcc_pearson"], r["mcc_spearman"]) for r in rows]


def _fastica_config(seeds=(0, 1)):
    """A smoke config without JAX fits (FastICA only): the cell machinery in about a second."""
    config = experiment.EXPERIMENTS["demo"].smoke()
    return dataclasses.replace(config, models=("fastica",), seeds=seeds)


def _counting_fits(monkeypatch):
    """Replaces ``fit_cells`` (as the runner calls it) by a wrapper recording every seed it fits."""
    real_fit, fitted_seeds = runner.fit_cells, []

    def counting(*args, **kwargs):
        fitted_seeds.extend(args[3])
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(runner, "fit_cells", counting)
    return fitted_seeds


@pytest.mark.parametrize("name", sorted(experiment.EXPERIMENTS))
def test_every_config_runs_at_smoke_size(name, tmp_path):
    rows = experiment.run_experiment(name, out=tmp_path, smoke=True, log=QUIET)
    config = experiment.EXPERIMENTS[name].smoke()
    assert len(rows) == len(config.settings) * len(config.models)
    figures = experiment.FIGURES
    if not {"conditional", "unconditional"} & set(config.models):  # curves are of nica fits
        figures = tuple(f for f in figures if f != "training_curves.png")
    for name_ in ("report.md", "results.json", "results.csv", *figures):
        assert (tmp_path / name_).is_file(), name_
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert len(cells) == len(rows) * len(config.seeds)
    assert all(0 <= c["mcc_pearson"] <= 1 for c in cells if c["status"] == "ok")
    assert not list(tmp_path.rglob("*.claim")) and not list(tmp_path.rglob("*.tmp*"))
    for c in cells:  # the NLL gap to the true model is in every finished nica cell
        if c["status"] == "ok" and c["model"] in ("conditional", "unconditional"):
            assert c["nll_gap"] == pytest.approx(c["test_nll"] - c["true_nll"])
            assert c["train_gap"] == pytest.approx(c["train_nll"] - c["true_train_nll"])
            assert np.isfinite(c["nll_gap"]) and np.isfinite(c["train_gap"])
    report = (tmp_path / "report.md").read_text()
    assert "NLL gap (nats)" in report
    gapped = [c for c in cells if "nll_gap" in c]
    per_seed = [line for line in report.splitlines() if line.count("|") == 8]
    assert len(per_seed) == (len(gapped) + 2 if gapped else 0)  # header, rule, one per fit
    for c in gapped:
        assert f"| {c['seed']} | {c['mcc_pearson']:.3f} | {c['nll_gap']:.3f} " in report


def test_nll_gap_is_zero_for_the_true_model_and_positive_for_a_worse_one():
    """synthetic.truth.nll_gap (used by the harness and nica fit): a stand-in 'fit' whose
    likelihood is the truth's has gap 0 (conditional and marginal); a worse one has gap > 0."""
    from synthetic import make_preset
    from synthetic.truth import nll_gap, true_log_likelihood, true_marginal_log_likelihood

    data = make_preset("tiny", 3)

    class Truth:
        def __init__(self, blur=0.0):
            self.blur = blur

        def log_likelihood(self, x, u=None):
            ll = (
                true_log_likelihood(data, x, u)
                if u is not None
                else true_marginal_log_likelihood(data, x)
            )
            return ll - self.blur * (1 + np.abs(x).sum(1))

    for conditional in (True, False):
        exact = nll_gap(Truth(), data, seed=0, conditional=conditional)
        assert exact["nll_gap"] == pytest.approx(0.0, abs=1e-12)
        worse = nll_gap(Truth(0.1), data, seed=0, conditional=conditional)
        assert worse["nll_gap"] > 0.1
    conditional = nll_gap(Truth(), data, seed=0, conditional=True)
    marginal = nll_gap(Truth(), data, seed=0, conditional=False)
    assert conditional["true_nll"] < marginal["true_nll"]  # u carries information


def test_a_report_names_its_unfinished_cells(tmp_path):
    """A report written while cells are unfinished counts them per (setting, model) below the
    table; a complete one has no such line."""
    from nica.apps.experiment import report

    experiment.run_experiment("demo", out=tmp_path, smoke=True, log=QUIET)
    config = experiment.EXPERIMENTS["demo"].smoke()
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert "Unfinished cells" not in (tmp_path / "report.md").read_text()
    missing = [c for c in cells if c["model"] == "conditional"][:2]
    kept = [c for c in cells if c not in missing]
    names = [f"{c['setting']}__{c['model']}__seed{c['seed']}" for c in missing]
    rows = report.summary_rows(config, kept, names)
    text = report._report(config, rows, kept)
    assert "Unfinished cells, not in the table" in text
    assert f"{missing[0]['setting']} conditional: {len(missing)}." in text


def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch):
    reference = experiment.run_experiment("demo", out=tmp_path / "ref", smoke=True, log=QUIET)
    fitted_seeds = _counting_fits(monkeypatch)
    counting = runner.fit_cells

    def interrupted(*args, **kwargs):
        if len(fitted_seeds) == 2:
            raise KeyboardInterrupt
        return counting(*args, **kwargs)

    monkeypatch.setattr(runner, "fit_cells", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=QUIET)
    assert len(list((tmp_path / "run" / "cells").glob("*.json"))) == 2
    assert not list((tmp_path / "run" / "cells").glob("*.claim"))  # released on the way out

    fitted_seeds.clear()
    monkeypatch.setattr(runner, "fit_cells", counting)
    starts = []
    resumed = experiment.run_experiment(
        "demo", out=tmp_path / "run", smoke=True, log=QUIET, on_cell=lambda *a: starts.append(a)
    )
    total = len(reference)  # one smoke seed per (setting, model)
    assert len(fitted_seeds) == total - 2  # finished cells are not recomputed
    assert starts[0] == (2, total, "") and starts[-1][:2] == (total, total)
    assert _mcc_table(resumed) == _mcc_table(reference)  # same numbers as an uninterrupted run

    fitted_seeds.clear()
    experiment.run_experiment("demo", out=tmp_path / "run", smoke=True, log=QUIET, force=True)
    assert len(fitted_seeds) == total


def test_cells_of_another_config_are_refused_never_mixed(tmp_path, monkeypatch, capsys):
    """Issue 14 item 1: `nica run demo --smoke --out X` then `nica run demo --out X`."""
    assert main(["run", "demo", "--smoke", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    smoke_report = (tmp_path / "report.md").read_text()

    def no_fit(*args, **kwargs):
        raise AssertionError("a full-size fit started on top of smoke cells")

    monkeypatch.setattr(runner, "fit_cells", no_fit)
    assert main(["run", "demo", "--out", str(tmp_path)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--force" in errors[0]  # one line, no traceback
    err = errors[0]
    assert str(tmp_path / "cells" / "demo__conditional__seed0.json") in err
    assert (tmp_path / "report.md").read_text() == smoke_report  # nothing was overwritten

    # Another config on the same folder, forced: every cell is recomputed under its new key.
    monkeypatch.undo()
    config = experiment.EXPERIMENTS["demo"].smoke()
    config = dataclasses.replace(config, fit=(*config.fit, ("epochs", 3)))
    events = []
    experiment.run_experiment(config, out=tmp_path, force=True, log=QUIET, progress=events.append)
    assert events  # progress reached nica.fit_seeds
    cells = json.loads((tmp_path / "results.json").read_text())["cells"]
    setting = config.settings[0]
    expected = {m: experiment.cell_key(config, setting, m, 0) for m in config.models}
    assert {c["model"]: c["key"] for c in cells} == expected
    assert [c["history"]["epoch"][-1] for c in cells if c["model"] != "fastica"] == [3, 3]


def test_cell_key_covers_everything_that_determines_a_cell(monkeypatch):
    config = experiment.EXPERIMENTS["demo"].smoke()
    setting = config.settings[0]
    base = experiment.cell_key(config, setting, "conditional", 0)
    assert len(base) == 16 and int(base, 16) >= 0
    relabelled = dataclasses.replace(setting, label="renamed")
    assert experiment.cell_key(config, relabelled, "conditional", 0) == base
    changed = [
        (dataclasses.replace(config, fit=(*config.fit, ("depth", 3))), setting, "conditional", 0),
        (config, setting, "unconditional", 0),
        (config, setting, "conditional", 1),
        (config, dataclasses.replace(setting, preset="icebeem-l2"), "conditional", 0),
        (config, dataclasses.replace(setting, overrides=(("n_sources", 3),)), "conditional", 0),
    ]
    keys = {experiment.cell_key(*args) for args in changed}
    assert base not in keys and len(keys) == len(changed)
    monkeypatch.setattr(experiment_cells, "RESULT_FORMAT", experiment_cells.RESULT_FORMAT + 1)
    assert experiment.cell_key(config, setting, "conditional", 0) != base


@pytest.mark.parametrize("content", ["", "{not json", '["a list"]'])
def test_corrupt_cell_file_is_a_one_line_error_naming_it(tmp_path, content):
    config = _fastica_config()
    experiment.run_experiment(config, out=tmp_path, log=QUIET)
    broken = tmp_path / "cells" / "demo__fastica__seed1.json"
    broken.write_text(content)
    with pytest.raises(ValueError) as info:
        experiment.run_experiment(config, out=tmp_path, log=QUIET)
    message = str(info.value)
    assert message.startswith(f"{broken}: ") and "--force" in message and "\n" not in message
    experiment.run_experiment(config, out=tmp_path, log=QUIET, force=True)
    assert json.loads(broken.read_text())["status"] == "ok"


def test_cell_claimed_by_a_live_process_is_left_to_it(tmp_path):
    config = _fastica_config()
    cells = tmp_path / "cells"
    cells.mkdir(parents=True)
    claim = cells / "demo__fastica__seed1.claim"
    claim.write_text("another host pid 1\n")
    (tmp_path / "training_curves.png").write_bytes(b"from an older run")
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        rows = experiment.run_experiment(config, out=tmp_path, log=f)
    assert (rows[0]["n"], rows[0]["pending"]) == (1, 1)
    assert (
        "demo__fastica__seed1" in log.read_text() and "still running elsewhere" in log.read_text()
    )
    assert (
        not (tmp_path / "report.md").exists() and not (cells / "demo__fastica__seed1.json").exists()
    )
    assert claim.read_text() == "another host pid 1\n"  # someone else's claim is not touched

    old = time.time() - 10.0
    os.utime(claim, (old, old))  # its owner died: the claim goes stale
    rows = experiment.run_experiment(config, out=tmp_path, log=QUIET, claim_timeout=5.0)
    assert (rows[0]["n"], rows[0]["pending"]) == (1 + 1, 0)
    assert (tmp_path / "report.md").is_file() and not claim.exists()
    assert not (tmp_path / "training_curves.png").exists()  # no stale figure beside the report


def test_cells_another_process_finishes_meanwhile_complete_the_report(tmp_path):
    """Two processes that split a group's cells: the last to finish writes the report."""
    config = _fastica_config()
    other = tmp_path / "other"  # what the other process writes for its cell, seed 1
    experiment.run_experiment(config, out=other, seeds=[1], log=QUIET)
    out, name = tmp_path / "out", "demo__fastica__seed1"
    (out / "cells").mkdir(parents=True)
    claim = out / "cells" / f"{name}.claim"
    claim.write_text("another host pid 1\n")

    def other_process_finishes(done, total, label):
        if label:  # this process has written seed 0; the other one now writes seed 1
            (out / "cells" / f"{name}.json").write_bytes(
                (other / "cells" / f"{name}.json").read_bytes()
            )
            claim.unlink()

    rows = experiment.run_experiment(config, out=out, log=QUIET, on_cell=other_process_finishes)
    assert (rows[0]["n"], rows[0]["pending"]) == (2, 0)
    assert (out / "report.md").is_file()
    records = json.loads((out / "results.json").read_text())["cells"]
    assert [r["seed"] for r in records] == [0, 1]


def test_two_processes_on_one_folder_fit_each_cell_once(tmp_path):
    """The README's multi-host recipe, on one machine: two runs at once on one --out."""
    script = (
        "import dataclasses, sys; import nica.apps.experiment as e\n"
        "c = dataclasses.replace(e.EXPERIMENTS['demo'].smoke(), models=('fastica',),"
        " seeds=tuple(range(8)))\n"
        f"e.run_experiment(c, out={str(tmp_path)!r}, log=sys.stdout)\n"
    )
    root = Path(__file__).resolve().parents[1]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    logs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], logs
    fitted = [
        line.split()[3].rstrip(":") for log in logs for line in log.splitlines() if "s/fit" in line
    ]
    assert sorted(fitted, key=int) == [str(s) for s in range(8)]  # each seed fitted exactly once
    records = json.loads((tmp_path / "results.json").read_text())["cells"]
    assert [r["seed"] for r in records] == list(range(8))
    assert not list(tmp_path.rglob("*.claim"))


def test_default_output_is_git_ignored_and_report_names_the_committed_command():
    assert experiment.default_out("demo") == Path("runs/demo")
    assert experiment.default_out("demo", smoke=True) == Path("runs/demo-smoke")
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("runs/demo/report.md", "runs/demo-smoke/mcc.png"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=root)
        assert ignored.returncode == 0, path
    assert experiment.EXPERIMENTS["demo"].reproduce == "nica run demo --out results/demo"


def test_vmapped_seeds_match_sequential_fits_cell_by_cell(tmp_path):
    config = dataclasses.replace(experiment.EXPERIMENTS["demo"].smoke(), seeds=(0, 1))
    config = dataclasses.replace(config, models=("conditional",))
    experiment.run_experiment(config, out=tmp_path / "vmap", log=QUIET)
    experiment.run_experiment(config, out=tmp_path / "seq", log=QUIET, vmap=False)
    cells = {
        mode: {
            (c["model"], c["seed"]): c
            for c in json.loads((tmp_path / mode / "results.json").read_text())["cells"]
        }
        for mode in ("vmap", "seq")
    }
    assert cells["vmap"].keys() == cells["seq"].keys() and len(cells["seq"]) == 2
    for key, seq in cells["seq"].items():
        vmapped = cells["vmap"][key]
        assert vmapped["fitted_together"] == 2 and seq["fitted_together"] == 1
        for name in ("val_nll", "mcc_pearson", "mcc_spearman"):
            assert vmapped[name] == pytest.approx(seq[name], rel=1e-4, abs=1e-5), (key, name)


def test_unknown_experiment_is_a_clear_cli_error(capsys):
    assert main(["run", "nonesuch"]) == 2
    assert "unknown experiment 'nonesuch'" in capsys.readouterr().err


def test_seed_shares_run_separately_then_assemble(tmp_path, monkeypatch):
    """The multi-host recipe: each host runs its share of the seeds, then one run reports all."""
    config = dataclasses.replace(experiment.EXPERIMENTS["demo"].smoke(), seeds=(0, 1))
    config = dataclasses.replace(config, models=("conditional",))
    for share in ([0], [1]):
        rows = experiment.run_experiment(config, out=tmp_path, seeds=share, log=QUIET)
        assert rows[0]["n"] == 1
    fitted_seeds = _counting_fits(monkeypatch)
    rows = experiment.run_experiment(config, out=tmp_path, log=QUIET)
    assert fitted_seeds == [] and rows[0]["n"] == 2
    with pytest.raises(ValueError, match="seeds must be non-negative integers"):
        experiment.run_experiment(config, out=tmp_path, seeds=[-1], log=QUIET)


def test_tcl_and_continuous_configs_and_their_smoke_data():
    """`nica run tcl` (TCL's simulation, the published D=20 L=5 among its settings) and `nica
    run continuous` (u = t): their settings make data, and the continuous smoke is sized by
    n_samples (its data have no segments)."""
    from synthetic import make_preset

    tcl, continuous = experiment.EXPERIMENTS["tcl"], experiment.EXPERIMENTS["continuous"]
    assert [s.label for s in tcl.settings] == ["D=5 L=5", "D=20 L=5", "D=20 L=3"]
    assert {s.preset for s in tcl.settings} == {"tcl"}
    assert [dict(s.overrides) for s in tcl.settings][1] == {"n_sources": 20, "n_layers": 5}
    assert [s.label for s in continuous.settings] == ["D=10", "D=20"]
    expected = [{"n_sources": 10, "n_samples": 40_000}, {"n_sources": 20, "n_samples": 80_000}]
    assert [dict(s.overrides) for s in continuous.settings] == expected
    for config in (tcl, continuous):
        assert config.models == ("conditional", "fastica") and config.seeds == (0, 1, 2)
        assert config.reproduce == f"nica run {config.name} --out results/{config.name}"
    for setting in continuous.smoke().settings:
        assert dict(setting.overrides) == {"n_sources": 2, "n_samples": 240}
        data = make_preset(setting.preset, 0, **dict(setting.overrides))
        assert data.x.shape == (240, 2) and data.u.shape == (240, 1)
    for setting in tcl.smoke().settings:
        assert make_preset(setting.preset, 0, **dict(setting.overrides)).x.shape == (240, 2)


def test_an_unconditional_fit_of_continuous_data_records_no_nll_gap():
    """The true marginal over a continuous u is not known: the cell of an unconditional fit
    gets no gap (and no error); a conditional fit gets the exact one."""
    from types import SimpleNamespace

    import nica.apps.experiment.fitting as fitting
    from nica.methods import get_method
    from synthetic import make_preset
    from synthetic.truth import true_log_likelihood

    data = make_preset("continuous", 0, n_sources=2, n_samples=200, n_threshold_draws=500)

    class Truth:
        def log_likelihood(self, x, u=None):
            return true_log_likelihood(data, x, u)

    fit = SimpleNamespace(diverged=None, model=Truth())
    unconditional, conditional = get_method("unconditional"), get_method("conditional")
    assert fitting._truth_gap(unconditional, fit, data, 0) == {}
    gap = fitting._truth_gap(conditional, fit, data, 0)
    assert gap["nll_gap"] == pytest.approx(0.0, abs=1e-12) and np.isfinite(gap["true_nll"])


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


def test_relative_gradient_configs_change_only_the_gradient_of_the_conditional_model():
    """``nica run ivae-relative`` etc.: the benchmarks' conditional model in the ``relative``
    mode, everything else as the default-mode configs."""
    for name in ("ivae", "icebeem", "dimension"):
        base, config = experiment.EXPERIMENTS[name], experiment.EXPERIMENTS[f"{name}-relative"]
        assert config.models == ("conditional",) and dict(config.fit)["gradient"] == "relative"
        assert config.fit[:-1] == base.fit and config.seeds == base.seeds
        settings = base.settings[1:3] if name == "dimension" else base.settings
        assert config.settings == settings
        assert config.reproduce.endswith(f"--out results/gradient_benchmarks/relative/{name}")
