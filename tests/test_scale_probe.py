"""experiments.scale_probe: the whitened map, and defaults rows from committed reports."""

import json

import numpy as np
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
