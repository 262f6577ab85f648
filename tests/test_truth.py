"""Tests of the true model's exact log-likelihood (synthetic.truth) and its ingredients, float64."""

import json

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import synthetic as sy
from synthetic.presets import replay_source_params

FAST_DRAWS = 500  # condition-threshold draws in tests (10^4 by default)
LOG_DET_CASES = [
    (act, conv, n) for act in sy.ACTIVATIONS for conv in sy.CONVENTIONS for n in (1, 3)
]
LOG_DET_CASES = [c for c in LOG_DET_CASES if not (c[1] == "icebeem" and c[2] == 1)]


def _fd_jacobian(fn, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference Jacobians of a row-wise map ``(N, D) -> (N, D)``: ``(N, D, D)``."""
    n, d = x.shape
    jac = np.empty((n, d, d))
    for j in range(d):
        step = np.zeros(d)
        step[j] = h
        jac[:, :, j] = (fn(x + step) - fn(x - step)) / (2.0 * h)
    return jac


@pytest.mark.parametrize(
    ("activation", "convention", "n_layers"),
    LOG_DET_CASES,
    ids=[f"{a}-{c}-L{n}" for a, c, n in LOG_DET_CASES],
)
def test_inverse_log_det_matches_slogdet_of_finite_difference_jacobian(
    activation, convention, n_layers
):
    mixing = sy.random_mixing(
        3, 3, n_layers, activation=activation, convention=convention, n_threshold_draws=FAST_DRAWS
    )
    s = np.random.default_rng(4).laplace(size=(20, 3)) * 1.5
    x = mixing(s)
    s_back, log_det = mixing.inverse_and_log_det(x)
    np.testing.assert_allclose(s_back, s, atol=1e-9, rtol=0)
    assert log_det.shape == (20,) and log_det.dtype == np.float64
    sign, expected = np.linalg.slogdet(_fd_jacobian(mixing.inverse, x))
    assert np.all(sign != 0)
    np.testing.assert_allclose(log_det, expected, atol=1e-5, rtol=0)
    # The forward map's log-det is its negative (change of variables), also against slogdet.
    x_again, forward_log_det = mixing.forward_and_log_det(s)
    np.testing.assert_array_equal(x_again, x)
    np.testing.assert_allclose(forward_log_det, -log_det, atol=1e-9, rtol=0)
    _, forward_expected = np.linalg.slogdet(_fd_jacobian(mixing, s))
    np.testing.assert_allclose(forward_log_det, forward_expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("distribution", sy.DISTRIBUTIONS)
def test_unit_log_density_matches_scipy_and_has_unit_variance(distribution):
    e = np.linspace(-30.0, 30.0, 600_001)
    log_p = sy.unit_log_density(distribution, e, df=5.0)
    reference = {
        "gaussian": stats.norm.logpdf(e),
        "laplace": stats.laplace.logpdf(e, scale=1.0 / np.sqrt(2.0)),
        "student_t": stats.t.logpdf(e, 5.0, scale=np.sqrt(3.0 / 5.0)),
    }[distribution]
    np.testing.assert_allclose(log_p, reference, atol=1e-12, rtol=1e-12)
    p = np.exp(log_p)
    assert np.trapezoid(p, e) == pytest.approx(1.0, abs=1e-4)
    tail_tol = 0.03 if distribution == "student_t" else 1e-4  # t_5 has heavy tails beyond 30
    assert np.trapezoid(e * e * p, e) == pytest.approx(1.0, abs=tail_tol)


def _tiny_config(activation: str, dim: int, **overrides) -> sy.SyntheticConfig:
    fields = dict(
        n_sources=dim,
        n_segments=3,
        samples_per_segment=200,
        n_layers=2,
        activation=activation,
        slope=sy.DEFAULT_SLOPES[activation],
        distribution="gaussian",
        scale_range=(0.5, 1.0),
        mean_range=(-0.5, 0.5),
        n_threshold_draws=FAST_DRAWS,
    )
    fields.update(overrides)
    return sy.SyntheticConfig(**fields)


# Every activation, each with one source family (cycling, so every family is covered too).
DENSITY_CASES = [
    (act, sy.DISTRIBUTIONS[i % len(sy.DISTRIBUTIONS)]) for i, act in enumerate(sy.ACTIVATIONS)
]


@pytest.mark.parametrize(
    ("activation", "distribution"), DENSITY_CASES, ids=[f"{a}-{d}" for a, d in DENSITY_CASES]
)
def test_one_dimensional_density_integrates_to_one(activation, distribution):
    # D = 1, "tcl" convention: x = sigma(sigma(s * a1) * a2), a nonlinear 1-D bijection.
    ds = sy.generate_dataset(
        0, _tiny_config(activation, 1, distribution=distribution, convention="tcl")
    )
    # Quadrature nodes x = f(s) from a fine s grid: nonuniform in x, dense where the mass is.
    s_grid = np.linspace(-30.0, 30.0, 600_001)[:, None]
    x_grid = ds.mixing(s_grid)
    order = np.argsort(x_grid[:, 0])
    x_grid = x_grid[order]
    for k in range(3):
        density = np.exp(sy.true_log_likelihood(ds, x_grid, np.full(len(x_grid), k)))
        assert np.trapezoid(density, x_grid[:, 0]) == pytest.approx(1.0, abs=2e-4)
    marginal = np.exp(sy.true_marginal_log_likelihood(ds, x_grid))
    assert np.trapezoid(marginal, x_grid[:, 0]) == pytest.approx(1.0, abs=2e-4)


@pytest.mark.parametrize("activation", sy.ACTIVATIONS)
def test_two_dimensional_density_integrates_to_one_on_a_grid(activation):
    ds = sy.generate_dataset(1, _tiny_config(activation, 2))
    lo, hi = ds.x.min(axis=0), ds.x.max(axis=0)
    pad = hi - lo
    axes = [np.linspace(lo[j] - pad[j], hi[j] + pad[j], 500) for j in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    cell = (axes[0][1] - axes[0][0]) * (axes[1][1] - axes[1][0])
    density = np.exp(sy.true_log_likelihood(ds, grid, np.zeros(len(grid), dtype=np.int64)))
    assert density.sum() * cell == pytest.approx(1.0, abs=3e-3)


@pytest.mark.parametrize("activation", sy.ACTIVATIONS)
def test_change_of_variables_matches_forward_map(activation):
    slope = sy.DEFAULT_SLOPES[activation]
    ds = sy.make_preset("ivae", 0, activation=activation, slope=slope, n_threshold_draws=FAST_DRAWS)
    params = sy.source_params(ds)
    _, forward_log_det = ds.mixing.forward_and_log_det(ds.s)
    expected = params.log_density(ds.s, ds.u) - forward_log_det
    log_lik = sy.true_log_likelihood(ds)
    assert log_lik.shape == (ds.n_samples,) and log_lik.dtype == np.float64
    np.testing.assert_allclose(log_lik, expected, atol=1e-8, rtol=0)


def test_marginal_is_the_weighted_mixture_of_the_conditionals():
    ds = sy.make_preset("tiny", 2, distribution="student_t", mean_range=(-1.0, 1.0))
    x = ds.x[::7]
    per_segment = np.stack(
        [sy.true_log_likelihood(ds, x, np.full(len(x), k)) for k in range(5)], axis=1
    )
    expected = logsumexp(per_segment, axis=1) - np.log(5.0)
    np.testing.assert_allclose(sy.true_marginal_log_likelihood(ds, x), expected, atol=1e-10)
    weights = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    expected = logsumexp(per_segment[:, :2], axis=1) + np.log(0.5)
    np.testing.assert_allclose(
        sy.true_marginal_log_likelihood(ds, x, weights), expected, atol=1e-10
    )


def test_true_model_beats_a_perturbed_one_on_fresh_samples():
    ds = sy.make_preset("ivae", 0, samples_per_segment=200, n_threshold_draws=FAST_DRAWS)
    test = sy.sample_from_truth(1, ds)
    assert test.x.shape == ds.x.shape and test.mixing is ds.mixing
    assert not np.allclose(test.s, ds.s)
    np.testing.assert_allclose(ds.mixing.inverse(test.x), test.s, atol=1e-8)
    true_ll = sy.true_log_likelihood(ds, test.x, test.u).mean()
    wrong = sy.Dataset(
        x=ds.x,
        u=ds.u,
        mixing=sy.Mixing(ds.mixing.matrices, activation="leaky_relu", slope=0.25),
        config=ds.config,
    )
    assert true_ll > sy.true_log_likelihood(wrong, test.x, test.u).mean() + 0.01
    shuffled = np.random.default_rng(0).permutation(test.u)
    assert true_ll > sy.true_log_likelihood(ds, test.x, shuffled).mean()


def test_source_params_are_recorded_and_survive_npz(tmp_path):
    ds = sy.make_preset("tiny", 3, mean_range=(0.0, 1.0))
    params = sy.source_params(ds)
    assert params.scales.shape == params.means.shape == (5, 2)
    assert np.all((params.scales >= 0.5) & (params.scales <= 3.0))
    for k in range(5):  # the recorded parameters are the ones the sources were drawn with
        seg = ds.s[ds.u == k]
        assert np.all(np.abs(seg.mean(axis=0) - params.means[k]) < 4 * params.scales[k] / 10)
    loaded = sy.load_dataset(ds.save(tmp_path / "d.npz"))
    np.testing.assert_array_equal(sy.true_log_likelihood(loaded), sy.true_log_likelihood(ds))


def test_files_without_source_params_still_load_and_replay_from_the_seed(tmp_path):
    ds = sy.make_preset("tiny", 3, distribution="student_t")
    old_config = {k: v for k, v in ds.config.items() if k != "source_params"}
    old = sy.Dataset(x=ds.x, s=ds.s, u=ds.u, mixing=ds.mixing, config=old_config)
    loaded = sy.load_dataset(old.save(tmp_path / "old.npz"))
    assert "source_params" not in loaded.config
    replayed = replay_source_params(json.loads(json.dumps(old_config)))
    np.testing.assert_array_equal(replayed.scales, sy.source_params(ds).scales)
    np.testing.assert_array_equal(sy.true_log_likelihood(loaded), sy.true_log_likelihood(ds))
    no_seed = sy.Dataset(x=ds.x, u=ds.u, mixing=ds.mixing, config={"preset": "tiny"})
    with pytest.raises(ValueError, match="seed"):
        sy.true_log_likelihood(no_seed)
    with pytest.raises(ValueError, match="no mixing"):
        sy.true_log_likelihood(sy.Dataset(x=ds.x, u=ds.u, config=ds.config))
    with pytest.raises(ValueError, match="labels u"):
        sy.true_log_likelihood(ds, ds.x)


def test_split_source_sampling_equals_segment_sources():
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    s, u = sy.segment_sources(rng_a, 4, 30, 3, distribution="laplace", mean_range=(-1.0, 1.0))
    params = sy.draw_segment_params(rng_b, 4, 3, distribution="laplace", mean_range=(-1.0, 1.0))
    s2, u2 = sy.sample_segment_sources(rng_b, params, 30)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(u, u2)
    restored = sy.SegmentSourceParams.from_dict(json.loads(json.dumps(params.to_dict())))
    np.testing.assert_array_equal(restored.means, params.means)
    with pytest.raises(ValueError, match="malformed"):
        sy.SegmentSourceParams.from_dict({"distribution": "gaussian"})


class _TruthAsFit:
    """A stand-in fit whose likelihood is the true model's, worsened by ``blur`` per sample."""

    def __init__(self, data: sy.Dataset, blur: float = 0.0):
        self.data, self.blur = data, blur

    def log_likelihood(self, x, u=None):
        if u is None:
            ll = sy.true_marginal_log_likelihood(self.data, x)
        else:
            ll = sy.true_log_likelihood(self.data, x, u)
        return ll - self.blur * (1 + np.abs(x).sum(1))


def test_tcl_true_likelihood_is_exact_and_nll_gap_works_on_a_tiny_version():
    ds = sy.make_preset(
        "tcl", 0, n_sources=3, n_segments=6, samples_per_segment=50, n_threshold_draws=FAST_DRAWS
    )
    params = sy.source_params(ds)
    assert np.all((params.scales > 0.0) & (params.scales <= 1.0))
    log_lik = sy.true_log_likelihood(ds)
    assert log_lik.shape == (300,) and np.all(np.isfinite(log_lik))
    _, forward_log_det = ds.mixing.forward_and_log_det(ds.s)
    expected = params.log_density(ds.s, ds.u) - forward_log_det
    np.testing.assert_allclose(log_lik, expected, atol=1e-8, rtol=0)
    assert np.isfinite(sy.true_marginal_log_likelihood(ds)).all()
    for conditional in (True, False):
        exact = sy.nll_gap(_TruthAsFit(ds), ds, seed=1, conditional=conditional)
        assert exact["nll_gap"] == pytest.approx(0.0, abs=1e-12)
        assert exact["train_gap"] == pytest.approx(0.0, abs=1e-12)
        assert np.isfinite(exact["true_nll"])
        worse = sy.nll_gap(_TruthAsFit(ds, 0.1), ds, seed=1, conditional=conditional)
        assert worse["nll_gap"] > 0.1 and worse["train_gap"] > 0.1
        # the training pair is on the data set's own rows, the held-out pair on fresh ones
        truth = sy.true_log_likelihood(ds) if conditional else sy.true_marginal_log_likelihood(ds)
        assert worse["true_train_nll"] == pytest.approx(-truth.mean(), rel=1e-12)
        assert worse["true_train_nll"] != pytest.approx(worse["true_nll"], rel=1e-6)


def _continuous(seed: int, **fields) -> sy.Dataset:
    config = dict(n_sources=2, n_samples=300, n_layers=2, n_threshold_draws=FAST_DRAWS)
    config.update(fields)
    return sy.generate_dataset(seed, sy.ContinuousConfig(**config))


def _direct_scales(params: sy.ContinuousSourceParams, u: np.ndarray) -> np.ndarray:
    """``sigma_j(u)`` written out feature by feature (synthetic.continuous's formula)."""
    n_sources, n_features, _ = params.frequencies.shape
    g = np.zeros((u.shape[0], n_sources))
    for j in range(n_sources):
        for m in range(n_features):
            g[:, j] += params.weights[j, m] * np.cos(
                u @ params.frequencies[j, m] + params.phases[j, m]
            )
    g *= np.sqrt(2.0 / n_features)
    lo, hi = params.scale_range
    return lo + (hi - lo) * (1.0 + np.tanh(g)) / 2.0


def test_continuous_true_likelihood_is_the_direct_change_of_variables():
    """log p(x | t) = sum_j log Laplace(s_j; std sigma_j(t)) + log|det J_{f^-1}(x)|, with the
    scales recomputed from the recorded parameters and the log-det from finite differences."""
    ds = _continuous(0)
    params = sy.source_params(ds)
    assert isinstance(params, sy.ContinuousSourceParams) and params.aux == "time"
    sigma = _direct_scales(params, ds.u)
    np.testing.assert_allclose(params.scales(ds.u), sigma, rtol=1e-12)
    log_p_s = stats.laplace.logpdf(ds.s, scale=sigma / np.sqrt(2.0)).sum(axis=1)
    sign, log_det = np.linalg.slogdet(_fd_jacobian(ds.mixing.inverse, ds.x))
    assert np.all(sign != 0)
    log_lik = sy.true_log_likelihood(ds)
    assert log_lik.shape == (300,) and log_lik.dtype == np.float64
    np.testing.assert_allclose(log_lik, log_p_s + log_det, atol=1e-5, rtol=0)
    _, forward_log_det = ds.mixing.forward_and_log_det(ds.s)
    np.testing.assert_allclose(log_lik, log_p_s - forward_log_det, atol=1e-9, rtol=0)
    # Other x and u: the same formula at the given points.
    x, u = ds.x[::3], np.random.default_rng(1).uniform(size=(100, 1))
    s = ds.mixing.inverse(x)
    sigma = _direct_scales(params, u)
    direct = stats.laplace.logpdf(s, scale=sigma / np.sqrt(2.0)).sum(axis=1)
    direct -= ds.mixing.forward_and_log_det(s)[1]
    np.testing.assert_allclose(sy.true_log_likelihood(ds, x, u), direct, atol=1e-9, rtol=0)


@pytest.mark.parametrize("distribution", sy.DISTRIBUTIONS)
def test_continuous_one_dimensional_density_integrates_to_one_at_each_time(distribution):
    ds = _continuous(2, n_sources=1, convention="tcl", distribution=distribution)
    s_grid = np.linspace(-40.0, 40.0, 400_001)[:, None]
    x_grid = ds.mixing(s_grid)
    x_grid = x_grid[np.argsort(x_grid[:, 0])]
    for t in (0.0, 0.37, 1.0):
        density = np.exp(sy.true_log_likelihood(ds, x_grid, np.full((len(x_grid), 1), t)))
        tol = 2e-3 if distribution == "student_t" else 2e-4  # t_5's tails beyond the grid
        assert np.trapezoid(density, x_grid[:, 0]) == pytest.approx(1.0, abs=tol)


def test_continuous_nll_gap_truth_samples_and_missing_marginal(tmp_path):
    ds = _continuous(3, n_sources=3, n_samples=400)
    assert not sy.has_true_marginal(ds) and sy.has_true_marginal(sy.make_preset("tiny", 0))
    test = sy.sample_from_truth(1, ds)
    np.testing.assert_array_equal(test.u, ds.u)  # the same time grid, fresh sources
    assert test.s.shape == ds.s.shape and not np.allclose(test.s, ds.s)
    assert test.mixing is ds.mixing
    exact = sy.nll_gap(_TruthAsFit(ds), ds, seed=5)
    assert exact["nll_gap"] == pytest.approx(0.0, abs=1e-12) and np.isfinite(exact["true_nll"])
    assert exact["train_gap"] == pytest.approx(0.0, abs=1e-12)
    worse = sy.nll_gap(_TruthAsFit(ds, 0.1), ds, seed=5)
    assert worse["nll_gap"] > 0.1 and worse["train_gap"] > 0.1
    # u carries information: the true model at the wrong times is less likely.
    true_ll = sy.true_log_likelihood(ds, test.x, test.u).mean()
    assert true_ll > sy.true_log_likelihood(ds, test.x, test.u[::-1]).mean()
    with pytest.raises(ValueError, match="continuous u"):
        sy.true_marginal_log_likelihood(ds)
    with pytest.raises(ValueError, match="conditional fits only"):
        sy.nll_gap(_TruthAsFit(ds), ds, seed=5, conditional=False)
    with pytest.raises(ValueError, match="no segments"):
        sy.sample_from_truth(1, ds, samples_per_segment=10)
    loaded = sy.load_dataset(ds.save(tmp_path / "c.npz"))
    assert loaded.u.dtype == np.float64 and loaded.u.shape == (400, 1)
    np.testing.assert_array_equal(sy.true_log_likelihood(loaded), sy.true_log_likelihood(ds))
    unknown = {**ds.config, "source_params": {**ds.config["source_params"], "kind": "gp"}}
    with pytest.raises(ValueError, match="unknown source parameter kind 'gp'"):
        sy.source_params(sy.Dataset(x=ds.x, u=ds.u, mixing=ds.mixing, config=unknown))


def test_exact_demixer_reaches_the_truth_when_its_kinks_are_sharp(tmp_path):
    """experiments.representability writes the true inverse of a leaky-ReLU mixing into nica's
    model: with the hidden pre-activations scaled up (the spline's smoothing of each kink
    shrinks relative to the data) its held-out NLL approaches the truth's, and is worse at
    scale 1; the smoke run writes its report."""
    from experiments import representability as rep

    ds = sy.make_preset("tiny", 0, n_layers=3, n_segments=4, samples_per_segment=200)
    spec = rep.MonotoneSplineSpec()
    coarse, sharp = (rep.gap(ds, scale, spec, 0) for scale in (1.0, 64.0))
    assert abs(sharp) < 0.05 < coarse
    assert abs(rep.gap(ds, 1.0, spec, 0, warp=10.0)) < 0.05  # knots dense at the kink
    rep.main(["--smoke", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "results.json").read_text())
    assert [r["warp"] for r in record["rows"]] == list(rep.WARPS)
    assert (tmp_path / "report.md").read_text().startswith("# Representability")
