"""Density estimation: preprocessing log-Jacobians, splits, the ``nica density`` command, and a
smoke run of ``experiments/density_real.py`` (flowjax parts skipped without flowjax)."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nica.cli import main
from nica.density import (
    DensityModel,
    Preprocessing,
    bits_per_dim,
    split_indices,
)
from nica.model import ICAModel
from nica.network import DemixingNetwork
from nica.priors import GaussianPrior
from nica.storage import save_npz

LOGIT = Preprocessing(logit=True, low=0, high=5, dequantise=True, alpha=0.05)


class _Float64Fit:
    """What ``DensityModel`` needs of a fitted model, in float64: standardise, then the model."""

    def __init__(self, model: ICAModel, mean: np.ndarray, scale: np.ndarray):
        self.model, self.mean, self.scale = model, mean, scale
        self.aux = None

    def log_likelihood(self, z, u=None):
        ll = self.model.log_likelihood(jnp.asarray((z - self.mean) / self.scale))
        return np.asarray(ll) - np.log(self.scale).sum()


def _logit_jax(pre: Preprocessing, v):
    """The logit preprocessing written again from its formula, for autodiff."""
    p = pre.alpha + (1 - 2 * pre.alpha) * (v - pre.low) / pre.width
    return jnp.log(p) - jnp.log1p(-p)


def test_log_likelihood_is_the_change_of_variables_sum(x64):
    """log p(v) of preprocessing + standardisation + demixer + prior equals
    log N(f(v)) + log|det df/dv| with the Jacobian of the whole map from autodiff."""
    dim = 3
    demixer = DemixingNetwork(dim, 3, rngs=nnx.Rngs(1), param_dtype=jnp.float64)
    model = ICAModel(demixer, GaussianPrior())
    mean, scale = np.array([0.3, -0.2, 0.1]), np.array([1.5, 0.7, 2.0])
    density = DensityModel(_Float64Fit(model, mean, scale), LOGIT)
    rng = np.random.default_rng(0)
    v = rng.integers(0, 6, (5, dim)) + rng.uniform(size=(5, dim))

    def whole_map(row):
        z = (_logit_jax(LOGIT, row) - mean) / scale
        return demixer(z[None])[0]

    s = jax.vmap(whole_map)(jnp.asarray(v))
    log_det = jax.vmap(lambda row: jnp.linalg.slogdet(jax.jacfwd(whole_map)(row))[1])(v)
    expected = (-0.5 * s**2 - 0.5 * math.log(2 * math.pi)).sum(axis=1) + log_det
    np.testing.assert_allclose(density.log_likelihood(v), expected, rtol=0, atol=1e-10)


def test_preprocessing_inverse_undoes_forward():
    v = np.random.default_rng(1).uniform(0, 6, (50, 4))
    z, _ = LOGIT.forward_and_log_det(v)
    np.testing.assert_allclose(LOGIT.inverse(z), v, atol=1e-10)


def test_preprocessing_checks_bounds_and_integers():
    with pytest.raises(ValueError, match="outside the bounds"):
        LOGIT.check(np.array([[0.0, 6.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="integer data"):
        LOGIT.check(np.array([[0.5, 1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="alpha"):
        Preprocessing(logit=True, low=0, high=1, alpha=0.5).validate()


def test_bits_per_dim_of_one_bit_per_dimension():
    assert bits_per_dim(-4 * math.log(2.0), 4) == pytest.approx(1.0)


def test_split_is_disjoint_complete_and_seeded(key):
    split = split_indices(key, 100, 0.2, 0.1)
    assert (split.train.size, split.validation.size, split.test.size) == (70, 10, 20)
    rows = np.concatenate(split)
    assert np.array_equal(np.sort(rows), np.arange(100))
    assert np.array_equal(split_indices(key, 100, 0.2, 0.1).test, split.test)


def _integer_file(tmp_path, **extra):
    rng = np.random.default_rng(0)
    s = rng.normal(size=(240, 3))
    x = np.clip(np.round(2.5 + s @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0.2, 0, 1]])), 0, 5)
    path = tmp_path / "counts.npz"
    save_npz(path, x=x, **extra)
    return path


def test_cli_density_writes_test_log_likelihood(tmp_path, capsys):
    data = _integer_file(tmp_path)
    out = tmp_path / "out"
    args = ["density", "--data", str(data), "--out", str(out), "--logit", "0", "5"]
    args += ["--dequantise", "--epochs", "2", "--copies", "2", "--depth", "2", "--quiet"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert np.isfinite(test["log_likelihood"])
    assert test["bits_per_dim"] == pytest.approx(-test["log_likelihood"] / (3 * math.log(2)))
    assert metrics["n_test"] == 48
    for name in ("report.md", "samples.png", "checkpoint/preprocessing.json"):
        assert (out / name).exists()
    assert main(args) == 2  # an earlier run is not replaced without --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": np.full((10, 2), 7.0)}, "outside the bounds"),
        ({"x": np.full((10, 2), np.nan)}, "NaN"),
        ({"x": np.arange(10.0)}, "2-D"),
    ],
    ids=["out_of_bounds", "nan", "shape"],
)
def test_cli_density_bad_input_is_one_line_exit_2(tmp_path, capsys, change, message):
    path = tmp_path / "bad.npz"
    save_npz(path, **change)
    args = ["density", "--data", str(path), "--out", str(tmp_path / "o"), "--logit", "0", "5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("nica: error:")


def test_density_real_smoke_skips_flowjax_cleanly(tmp_path, monkeypatch):
    from experiments import density_real, flowjax_flows

    monkeypatch.setattr(flowjax_flows, "available", lambda: False)
    out = tmp_path / "density_real"
    models = ["nica-conditional", "gaussian", "maf", "coupling"]
    rows = density_real.main(["--smoke", "--out", str(out), "--models", *models])
    assert [r["model"] for r in rows] == ["nica-conditional", "gaussian"]
    assert all(np.isfinite(r["test_ll_mean"]) for r in rows)
    assert 0.0 <= rows[0]["accuracy"] <= 1.0
    report = (out / "density_real.md").read_text()
    assert "Skipped: maf, coupling" in report
    assert (out / "samples.png").exists() and (out / "components.png").exists()


def test_flowjax_flow_matched_and_fitted():
    pytest.importorskip("flowjax")
    from experiments import flowjax_flows

    width, n = flowjax_flows.match_width("maf", 4, 300, layers=2)
    assert abs(n - 300) <= 60
    flow = flowjax_flows.build_flow(jax.random.key(0), "maf", 4, width=width, layers=2)
    assert flowjax_flows.count_parameters(flow) == n
    x = np.random.default_rng(0).normal(size=(200, 4))
    flow, info = flowjax_flows.fit_flow(
        jax.random.key(1),
        flow,
        x[:160],
        x[160:],
        epochs=3,
        batch_size=32,
        learning_rate=1e-3,
        clip_norm=10.0,
        eval_every=1,
        patience=None,
    )
    assert info["epochs_run"] == 3
    assert np.all(np.isfinite(flowjax_flows.log_prob(flow, x[160:])))
