"""Smoke runs of the experiment scripts into tmp_path, and their shared helper."""

import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

import nica
import nica.fitting.data
from experiments import gradient_cost_methods, gradient_cost_report, harness
from experiments.dynamics_problem import make_problem
from nica.core.gradients import DEFAULT_GRADIENT
from nica.util.provenance import describe, environment

#: Every registered gradient mode but autodiff (the experiments' comparison set).
COMPARED = tuple(name for name in nica.GRADIENTS if name != "autodiff")
#: What every script writes into its out folder (besides its figures), as ``nica run`` does.
REPORT = ["report.md", "results.json"]


def _main(name: str):
    return importlib.import_module(f"experiments.{name}").main


def _files(folder: Path) -> list[str]:
    """The names in ``folder``: the outputs only, no temporary file left behind."""
    return sorted(p.name for p in folder.iterdir())


def _table_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def _tables(path: Path) -> list[list[list[str]]]:
    """Every Markdown table of ``path``: its rows (header included) as lists of cells."""
    tables, current = [], None
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            current = current or []
            current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = None
    return tables + ([current] if current else [])


def test_gradient_cost_smoke(tmp_path):
    _main("gradient_cost")(["--smoke", "--out", str(tmp_path)])
    records = json.loads((tmp_path / "results.json").read_text())
    methods = gradient_cost_methods.METHODS
    assert {"relative", "backprop", "step:default", "step:backprop"} <= set(methods)
    assert {f"step:{name}" for name in nica.GRADIENTS} <= set(methods)
    assert [(r["dim"], r["method"]) for r in records] == [(d, m) for d in (8, 16) for m in methods]
    autodiff = ("autodiff", "step:autodiff")
    for r in records:
        assert (r["batch"], r["depth"]) == (100, 2)
        if r["dim"] == 16 and r["method"] in autodiff:  # the smoke's --autodiff-max-dim is 8
            assert r["median_s"] is None and "autodiff-max-dim=8" in r["skipped_reason"]
            continue
        assert r["repeats"] >= 3 and math.isfinite(r["median_s"]) and r["median_s"] > 0
    # step:default is the default mode's step, by name.
    for dim in (8, 16):
        by = {r["method"]: r for r in records if r["dim"] == dim}
        mode = nica.resolve_gradient(DEFAULT_GRADIENT, dim, 100).name
        assert by["step:default"]["mode"] == mode == "relative_coords"  # D <= B
        assert by["step:default"]["median_s"] == by[f"step:{mode}"]["median_s"]
    grad, steps, ratios, slopes = _tables(tmp_path / "report.md")
    assert [row[0] for row in grad[2:]] == [row[0] for row in steps[2:]] == ["8", "16"]
    assert grad[3][3] == steps[3][steps[0].index("step:autodiff")] == "skipped"
    assert all(float(cell) > 0 for row in ratios[2:] for cell in row[1:])
    # Slopes fitted over both smoke dimensions, one per row timed at both.
    assert {row[0] for row in slopes[2:]} == set(methods) - set(autodiff)
    assert all(row[2] == "8..16" and math.isfinite(float(row[1])) for row in slopes[2:])
    assert (tmp_path / "gradient_cost.png").stat().st_size > 0
    assert _files(tmp_path) == ["gradient_cost.png", *REPORT]


def test_gradient_cost_slopes_and_skips():
    records = [
        {"dim": d, "method": "step:backprop", "median_s": 1e-9 * d**2} for d in (256, 512, 1024)
    ]
    slopes = gradient_cost_report.fitted_slopes(records, 512)
    assert slopes["step:backprop"]["dims"] == [512, 1024]
    assert slopes["step:backprop"]["slope"] == pytest.approx(2.0)
    slow_rows = gradient_cost_methods.slow_rows
    assert slow_rows(2048, 2048, 100) == (set(), None)
    slow, reason = slow_rows(4096, 2048, 100)
    assert gradient_cost_methods.default_mode(4096, 100) == "relative_pooled"
    expected = {"ordinary"} | {
        f"step:{name}" for name, mode in nica.GRADIENTS.items() if not mode.bd2_step
    }
    assert slow == expected and "--slow-max-dim=2048" in reason
    # A default that resolves to a mode without bd2_step keeps its step row.
    assert "step:relative_coords" not in slow_rows(4096, 2048, 8192)[0]


def test_gradient_cost_skip_reason():
    skip = gradient_cost_methods.autodiff_skip_reason
    kwargs = dict(max_dim=512, max_bytes=2**30, max_seconds=60.0, calls=12)
    assert skip(256, 100, previous=None, **kwargs) is None
    assert "max-dim" in skip(1024, 100, previous=None, **kwargs)
    assert "GiB" in skip(512, 1000, previous=None, **kwargs)
    assert "predicted" in skip(512, 100, previous=(256, 1.0), **kwargs)


def test_dynamics_smoke(tmp_path):
    rows, gaps, shared = _main("dynamics")(["--smoke", "--out", str(tmp_path)])
    modes = ("ordinary", *(m for m in COMPARED if m != "ordinary"))
    pairs = {(o, g) for o in ("adam", "sgd") for g in modes}
    assert {(r["optimizer"], r["gradient"]) for r in rows} == pairs
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["mixing"] == "teacher" and math.isfinite(record["reference_nll"])
    for opt, by_grad in record["curves"].items():
        assert record["epochs_recorded"][opt] == list(range(21))
        curves = [by_grad[g] for g in modes]
        assert all(len(c) == 2 and len(c[0]) == 21 for c in curves)
        # Shared initialisations: identical NLL before the first step, then different paths.
        for other in curves[1:]:
            assert curves[0][0][0] == pytest.approx(other[0][0])
            assert curves[0][0][-1] != other[0][-1]
        assert all(math.isfinite(v) for c in curves for run in c for v in run)
        # Every run trains: the NLL goes down.
        assert all(run[-1] < run[0] for c in curves for run in c)
        for g, lr in record["learning_rates"][opt].items():
            # The chosen rate is the grid rate with the lowest mean final NLL on tuning seeds.
            tuning = record["tuning_mean_final_nll"][opt][g]
            assert f"{lr:g}" == min(tuning, key=tuning.get)
            assert record["grid_final_nll"][opt][g][f"{lr:g}"] == record["final_nll"][opt][g]
    # The gaps are recomputed from the final NLLs of the shared initialisations.
    assert {(g["optimizer"], g["gradient"]) for g in gaps} == pairs - {
        ("adam", "ordinary"),
        ("sgd", "ordinary"),
    }
    for gap in gaps:
        rel, ordi = (
            record["final_nll"][gap["optimizer"]][g] for g in (gap["gradient"], "ordinary")
        )
        mean_r, mean_o = sum(rel) / len(rel), sum(ordi) / len(ordi)
        assert gap["mean_gap"] == pytest.approx(abs(mean_r - mean_o) / abs(mean_o), rel=1e-3)
        paired = [abs(r - o) / abs(o) for r, o in zip(rel, ordi, strict=True)]
        assert gap["paired_within_1pct"] == sum(p < 0.01 for p in paired)
    n_rel = len(modes) - 1
    assert len(shared) == 2 * n_rel * 3  # optimizers x relative modes x grid rates
    n_rows = 2 * len(modes) + 1 + 2 * n_rel + 1 + 2 * n_rel * 3
    assert len(_table_rows(tmp_path / "report.md")) == n_rows
    assert (tmp_path / "dynamics.png").stat().st_size > 0
    assert _files(tmp_path) == ["dynamics.png", *REPORT]


def test_dynamics_problem_reference_nll():
    x, reference = make_problem(0, 500)
    assert x.shape == (500, 2) and abs(x.mean()) < 1e-5 and x.std(axis=0) == pytest.approx(1)
    # The Laplace entropy (2 + 2 log 2 = 3.39 nats for two sources) minus the mean
    # log-Jacobian: finite and of the right order; the leaky-ReLU problem's reference too.
    assert 0.5 < reference < 4.0
    _, reference_lrelu = make_problem(0, 500, mixing="leaky_relu")
    assert 0.5 < reference_lrelu < 4.0
    with pytest.raises(ValueError, match="unknown mixing"):
        make_problem(0, 10, mixing="tanh")


def test_throughput_smoke(tmp_path):
    records = _main("throughput")(["--smoke", "--out", str(tmp_path)])
    assert [(r["dim"], r["seeds"], r["gradient"]) for r in records] == [
        (3, 1, DEFAULT_GRADIENT),
        (3, 2, DEFAULT_GRADIENT),
    ]
    for r in records:
        assert r["samples_per_epoch"] == 512 and len(r["epoch_s_all"]) == 1
        assert r["depth"] == 4  # the auto depth resolved at D = 3
        assert r["samples_per_s"] == pytest.approx(r["seeds"] * 512 / r["epoch_s"])
    assert records[0]["speedup"] == 1.0
    assert records[1]["speedup"] == pytest.approx(
        records[1]["samples_per_s"] / records[0]["samples_per_s"]
    )
    assert len(_table_rows(tmp_path / "report.md")) == 2
    assert _files(tmp_path) == REPORT


def test_density2d_smoke(tmp_path):
    rows = _main("density2d")(["--smoke", "--out", str(tmp_path)])
    assert len(rows) == 2
    for r in rows:
        assert math.isfinite(r["test_nll"]) and math.isfinite(r["gaussian_test_nll"])
    table = _table_rows(tmp_path / "report.md")
    assert [row[0] for row in table] == [r["name"] for r in rows]
    assert (tmp_path / "density2d.png").stat().st_size > 0
    assert _files(tmp_path) == ["density2d.png", *REPORT]


def test_optimizer_probe_smoke(tmp_path):
    records = _main("optimizer_probe")(["--smoke", "--out", str(tmp_path)])
    combos = {(r["gradient"], r["optimizer"]) for r in records}
    assert combos == {(COMPARED[0], o) for o in ("adam", "sgd_momentum")}
    assert all(0 < r["mcc_pearson"] <= 1 and math.isfinite(r["best_val_nll"]) for r in records)
    assert len(_table_rows(tmp_path / "report.md")) == 2
    assert _files(tmp_path) == REPORT


def test_harness_parser_tables_and_files(tmp_path):
    parser = harness.experiment_parser("Doc line.\n\nMore.", out=tmp_path, smoke={"n": 2})
    parser.add_argument("--n", type=harness.positive_int, default=10)
    assert parser.description == "Doc line."
    assert (parser.parse_args([]).n, parser.parse_args(["--smoke", "--n", "5"]).n) == (10, 2)
    assert parser.parse_args([]).out == tmp_path
    with pytest.raises(SystemExit):
        parser.parse_args(["--n", "0"])
    typo = harness.experiment_parser("Doc.", out=None, smoke={"m": 1})
    with pytest.raises(TypeError, match="'m'"):
        typo.parse_args(["--smoke"])
    assert set(harness.COMPARED_GRADIENTS) == set(COMPARED)

    table = harness.markdown_table(("a", "b"), [(1, "x"), (2.5, "y")])
    assert table == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | y |"
    with pytest.raises(ValueError, match="2 cells"):
        harness.markdown_table(("a",), [(1, 2)])
    assert harness.markdown_document("T", "text", "", table) == f"# T\n\ntext\n\n{table}\n"

    out = tmp_path / "report"
    harness.write_report(out, {"k": [1.5, None]}, "# x\n")
    fig, ax = harness.pyplot().subplots()
    ax.plot([0, 1])
    harness.save_figure(fig, out / "x.png", dpi=40)
    assert _files(out) == [*REPORT, "x.png"]
    written = json.loads((out / "results.json").read_text())
    assert written["k"] == [1.5, None] and written["environment"] == environment()
    assert (out / "report.md").read_text() == f"# x\n\nRun with {describe()}.\n"
    assert (out / "x.png").stat().st_size > 0
    records = harness.write_records_as_they_come(out / "log.json", ([{"i": i}] for i in (0, 1)))
    assert records == [{"i": 0}, {"i": 1}] == json.loads((out / "log.json").read_text())


def test_outlier_tolerance_smoke(tmp_path):
    limit = nica.fitting.data.ISOLATION
    records = _main("outlier_tolerance")(["--smoke", "--out", str(tmp_path)])
    assert nica.fitting.data.ISOLATION == limit  # the fits' switch-off does not outlive the script
    clean, planted = records
    assert clean["target_squash"] == 1.0 and planted["squash"] == pytest.approx(30.0, rel=1e-6)
    assert planted["isolation"] > limit > clean["isolation"]  # the rule refuses the planted row
    assert all(0.0 <= r["mcc_pearson"] <= 1.0 for r in records)
    report = json.loads((tmp_path / "results.json").read_text())
    gaussian = [r for r in report["clean"] if r["family"] == "gaussian"]
    assert len(gaussian) == 4 and all(r["refused"] == 0.0 for r in gaussian)
    assert _files(tmp_path) == REPORT


def test_scale_probe_smoke_writes_a_variant_once_and_reports(tmp_path):
    from experiments import scale_probe

    args = ["--out", str(tmp_path), "--config", "demo", "--setting", "demo", "--seeds", "0"]
    tiny = ["--data", "samples_per_segment=50", "--set", "epochs=2", "--set", "restarts=1"]
    warm = [*args, "--name", "warm", *tiny, "--set", "depth=2", "--set", "warm_start=linear"]
    scale_probe.main([*warm, "--whiten"])
    path = tmp_path / "demo_demo__warm.json"
    body = json.loads(path.read_text())
    assert body["whiten"] == "zca"
    (record,) = body["seeds"]
    assert 0 < record["mcc"] <= 1 and record["depth"] == 2 and record["diverged"] is None
    assert math.isfinite(record["nll_gap"]) and math.isfinite(record["train_gap"])
    before = path.stat().st_mtime_ns
    scale_probe.main([*warm, "--whiten"])  # finished: not refitted
    assert path.stat().st_mtime_ns == before
    scale_probe.main(["--out", str(tmp_path), "--report"])
    (row,) = _table_rows(tmp_path / "report.md")
    assert row[1] == "warm" and row[3] == f"{record['mcc']:.3f}"
    command = (
        "python -m experiments.scale_probe --config demo --setting demo --seeds 0 --name warm"
        " --set epochs=2 --set restarts=1 --set depth=2 --set warm_start=linear"
        " --data samples_per_segment=50 --whiten"
    )
    assert f"`{command}`" in (tmp_path / "report.md").read_text()


def test_component_truth_undoes_the_matching_per_fitted_column():
    from experiments.stability_validation import component_truth

    rng = np.random.default_rng(0)
    s = rng.normal(size=(500, 3))
    s_hat = np.stack([-2 * s[:, 2], s[:, 0], s[:, 1] + 0.5 * rng.normal(size=500)], axis=1)
    truth = component_truth(s, s_hat)
    assert truth[:2] == pytest.approx([1.0, 1.0])
    assert truth[2] == pytest.approx(abs(np.corrcoef(s[:, 1], s_hat[:, 2])[0, 1]))
    assert truth[2] < 0.95


def test_stability_validation_smoke_fits_each_data_set_once_and_ranks(tmp_path):
    from scipy.stats import spearmanr

    from experiments import stability_validation

    stability_validation.main(["--smoke", "--out", str(tmp_path)])
    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert [c.name for c in cells] == [f"preset_tiny_data{i}.json" for i in range(3)]
    before = [c.stat().st_mtime_ns for c in cells]
    stability_validation.main(["--smoke", "--out", str(tmp_path)])  # finished: not refitted
    assert [c.stat().st_mtime_ns for c in cells] == before
    records = [json.loads(c.read_text()) for c in cells]
    for r in records:
        assert len(r["reliability"]) == len(r["true_corr"]) == 2 and r["fit_seeds"] == [0, 1]
        assert all(0 <= v <= 1 for v in r["reliability"] + r["true_corr"])
        assert r["mcc"] == pytest.approx(np.mean(r["true_corr"]))
        assert r["mcc"] in [pytest.approx(m) for m in r["fit_mccs"]]  # the reference is a fit
    summary = json.loads((tmp_path / "results.json").read_text())["summary"]
    rho = spearmanr([np.mean(r["reliability"]) for r in records], [r["mcc"] for r in records])
    assert summary["data_sets"]["rho"] == pytest.approx(rho.statistic)
    typical = [np.median(r["fit_mccs"]) for r in records]
    rho = spearmanr([np.mean(r["reliability"]) for r in records], typical)
    assert summary["typical_fit"]["rho"] == pytest.approx(rho.statistic, nan_ok=True)
    assert summary["components"]["n"] == 6
    flags, below = summary["flags"], stability_validation.FLAG_BELOW
    assert flags["failed"] == sum(r["mcc"] < below for r in records)
    assert flags["flagged_failed"] + flags["flagged_recovered"] == sum(
        np.mean(r["reliability"]) < below for r in records
    )
    assert len(_table_rows(tmp_path / "report.md")) == 3
    assert _files(tmp_path) == ["cells", "reliability.png", *REPORT]
    with pytest.raises(SystemExit, match="unknown settings"):
        stability_validation.main(
            ["--config", "depth", "--settings", "L=9", "--out", str(tmp_path)]
        )


def test_depth_choice_compares_the_restart_phase_choice_with_the_full_fits(tmp_path):
    from experiments import depth_choice

    def rec(seed, restart, final, mcc, gap):
        return {
            "seed": seed,
            "mcc": mcc,
            "nll_gap": gap,
            "restart_val_nll": restart,
            "final_val_nll": final,
            "diverged": None,
            "wall_s": 1.0,
        }

    body = {
        "config": "depth",
        "setting": "L=4",
        "overrides": {},
        "depths": {  # seed 0: both choose 5; seed 1: the restarts choose 4, the full fits 5
            "4": [rec(0, 1.0, 0.5, 0.90, 0.9), rec(1, 1.0, 0.5, 0.95, 0.3)],
            "5": [rec(0, 0.9, 0.4, 0.99, 0.1), rec(1, 1.1, 0.4, 0.99, 0.1)],
        },
    }
    rows = depth_choice._choices(body)
    assert [(r["restart_choice"], r["final_choice"]) for r in rows] == [("5", "5"), ("4", "5")]
    assert [r["mcc_restart"] for r in rows] == [0.99, 0.95]
    depth_choice.write_json(tmp_path / "depth_L4.json", body)
    text = depth_choice.write_report(tmp_path).read_text()
    assert "Same choice on 1 of 2 data sets." in text
    (row,) = _table_rows(tmp_path / "report.md")
    assert row[:3] == ["depth L=4", "1/2", "0.9900"] and row[3] == f"{np.median([0.99, 0.95]):.4f}"


def test_plateau_stop_replays_the_loops_patience_rule(tmp_path):
    from experiments import plateau_stop

    epochs = [0, 10, 20, 30, 40, 50, 60]
    stalls = [5.0, 4.0, 3.9995, 3.9995, 3.9995, 2.0, 1.0]  # plateau, then the anneal helps
    # min_delta 0: the step at epoch 20 counts, and 2 stalled evaluations are not 3.
    assert plateau_stop.replay(epochs, stalls, patience=3, min_delta=0.0) == (60, 1.0)
    assert plateau_stop.replay(epochs, stalls, patience=2, min_delta=0.0) == (40, 3.9995)
    assert plateau_stop.replay(epochs, stalls, patience=3, min_delta=0.001) == (40, 4.0)
    cell = {"setting": "s", "seed": 0, "history": {"epoch": epochs, "val_nll": stalls}}
    body = {
        "cells": [
            {**cell, "model": "conditional"},
            {**cell, "model": "fastica"},  # not a nica fit: left out
        ]
    }
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "results.json").write_text(json.dumps(body))
    records = plateau_stop.main(["--results", str(tmp_path / "runs"), "--out", str(tmp_path)])
    rule = next(r for r in records if (r["patience"], r["min_delta"]) == (3, 0.001))
    assert rule["fits"] == 1 and rule["stopped_early"] == 1
    assert rule["epochs_share_mean"] == pytest.approx(40 / 60)
    assert rule["nll_lost_max"] == pytest.approx(3.0)
    assert "| 3 | 0.001 | 67% | 1 / 1 | 3.000 |" in (tmp_path / "report.md").read_text()
