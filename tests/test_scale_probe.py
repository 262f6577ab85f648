"""experiments.scale_probe: the whitened map, and defaults rows from committed reports."""

import json

import numpy as np
import pytest
from scipy import stats

from experiments import scale_probe


class _StandardNormal:
    """A 'fit' whose density is the standard normal of its input."""

    def log_likelihood(self, z, u=None):
        return stats.norm.logpdf(z).sum(axis=1)

    def transform(self, z):
        return z


def test_whitened_map_has_identity_covariance_and_keeps_the_density_of_x():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 3)) @ np.array([[2.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.1, 0, 0.5]])
    x += np.array([1.0, -2.0, 0.5])
    whitened = scale_probe.Whitened(x)
    z = whitened(x)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    # The standard normal on z is the Gaussian of x's sample mean and covariance, on x.
    whitened.fitted = _StandardNormal()
    truth = stats.multivariate_normal(x.mean(axis=0), np.cov(x, rowvar=False)).logpdf(x[:50])
    np.testing.assert_allclose(whitened.log_likelihood(x[:50]), truth, rtol=1e-10)


def test_committed_defaults_row_takes_the_reports_cells_of_the_chosen_seeds(tmp_path):
    def cell(seed, model="conditional", setting="L=4", **extra):
        history = {"epoch": [0, 10], "val_nll": [2.0, 1.0]}
        return {
            "setting": setting,
            "model": model,
            "seed": seed,
            "mcc_pearson": 0.9 + seed / 100,
            "nll_gap": 0.5,
            "depth": 5,
            "wall_s": 10.0,
            "history": history,
            **extra,
        }

    cells = [cell(0, train_gap=0.4), cell(1), cell(2), cell(0, model="fastica"),
             cell(0, setting="L=5")]  # fmt: skip
    (tmp_path / "depth").mkdir()
    (tmp_path / "depth" / "results.json").write_text(json.dumps({"cells": cells}))
    out = tmp_path / "probe"
    path = scale_probe.committed_variant("depth", "L=4", [0, 1], out, results=tmp_path)
    body = json.loads(path.read_text())
    assert [r["seed"] for r in body["seeds"]] == [0, 1] and body["wall_s"] == 20.0
    assert [r["train_gap"] for r in body["seeds"]] == [0.4, None]
    row = next(line for line in scale_probe.write_report(out).read_text().splitlines()
               if "| defaults |" in line)  # fmt: skip
    assert "| 0.900 / 0.910 | 0.905 | 0.50 / 0.50 | 0.40 / – | 20 |" in row


def test_restart_choices_are_recorded_json_ready_and_listed_in_the_report(tmp_path):
    record = {"val_nll": [np.float32(1.5), np.float64(0.25), 2.0], "chosen": 1}
    choices = scale_probe._choices(record)
    assert choices == {"val_nll": [1.5, 0.25, 2.0], "chosen": 1}
    assert all(type(v) is float for v in choices["val_nll"])
    assert scale_probe._choices(None) is None
    seed = {"seed": 3, "mcc": 0.9, "nll_gap": 0.5, "train_gap": 0.4, "restarts": choices}
    body = {"config": "depth", "setting": "L=4", "variant": "v", "overrides": {}, "wall_s": 1.0,
            "seeds": [seed, {**seed, "seed": 4, "restarts": None}]}  # fmt: skip
    (tmp_path / "depth_L4__v.json").write_text(json.dumps(body))
    lines = scale_probe.write_report(tmp_path).read_text().splitlines()
    assert "| depth L=4 | v | 3 | 1.25 **0.00** 1.75 | 0.50 | 0.900 |" in lines
    assert not any(line.startswith("| depth L=4 | v | 4 |") for line in lines)


def test_restart_ranking_reads_when_the_best_restart_led_and_what_pruning_costs(tmp_path):
    epochs = [0, 30, 60, 150, 300]
    curves = [
        {"epoch": epochs, "val_nll": [5.0, 3.0, 2.5, 2.4, 2.3]},
        {"epoch": epochs, "val_nll": [5.0, 4.0, 3.0, 2.0, 1.0]},  # last at 30 and 60, best at 300
        {"epoch": epochs, "val_nll": [5.0, 2.0, 2.0, 2.0, 2.0]},
    ]
    ranking = scale_probe.restart_ranking(curves)
    assert ranking["rank"] == {30: 3, 60: 3, 150: 1}
    # The top 4 at epoch 30 keep all three; the top 2 at epoch 60 (NLL 2.0 and 2.5) end at 2.0.
    assert ranking["lost"] == {"30:4": 0.0, "60:2": pytest.approx(1.0)}
    nan = float("nan")  # a restart that diverged after epoch 30 counts by its finite NLLs
    diverged = {"epoch": epochs, "val_nll": [5.0, 4.5, nan, nan, nan]}
    assert scale_probe.restart_ranking([*curves, diverged]) == ranking
    short = [{"epoch": [0, 10, 25], "val_nll": [3.0, 2.0, 1.0]}] * 2
    assert scale_probe.restart_ranking(short) is None and scale_probe.restart_ranking(None) is None

    histories = {"restarts": [{"epoch": np.array(epochs), "val_nll": np.array(c["val_nll"]),
                               "train_nll": []} for c in curves]}  # fmt: skip
    recorded = scale_probe._restart_curves(histories)
    assert recorded == curves and type(recorded[0]["epoch"][1]) is int
    assert scale_probe._restart_curves({"warm_start": {}}) is None
    seed = {"seed": 2, "mcc": 0.9, "nll_gap": 0.5, "train_gap": 0.4, "restart_curves": curves}
    body = {"config": "depth", "setting": "L=4", "variant": "w", "overrides": {}, "wall_s": 1.0,
            "seeds": [seed]}  # fmt: skip
    (tmp_path / "depth_L4__w.json").write_text(json.dumps(body))
    lines = scale_probe.write_report(tmp_path).read_text().splitlines()
    assert "| depth L=4 | w | 2 | 3 | 3 / 3 / 1 | 0.00 | 1.00 |" in lines
