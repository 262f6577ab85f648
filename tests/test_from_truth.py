"""experiments.from_truth: fits started at (or near) the true demixer."""

import json

import numpy as np
import pytest

from experiments import from_truth


def test_first_layer_alignment_ignores_order_scale_and_sign_of_the_columns():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(4, 4))
    same = true[:, [2, 0, 3, 1]] * np.array([3.0, -0.5, 2.0, -7.0])
    assert from_truth.first_layer_alignment(same, true) == pytest.approx(1.0)
    other = rng.normal(size=(4, 4))
    assert from_truth.first_layer_alignment(other, true) < 0.95


def test_starts_move_each_layer_of_the_demixer_in_turn():
    named = from_truth.starts(3)
    assert list(named)[0] == "random" and named["random"].scale is None
    layers = [s.layers for s in named.values() if s.layers is not None]
    assert layers == [(0,), (1,), (2,)]
    assert named["truth x16, noise 0.2"] == from_truth.Start(16.0, 0.2)


def test_smoke_runs_each_cell_once_and_reports_the_starts(tmp_path):
    from_truth.main(["--smoke", "--out", str(tmp_path)])
    cells = sorted((tmp_path / "cells").glob("*.json"))
    assert len(cells) == 3
    before = [c.stat().st_mtime_ns for c in cells]
    from_truth.main(["--smoke", "--out", str(tmp_path)])  # finished cells are not rerun
    assert [c.stat().st_mtime_ns for c in cells] == before
    runs = {r["start"]: r for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    truth, moved, random = runs["truth x16"], runs["truth x16, layer 0 noise 0.5"], runs["random"]
    # The true demixer starts (and, after a few epochs, ends) near the truth's likelihood.
    assert abs(truth["start_gap"]) < 0.1 and abs(truth["nll_gap"]) < 0.1
    assert truth["start_alignment"] == pytest.approx(1.0, abs=1e-6)
    assert random["start_gap"] > 0.3 and moved["start_gap"] > 0.3
    assert moved["start_alignment"] < 0.999
    assert all(r["epochs"] == 3 and r["diverged"] is None for r in runs.values())
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Fits started at the true demixer")
    assert report.count("| truth x16") == 2


def test_bad_setting_and_an_empty_report_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="unknown setting"):
        from_truth.main(["--settings", "depth L=9", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="xtanh: the exact demixer is written for leaky-ReLU"):
        from_truth.main(["--settings", "mixings xtanh", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no cells"):
        from_truth.main(["--report", "--out", str(tmp_path)])
