"""Density estimation: preprocessing log-Jacobians, splits, the ``nica density`` command, and a
smoke run of ``experiments/density_real.py`` (flowjax parts skipped without flowjax)."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nica.apps.cli import main
from nica.apps.density import (
    GAUSSIAN,
    LOG_LIKELIHOOD_UNITS,
    DensityCandidate,
    DensityModel,
    Preprocessing,
    bits_per_dim,
    density_config,
    fit_nica,
    gaussian_log_likelihood,
    one_standard_error_choice,
    prepare_density_data,
    select_nica,
    split_indices,
)
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.priors import GaussianPrior
from nica.util.files import save_npz

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
    report = (out / "report.md").read_text()
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


def _gaussian_file(tmp_path, n=300, labels=False):
    """Correlated Gaussian rows ``(n, 3)`` (a Gaussian is the true model), with class labels
    shifting the mean when ``labels``."""
    rng = np.random.default_rng(3)
    u = rng.integers(0, 2, n).astype(np.int32)
    x = rng.normal(size=(n, 3)) @ np.array([[1.0, 0.9, 0.0], [0.0, 0.4, 0.5], [0.0, 0.0, 1.0]])
    if labels:
        x = x + 2.0 * u[:, None]
    path = tmp_path / "gaussian.npz"
    save_npz(path, x=x, **({"u": u} if labels else {}))
    return path


def _density(tmp_path, data, *extra):
    out = tmp_path / "out"
    assert main(["density", "--data", str(data), "--out", str(out), "--quiet", *extra]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, (out / "report.md").read_text()


def test_cli_density_labels_model_quantity_units_and_direction(tmp_path, capsys):
    """Every printed and saved number says its model, what it is, its unit and which way is
    better; the depth was chosen on the validation rows and the report says so."""
    metrics, report = _density(tmp_path, _gaussian_file(tmp_path), "--epochs", "3")
    printed = capsys.readouterr().out
    assert metrics["units"] == LOG_LIKELIHOOD_UNITS
    assert "lower is better" in metrics["units"]["bits_per_dim"]
    assert "higher is better" in metrics["units"]["log_likelihood_per_dim"]
    assert metrics["test"]["quantity"] == metrics["gaussian_test"]["quantity"] == "log p(x)"
    assert metrics["test"]["model"].startswith("nica (depth")
    assert "chosen on the validation rows" in metrics["test"]["model"]
    assert metrics["gaussian_test"]["model"] == GAUSSIAN
    assert metrics["selection"]["chosen"] in metrics["test"]["model"]
    rows = [line for line in printed.splitlines() if "nats/sample" in line]
    assert len(rows) == 2 and any(GAUSSIAN in row for row in rows)
    for row in rows:
        assert "log p(x)" in row
        assert "nats/sample (higher is better)" in row and "nats/dim (higher is better)" in row
        assert "bits/dim (lower is better)" in row
    assert "bits per dim (lower is better)" in report
    assert "nats per sample ± 2 s.e. (higher is better)" in report
    assert "## Depth chosen on the validation rows" in report
    assert metrics["nica_loses_to_gaussian"] in (True, False)
    assert len(metrics["comparisons"]) == 1 and metrics["verdict"][0] in printed


def test_cli_density_says_when_nica_loses_to_the_gaussian(tmp_path, capsys):
    """Gaussian data and a forced, barely trained 3-layer demixer: one printed line, the
    report and metrics.json say that nica loses to the Gaussian on the test split."""
    metrics, report = _density(tmp_path, _gaussian_file(tmp_path), "--depth", "3", "--epochs", "1")
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if "loses to" in line]
    assert len(lines) == 1
    assert lines[0].startswith(f"nica loses to the {GAUSSIAN} on the test split: log p(x)")
    assert metrics["nica_loses_to_gaussian"] is True
    assert metrics["comparisons"][0]["nica_loses"] is True
    assert metrics["comparisons"][0]["difference"] < 0
    assert f"**{lines[0]}**" in report
    assert metrics["selection"] is None and "set by --depth" in metrics["test"]["model"]


def test_cli_density_conditional_compares_like_with_like(tmp_path, capsys):
    """A conditional fit reports log p(x | u) and its mixture log p(x), each next to the
    Gaussian baseline of the same quantity, with one verdict line per pair."""
    data = _gaussian_file(tmp_path, labels=True)
    metrics, report = _density(tmp_path, data, "--conditional", "--depth", "1", "--epochs", "2")
    printed = capsys.readouterr().out
    assert metrics["test"]["quantity"] == "log p(x | u)"
    assert metrics["test"]["model"].startswith("nica, conditional on the class")
    assert metrics["marginal_test"]["quantity"].startswith("log p(x) = log sum_c p(c) p(x | c)")
    assert metrics["class_gaussian_test"]["quantity"] == "log p(x | u)"
    assert metrics["gaussian_test"]["quantity"] == "log p(x)"
    pairs = [(c["quantity"], c["baseline"]) for c in metrics["comparisons"]]
    assert pairs == [
        ("log p(x)", GAUSSIAN),
        ("log p(x | u)", metrics["class_gaussian_test"]["model"]),
    ]
    mixture = metrics["comparisons"][0]["nica_log_likelihood"]
    assert mixture == pytest.approx(metrics["marginal_test"]["log_likelihood"])
    for line in metrics["verdict"]:
        assert line in printed and line in report
    assert "log p(x | u) is conditional on the class" in report


def test_one_standard_error_rule_keeps_the_simpler_candidate_within_noise():
    rng = np.random.default_rng(0)
    simple = rng.normal(size=40)
    noise = np.tile([1.0, -1.0], 20)
    close = simple + 0.05 + noise  # better on average by far less than the noise
    far = simple + 3.0 + 0.1 * noise
    assert one_standard_error_choice(np.stack([simple, close]))[0] == 0
    chosen, stderr = one_standard_error_choice(np.stack([simple, close, far]))
    assert chosen == 2 and stderr[2] == 0.0 and stderr[0] > 0
    failed = np.full(40, -np.inf)
    assert one_standard_error_choice(np.stack([failed, simple]))[0] == 1


def _small_density_data(key, n=160):
    x = np.random.default_rng(1).normal(size=(n, 3)) @ np.array(
        [[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.3, 0.0, 1.0]]
    )
    return prepare_density_data(key, x, preprocessing=Preprocessing())


def test_selection_reads_the_validation_rows_only(key):
    """The choice and its scores are the same when the test rows are NaN, and its scores are
    the chosen fits' validation log-likelihoods."""
    data = _small_density_data(key)
    config = density_config(seed=0, conditional=False, epochs=3, batch_size=32)
    candidates = (DensityCandidate(1, whiten=True), DensityCandidate(2))
    fitted, selection = select_nica(key, data, config, candidates)
    nan = np.full_like(data.z_test, np.nan)
    blind = dataclasses.replace(data, z_test=nan, log_det_test=nan[:, 0])
    _, blind_selection = select_nica(key, blind, config, candidates)
    assert blind_selection.chosen == selection.chosen
    np.testing.assert_array_equal(blind_selection.val_log_likelihood, selection.val_log_likelihood)
    val = fitted.log_likelihood(data.z_val) + data.log_det_val
    assert selection.val_log_likelihood[selection.chosen] == pytest.approx(val.mean())
    assert fitted is selection.fits[selection.chosen]
    assert fitted.config.model.depth == candidates[selection.chosen].depth


def test_whitened_linear_start_is_the_gaussian_fit(key):
    """Depth 1 with the whitened start and no learning is the full-covariance Gaussian."""
    data = _small_density_data(key)
    config = density_config(seed=0, conditional=False, depth=1, epochs=1, learning_rate=1e-12)
    fitted = fit_nica(key, data, config, whiten=True)
    np.testing.assert_allclose(
        fitted.log_likelihood(data.z_test),
        gaussian_log_likelihood(data.z_train, data.z_test),
        rtol=0,
        atol=1e-3,
    )


def test_density_tabular_smoke(tmp_path):
    from experiments import density_tabular

    out = tmp_path / "density_tabular"
    rows = density_tabular.main(["--smoke", "--out", str(out)])
    assert [r["data"] for r in rows] == ["iris"]
    assert np.isfinite(rows[0]["nica_minus_gaussian"])
    report = (out / "report.md").read_text()
    assert "nats per sample (higher is better)" in report and "Command:" in report
    assert json.loads((out / "results.json").read_text())["records"][0]["selection"]


def test_conditional_density_maps_any_labels_and_refuses_unseen_ones():
    """Class labels are mapped through the saved label set (issue 24, items 1 and 2): labels
    7k + 3 give three classes, not 18 rows, and a label never seen is an error naming it."""
    from nica.apps.density import fit_density

    rng = np.random.default_rng(0)
    k = rng.integers(0, 3, 600)
    x = rng.normal(size=(600, 2)) * (1.0 + k[:, None]) + k[:, None]
    fit = fit_density(x, 7 * k + 3, seed=0, candidates=None, depth=1, epochs=2)
    model = fit.model
    assert list(model.labels) == [3, 10, 17] and model.fitted.model.prior.n_segments == 3
    assert model.class_log_likelihoods(x[:4]).shape == (4, 3)
    by_label = model.log_likelihood(x[:4], 7 * k[:4] + 3)
    np.testing.assert_allclose(model.class_log_likelihoods(x[:4])[np.arange(4), k[:4]], by_label)
    with pytest.raises(ValueError, match=r"label\(s\) 4 never seen in training"):
        model.log_likelihood(x[:2], np.array([4, 3]))
    assert model.sample(jax.random.key(1), 3, np.array([17, 3, 10])).shape == (3, 2)
