"""Tests for the synthetic package: sources, mixings, toy densities, presets, npz datasets."""

import itertools
import json
import pickle

import numpy as np
import pytest

import synthetic as sy
from synthetic.sources import DISTRIBUTIONS

FAST_DRAWS = 500  # condition-threshold draws in tests (10^4 by default)


# --- sources -------------------------------------------------------------------------------

SOURCE_GENERATORS = {
    "segment": lambda seed, dist: sy.segment_sources(seed, 6, 400, 3, distribution=dist),
    "segment-means": lambda seed, dist: sy.segment_sources(
        seed, 6, 400, 3, distribution=dist, mean_range=(-2.0, 2.0)
    ),
    "ar1": lambda seed, dist: sy.ar1_sources(seed, 6, 400, 3, distribution=dist),
    "continuous-time": lambda seed, dist: sy.continuous_aux_sources(
        seed, 2400, 3, distribution=dist
    ),
    "continuous-2d": lambda seed, dist: sy.continuous_aux_sources(
        seed, 2400, 3, aux_dim=2, aux="uniform", distribution=dist
    ),
}
SOURCE_CASES = list(itertools.product(SOURCE_GENERATORS, DISTRIBUTIONS))
SOURCE_IDS = [f"{g}-{d}" for g, d in SOURCE_CASES]


@pytest.mark.parametrize(("generator", "dist"), SOURCE_CASES, ids=SOURCE_IDS)
def test_sources_shapes_dtypes_and_determinism(generator, dist):
    make = SOURCE_GENERATORS[generator]
    s, u = make(0, dist)
    assert s.shape == (2400, 3)
    assert s.dtype == np.float64
    assert np.all(np.isfinite(s))
    if generator.startswith("continuous"):
        assert u.dtype == np.float64
        assert u.shape == (2400, 2 if generator.endswith("2d") else 1)
    else:
        assert u.shape == (2400,)
        assert np.issubdtype(u.dtype, np.integer)
        np.testing.assert_array_equal(np.bincount(u), np.full(6, 400))
    s2, u2 = make(0, dist)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(u, u2)
    s3, _ = make(1, dist)
    assert not np.allclose(s, s3)


def test_generator_seed_is_accepted_and_advanced():
    rng = np.random.default_rng(5)
    s1, _ = sy.segment_sources(rng, 2, 10, 2)
    s2, _ = sy.segment_sources(rng, 2, 10, 2)
    assert not np.allclose(s1, s2)
    s3, _ = sy.segment_sources(np.random.default_rng(5), 2, 10, 2)
    np.testing.assert_array_equal(s1, s3)


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_segment_sources_are_uncorrelated_within_segments_with_scales_in_range(dist):
    s, u = sy.segment_sources(3, 8, 5000, 4, distribution=dist)
    for k in range(8):
        seg = s[u == k]
        corr = np.corrcoef(seg, rowvar=False)
        off_diagonal = corr[~np.eye(4, dtype=bool)]
        assert np.max(np.abs(off_diagonal)) < 0.08  # ~ 5 / sqrt(n)
        std = seg.std(axis=0)
        assert np.all((std > 0.5 * 0.85) & (std < 3.0 * 1.15))
    # Scales really vary across segments (nonstationarity).
    per_segment_std = np.array([s[u == k].std(axis=0) for k in range(8)])
    assert np.all(per_segment_std.max(axis=0) / per_segment_std.min(axis=0) > 1.3)


def test_segment_means_within_range():
    s, u = sy.segment_sources(4, 5, 4000, 3, distribution="gaussian", mean_range=(1.0, 2.0))
    means = np.array([s[u == k].mean(axis=0) for k in range(5)])
    assert np.all((means > 0.8) & (means < 2.2))


def test_continuous_aux_scale_varies_smoothly_with_u():
    s, u = sy.continuous_aux_sources(0, 40_000, 2, distribution="gaussian", bandwidth=0.2)
    assert np.all(np.diff(u[:, 0]) > 0)  # time is ordered
    # Local standard deviations over windows: in range, and neighbouring windows similar.
    local = s.reshape(40, 1000, 2).std(axis=1)
    assert np.all((local > 0.5 * 0.85) & (local < 3.0 * 1.15))
    assert np.max(np.abs(np.diff(local, axis=0))) < 0.6
    assert np.all(local.max(axis=0) - local.min(axis=0) > 0.3)


def test_scale_draws_from_zero_are_positive_and_others_are_numpys_uniform():
    """TCL's U(0, 1) modulation is drawn on (0, 1] as 1 - U[0, 1), never 0; a range with
    low > 0 keeps numpy's ``uniform`` draws (the existing presets' data)."""
    params = sy.draw_segment_params(3, 400, 5, scale_range=(0.0, 1.0))
    np.testing.assert_array_equal(params.scales, 1.0 - np.random.default_rng(3).random((400, 5)))
    assert np.all((params.scales > 0.0) & (params.scales <= 1.0))
    assert params.scales.min() < 0.01 and params.scales.max() > 0.99
    scaled = sy.draw_segment_params(3, 400, 5, scale_range=(0.0, 2.5))
    np.testing.assert_array_equal(
        scaled.scales, 2.5 - 2.5 * np.random.default_rng(3).random((400, 5))
    )
    usual = sy.draw_segment_params(3, 40, 5, scale_range=(0.5, 3.0), mean_range=(-1.0, 1.0))
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(usual.scales, rng.uniform(0.5, 3.0, (40, 5)))
    np.testing.assert_array_equal(usual.means, rng.uniform(-1.0, 1.0, (40, 5)))


def test_continuous_sources_split_into_parameters_and_samples():
    """``u = t``: :func:`continuous_aux_sources` is ``draw_continuous_params`` then
    ``sample_continuous_sources`` on one stream; the parameters round-trip through JSON and
    give the scales the sources were drawn with."""
    s, u = sy.continuous_aux_sources(4, 3000, 3, distribution="gaussian", bandwidth=0.3)
    rng = np.random.default_rng(4)
    params = sy.draw_continuous_params(rng, 3, distribution="gaussian", bandwidth=0.3)
    s2, u2 = sy.sample_continuous_sources(rng, params, 3000)
    np.testing.assert_array_equal(s, s2)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_array_equal(u[:, 0], np.linspace(0.0, 1.0, 3000))
    restored = sy.ContinuousSourceParams.from_dict(json.loads(json.dumps(params.to_dict())))
    np.testing.assert_array_equal(restored.scales(u), params.scales(u))
    noise = s / params.scales(u)  # unit-variance Gaussian noise
    assert abs(noise.std() - 1.0) < 0.03
    uniform = sy.draw_continuous_params(0, 2, aux="uniform", aux_dim=3)
    s3, u3 = sy.sample_continuous_sources(1, uniform, 50)
    assert s3.shape == (50, 2) and u3.shape == (50, 3) and 0.0 <= u3.min() <= u3.max() <= 1.0
    with pytest.raises(ValueError, match="malformed"):
        sy.ContinuousSourceParams.from_dict({"distribution": "laplace"})
    with pytest.raises(ValueError, match=r"u must have shape \(N, 3\)"):
        uniform.scales(u)


def test_ar1_sources_have_temporal_dependence():
    s, _ = sy.ar1_sources(0, 2, 20_000, 3, ar_range=(0.5, 0.9))
    lag1 = np.array([np.corrcoef(s[:-1, j], s[1:, j])[0, 1] for j in range(3)])
    assert np.all((lag1 > 0.45) & (lag1 < 0.92))
    iid, _ = sy.segment_sources(0, 2, 20_000, 3)
    assert abs(np.corrcoef(iid[:-1, 0], iid[1:, 0])[0, 1]) < 0.05


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sy.segment_sources(0, 0, 10, 2), "n_segments"),
        (lambda: sy.segment_sources(0, 2, 10, 2, distribution="cauchy"), "gaussian"),
        (lambda: sy.segment_sources(0, 2, 10, 2, scale_range=(0.0, 0.0)), "scale_range"),
        (lambda: sy.segment_sources(0, 2, 10, 2, scale_range=(-0.5, 1.0)), "scale_range"),
        (lambda: sy.ar1_sources(0, 2, 10, 2, scale_range=(0.0, 1.0)), "scale_range"),
        (lambda: sy.ar1_sources(0, 2, 10, 2, ar_range=(0.5, 1.0)), "ar_range"),
        (lambda: sy.continuous_aux_sources(0, 10, 2, aux_dim=2), "aux='uniform'"),
        (lambda: sy.continuous_aux_sources(0, 10, 2, scale_range=(0.0, 1.0)), "scale_range"),
        (lambda: sy.continuous_aux_sources(0, 10, 2, aux="grid"), "uniform"),
    ],
    ids=[
        "zero-segments",
        "bad-distribution",
        "zero-scale",
        "negative-scale",
        "ar1-zero-scale",
        "unit-root",
        "time-2d",
        "continuous-zero-scale",
        "unknown-aux",
    ],
)
def test_source_argument_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- mixing --------------------------------------------------------------------------------

MIXING_CASES = [
    (act, fam, conv, n)
    for act in sy.ACTIVATIONS
    for fam in sy.FAMILIES
    for conv in sy.CONVENTIONS
    for n in range(1, 5)
    if not (conv == "icebeem" and n == 1)
]
MIXING_IDS = [f"{a}-{f}-{c}-L{n}" for a, f, c, n in MIXING_CASES]


@pytest.mark.parametrize(
    ("activation", "family", "convention", "n_layers"), MIXING_CASES, ids=MIXING_IDS
)
def test_mixing_inverse_is_exact(activation, family, convention, n_layers):
    mixing = sy.random_mixing(
        7,
        4,
        n_layers,
        activation=activation,
        family=family,
        convention=convention,
        n_threshold_draws=FAST_DRAWS,
    )
    s = 2.0 * np.random.default_rng(8).laplace(size=(500, 4))
    x = mixing(s)
    assert x.shape == s.shape
    assert not np.allclose(x, s)
    np.testing.assert_allclose(mixing.inverse(x), s, atol=1e-5, rtol=0)
    expected_matrices = n_layers - 1 if convention == "icebeem" else n_layers
    assert mixing.n_matrices == expected_matrices
    assert mixing.condition_numbers.shape == (expected_matrices,)


def test_layer_conventions():
    s = np.random.default_rng(0).normal(size=(200, 3))
    linear = sy.random_mixing(0, 3, 1, convention="ivae", n_threshold_draws=FAST_DRAWS)
    a = linear.matrices[0]
    np.testing.assert_allclose(linear(s), s @ a)
    tcl = sy.random_mixing(0, 3, 1, convention="tcl", n_threshold_draws=FAST_DRAWS)
    np.testing.assert_allclose(tcl(s), sy.leaky_relu(s @ a, 0.2))
    icebeem = sy.random_mixing(0, 3, 2, convention="icebeem", n_threshold_draws=FAST_DRAWS)
    np.testing.assert_allclose(icebeem(s), sy.leaky_relu(s, 0.2) @ a)
    with pytest.raises(ValueError, match="n_layers >= 2"):
        sy.random_mixing(0, 3, 1, convention="icebeem")
    with pytest.raises(ValueError, match="ivae"):
        sy.random_mixing(0, 3, 2, convention="keras")


@pytest.mark.parametrize("dim", [2, 3, 5])
def test_uniform_matrices_respect_condition_threshold(dim):
    threshold = sy.condition_threshold(dim, FAST_DRAWS)
    assert threshold >= 1.0
    mixing = sy.random_mixing(1, dim, 4, n_threshold_draws=FAST_DRAWS)
    assert np.all(mixing.condition_numbers <= threshold)
    for a in mixing.matrices:
        np.testing.assert_allclose(np.linalg.norm(a, axis=0), 1.0)
    # Explicit thresholds are honoured too.
    tight = sy.random_matrix(2, dim, cond_threshold=1.05 * threshold)
    assert np.linalg.cond(tight) <= 1.05 * threshold


def test_condition_threshold_is_cached_and_deterministic():
    sy.condition_threshold.cache_clear()
    first = sy.condition_threshold(4, FAST_DRAWS)
    assert sy.condition_threshold(4, FAST_DRAWS) == first
    assert sy.condition_threshold.cache_info().hits >= 1
    sy.condition_threshold.cache_clear()
    assert sy.condition_threshold(4, FAST_DRAWS) == first


def test_orthogonal_matrices_are_orthogonal():
    q = sy.random_matrix(3, 6, family="orthogonal")
    np.testing.assert_allclose(q @ q.T, np.eye(6), atol=1e-12)
    mixing = sy.random_mixing(3, 6, 3, family="orthogonal")
    np.testing.assert_allclose(mixing.condition_numbers, 1.0, atol=1e-10)


@pytest.mark.parametrize("slope", [0.01, 0.1, 1.0])
def test_xtanh_inverse_precision(slope):
    y = np.concatenate([np.linspace(-60.0, 60.0, 20_001), [0.0, 1e-300, -1e-8]])
    x = sy.xtanh_inverse(y, slope)
    np.testing.assert_allclose(sy.xtanh(x, slope), y, atol=1e-12, rtol=0)


@pytest.mark.parametrize("slope", [0.05, 0.2, 0.5, 2.0])
@pytest.mark.parametrize("name", sy.ACTIVATIONS)
def test_activation_registry_entries_are_exact_increasing_bijections(name, slope):
    act = sy.get_activation(name)
    assert act.name == name and sy.DEFAULT_SLOPES[name] == act.default_slope > 0
    assert act.slope_meaning
    x = np.concatenate([np.linspace(-60.0, 60.0, 24_001), [0.0, 1e-300, -1e-8, 1e5, -1e5]])
    y = act.value(x, slope)
    assert np.all(np.isfinite(y))
    assert np.all(np.diff(act.value(np.linspace(-60.0, 60.0, 24_001), slope)) > 0)
    back = act.inverse(y, slope)
    np.testing.assert_allclose(act.value(back, slope), y, atol=1e-12, rtol=1e-13)
    np.testing.assert_allclose(back, x, atol=1e-10, rtol=1e-12)
    # log sigma'(x) against a central difference away from leaky ReLU's kink at 0.
    grid = np.linspace(-20.0, 20.0, 4_001) + 1e-3
    h = 1e-6
    fd = (act.value(grid + h, slope) - act.value(grid - h, slope)) / (2.0 * h)
    np.testing.assert_allclose(act.log_derivative(grid, slope), np.log(fd), atol=1e-7, rtol=0)


def test_unknown_activation_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="tanhshrink"):
        sy.random_mixing(0, 3, 2, activation="sigmoid")
    with pytest.raises(ValueError, match="asinh"):
        sy.Mixing((np.eye(2),), activation="relu")


def test_leaky_relu_inverse_round_trip():
    x = np.linspace(-5.0, 5.0, 101)
    np.testing.assert_allclose(sy.leaky_relu_inverse(sy.leaky_relu(x, 0.2), 0.2), x, rtol=1e-15)


@pytest.mark.parametrize("activation", sy.ACTIVATIONS)
def test_mixing_dict_round_trip_through_json(activation):
    mixing = sy.random_mixing(
        4, 3, 3, activation=activation, slope=0.3, n_threshold_draws=FAST_DRAWS
    )
    restored = sy.Mixing.from_dict(json.loads(json.dumps(mixing.to_dict())))
    assert (restored.activation, restored.slope) == (activation, 0.3)
    for a, b in zip(mixing.matrices, restored.matrices, strict=True):
        np.testing.assert_array_equal(a, b)
    s = np.random.default_rng(0).normal(size=(50, 3))
    np.testing.assert_array_equal(restored(s), mixing(s))
    np.testing.assert_array_equal(
        restored.inverse_and_log_det(mixing(s))[1], mixing.inverse_and_log_det(mixing(s))[1]
    )
    assert pickle.loads(pickle.dumps(mixing)).slope == mixing.slope


def test_mixing_rejects_bad_input():
    mixing = sy.random_mixing(0, 3, 2, n_threshold_draws=FAST_DRAWS)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        mixing(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="slope"):
        sy.Mixing(matrices=(np.eye(2),), slope=0.0)
    with pytest.raises(ValueError, match="malformed"):
        sy.Mixing.from_dict({"activation": "xtanh"})


# --- toy densities -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(sy.TOY2D))
def test_toy2d_samplers(name):
    x = sy.sample_toy2d(0, name, 1000)
    assert x.shape == (1000, 2)
    assert x.dtype == np.float64
    assert np.all(np.isfinite(x))
    assert np.all(np.abs(x) < 10.0)
    assert x.std(axis=0).min() > 0.3  # genuinely two-dimensional spread
    np.testing.assert_array_equal(x, sy.sample_toy2d(0, name, 1000))
    assert not np.allclose(x, sy.sample_toy2d(1, name, 1000))


def test_toy2d_has_required_densities_and_errors():
    required = {"moons", "rings", "two_spirals", "checkerboard", "sine", "trimodal"}
    assert required <= set(sy.TOY2D)
    with pytest.raises(ValueError, match="moons"):
        sy.sample_toy2d(0, "banana", 10)
    with pytest.raises(ValueError, match="positive"):
        sy.sample_toy2d(0, "moons", 0)


def test_checkerboard_only_fills_black_cells():
    x = sy.sample_toy2d(0, "checkerboard", 5000) / 1.5 + 2.0
    cells = np.floor(x).astype(int)
    assert np.all((cells.sum(axis=1) % 2) == 0)


# --- presets -------------------------------------------------------------------------------

PRESET_SIZES = {
    "ivae": (40, 1000, 5, 3),
    "ivae-original": (40, 1000, 5, 3),
    "icebeem-l2": (20, 1000, 5, 2),
    "icebeem-l4": (20, 1000, 5, 4),
    "tcl": (256, 512, 20, 5),
    "tiny": (5, 100, 2, 2),
}
CONTINUOUS_PRESET_SIZES = {"continuous": (40_000, 10, 3)}  # N, D, layers


def test_every_preset_has_documented_sizes():
    assert set(sy.PRESETS) == set(PRESET_SIZES) | set(CONTINUOUS_PRESET_SIZES)
    for name in CONTINUOUS_PRESET_SIZES:
        assert isinstance(sy.PRESETS[name], sy.ContinuousConfig)


@pytest.mark.parametrize("name", list(PRESET_SIZES))
def test_presets_match_documented_sizes(name):
    n_segments, per_segment, dim, n_layers = PRESET_SIZES[name]
    config = sy.PRESETS[name]
    assert (config.n_segments, config.samples_per_segment, config.n_sources, config.n_layers) == (
        n_segments,
        per_segment,
        dim,
        n_layers,
    )
    assert config.description
    ds = sy.make_preset(name, 0)
    n = n_segments * per_segment
    assert ds.x.shape == ds.s.shape == (n, dim)
    assert ds.u.shape == (n,) and np.issubdtype(ds.u.dtype, np.integer)
    np.testing.assert_array_equal(np.bincount(ds.u), np.full(n_segments, per_segment))
    np.testing.assert_allclose(ds.mixing.inverse(ds.x), ds.s, atol=1e-8)
    assert ds.config["preset"] == name and ds.config["seed"] == 0
    np.testing.assert_array_equal(ds.x, sy.make_preset(name, 0).x)
    assert not np.allclose(ds.x, sy.make_preset(name, 1).x)


def test_preset_specifics():
    ivae = sy.PRESETS["ivae"]
    assert (ivae.activation, ivae.slope, ivae.family, ivae.convention) == (
        "leaky_relu",
        0.2,
        "uniform",
        "ivae",
    )
    for name in ("icebeem-l2", "icebeem-l4"):
        config = sy.PRESETS[name]
        assert (config.family, config.convention, config.distribution) == (
            "orthogonal",
            "icebeem",
            "gaussian",
        )


def _tcl_forward(s: np.ndarray, matrices) -> np.ndarray:
    """TCL's mixing written out in its own column convention: ``h <- A h``, leaky ReLU (0.2)
    between layers, none after the last, no bias; ``matrices`` in our row convention."""
    h = s.T
    for i, a in enumerate(matrices):
        h = a.T @ h  # TCL's A, with unit-norm columns
        if i < len(matrices) - 1:
            h = np.where(h < 0, 0.2 * h, h)
    return h.T


def test_tcl_preset_follows_tcls_recipe():
    config = sy.PRESETS["tcl"]
    assert (config.distribution, config.scale_range, config.mean_range) == (
        "laplace",
        (0.0, 1.0),
        None,
    )
    assert (config.activation, config.slope, config.family, config.convention) == (
        "leaky_relu",
        0.2,
        "uniform",
        "ivae",
    )
    assert config.transpose_matrices and not config.shared_matrix
    ds = sy.make_preset("tcl", 0, n_sources=5)
    assert ds.x.shape == ds.s.shape == (256 * 512, 5) and ds.u.shape == (256 * 512,)
    # Sources: unit-variance Laplace modulated by a factor in (0, 1] per segment and component.
    params = sy.source_params(ds)
    assert params.scales.shape == (256, 5) and params.distribution == "laplace"
    assert np.all((params.scales > 0.0) & (params.scales <= 1.0))
    assert params.scales.min() < 0.01 and params.scales.max() > 0.99
    assert np.all(params.means == 0.0)
    stds = np.array([ds.s[ds.u == k].std(axis=0) for k in range(256)])
    np.testing.assert_allclose(stds / params.scales, 1.0, atol=0.2)
    # Mixing: 5 matrices, 4 leaky ReLUs, TCL's unit-norm columns (rows here), well conditioned.
    mixing = ds.mixing
    assert mixing.n_matrices == 5
    assert not mixing.activation_before_first and not mixing.activation_after_last
    for a in mixing.matrices:
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-12)
    assert np.all(mixing.condition_numbers <= sy.condition_threshold(5))
    np.testing.assert_allclose(_tcl_forward(ds.s, mixing.matrices), ds.x, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(mixing(np.zeros((1, 5))), 0.0)  # no bias
    # The matrices are the uniform family's draws, transposed: same stream without the flag.
    plain = sy.make_preset("tcl", 0, n_sources=5, transpose_matrices=False)
    np.testing.assert_array_equal(plain.s, ds.s)
    for a, b in zip(mixing.matrices, plain.mixing.matrices, strict=True):
        np.testing.assert_array_equal(a, b.T)
    # Deterministic per seed; small variants from overrides.
    again = sy.make_preset("tcl", 0, n_sources=5)
    np.testing.assert_array_equal(again.x, ds.x)
    assert not np.allclose(sy.make_preset("tcl", 1, n_sources=5).x, ds.x)
    small = sy.make_preset("tcl", 2, n_sources=3, n_layers=2, n_segments=8, samples_per_segment=9)
    assert small.x.shape == (72, 3) and small.mixing.n_matrices == 2


def test_continuous_preset_carries_u_sources_mixing_and_scales():
    config = sy.PRESETS["continuous"]
    assert (config.distribution, config.scale_range, config.bandwidth, config.aux) == (
        "laplace",
        (0.5, 3.0),
        0.25,
        "time",
    )
    n, dim, n_layers = CONTINUOUS_PRESET_SIZES["continuous"]
    assert (config.n_samples, config.n_sources, config.n_layers) == (n, dim, n_layers)
    assert config.description
    ds = sy.make_preset("continuous", 0, n_samples=2000, n_threshold_draws=FAST_DRAWS)
    assert ds.x.shape == ds.s.shape == (2000, dim)
    assert ds.u.shape == (2000, 1) and ds.u.dtype == np.float64
    np.testing.assert_array_equal(ds.u[:, 0], np.linspace(0.0, 1.0, 2000))
    assert (ds.mixing.n_matrices, ds.mixing.activation, ds.mixing.slope) == (3, "leaky_relu", 0.2)
    assert not ds.mixing.activation_after_last
    np.testing.assert_allclose(ds.mixing.inverse(ds.x), ds.s, atol=1e-8)
    params = sy.source_params(ds)
    scales = params.scales(ds.u)
    assert np.all((scales >= 0.5) & (scales <= 3.0))
    assert np.all(scales.max(axis=0) - scales.min(axis=0) > 0.3)  # the scales do vary in t
    assert ds.config["preset"] == "continuous" and ds.config["seed"] == 0
    np.testing.assert_array_equal(
        ds.x, sy.make_preset("continuous", 0, n_samples=2000, n_threshold_draws=FAST_DRAWS).x
    )
    bigger = sy.make_preset("continuous", 1, n_sources=3, n_samples=50, n_layers=2)
    assert bigger.x.shape == (50, 3) and bigger.mixing.n_matrices == 2
    with pytest.raises(ValueError, match="n_samples"):
        sy.make_preset("continuous", 0, n_segments=4)


def test_make_preset_overrides_and_errors():
    ds = sy.make_preset("tiny", 0, n_layers=3, samples_per_segment=20)
    assert ds.x.shape == (100, 2)
    assert ds.mixing.n_matrices == 3
    with pytest.raises(ValueError, match="icebeem-l2"):
        sy.make_preset("tcl-huge", 0)
    with pytest.raises(ValueError, match="n_layer"):
        sy.make_preset("tiny", 0, n_layer=3)


@pytest.mark.parametrize("member", list(sy.MIXING_FAMILY))
def test_mixing_family_members_are_valid_ivae_overrides_with_sane_data(member):
    overrides = sy.MIXING_FAMILY[member]
    assert set(overrides) == {"activation", "slope"}
    assert overrides["activation"] in sy.ACTIVATIONS
    ds = sy.make_preset("ivae", 0, samples_per_segment=100, **overrides)
    assert ds.config["activation"] == overrides["activation"] and ds.mixing.n_matrices == 3
    assert np.all(np.isfinite(ds.x)) and np.abs(ds.x).max() < 1e3
    # The matrices dominate: leaky ReLU 0.2 (the iVAE preset) itself gives ~400 at D=5.
    assert np.linalg.cond(np.corrcoef(ds.x, rowvar=False)) < 1e4
    np.testing.assert_allclose(ds.mixing.inverse(ds.x), ds.s, atol=1e-8)


def test_mixing_family_covers_the_required_kinds():
    activations = [o["activation"] for o in sy.MIXING_FAMILY.values()]
    slopes = {o["slope"] for o in sy.MIXING_FAMILY.values() if o["activation"] == "leaky_relu"}
    assert {0.05, 0.2, 0.5} <= slopes
    assert {"xtanh", "asinh", "smooth_leaky_relu", "leaky_elu", "tanhshrink"} <= set(activations)


# --- npz datasets --------------------------------------------------------------------------


def test_npz_round_trip_with_int_labels(tmp_path):
    ds = sy.make_preset("tiny", 3)
    path = ds.save(tmp_path / "data.npz")
    loaded = sy.Dataset.load(path)
    np.testing.assert_array_equal(loaded.x, ds.x)
    np.testing.assert_array_equal(loaded.s, ds.s)
    np.testing.assert_array_equal(loaded.u, ds.u)
    assert loaded.x.dtype == ds.x.dtype and loaded.u.dtype == ds.u.dtype
    assert loaded.config == json.loads(json.dumps(ds.config))
    np.testing.assert_array_equal(loaded.mixing.inverse(ds.x), ds.mixing.inverse(ds.x))
    assert [p.name for p in tmp_path.iterdir()] == ["data.npz"]  # no temp files left over


def test_npz_round_trip_with_continuous_u_and_no_extras(tmp_path):
    s, u = sy.continuous_aux_sources(0, 300, 3, aux_dim=2, aux="uniform")
    sy.save_dataset(sy.Dataset(x=s * 2.0, s=s, u=u), tmp_path / "cont.npz")
    loaded = sy.load_dataset(tmp_path / "cont.npz")
    np.testing.assert_array_equal(loaded.u, u)
    assert loaded.u.dtype == np.float64 and loaded.u.shape == (300, 2)
    assert loaded.mixing is None and loaded.config is None


def test_load_tolerates_x_only_and_x_u_files(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3))
    np.savez(tmp_path / "x.npz", x=x)
    only_x = sy.load_dataset(tmp_path / "x.npz")
    assert only_x.s is None and only_x.u is None
    np.savez(tmp_path / "xu.npz", x=x, u=np.arange(20) % 4)
    assert sy.load_dataset(tmp_path / "xu.npz").u.shape == (20,)


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "d.npz"
    sy.make_preset("tiny", 0).save(path)
    second = sy.make_preset("tiny", 1)
    second.save(path)
    np.testing.assert_array_equal(sy.load_dataset(path).x, second.x)


def test_save_is_byte_deterministic_and_refuses_a_folder(tmp_path):
    ds = sy.make_preset("tiny", 0)
    assert ds.save(tmp_path / "a.npz").read_bytes() == ds.save(tmp_path / "b.npz").read_bytes()
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(OSError, match="folder.npz"):
        ds.save(tmp_path / "folder.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "folder.npz"]
    assert not any((tmp_path / "folder.npz").iterdir())


def test_dataset_labels_must_have_integer_dtype_even_when_whole():
    # nica.fitting.data.check_labels accepts whole floats; the file format stores labels as
    # integers.
    with pytest.raises(ValueError, match="Dataset: 1-D 'u' must hold integer segment labels"):
        sy.Dataset(x=X, u=np.arange(10.0))
    sy.Dataset(x=X, u=np.arange(10.0)[:, None])  # a continuous u is (N, d)


X = np.random.default_rng(1).normal(size=(10, 2))
X_NAN = X.copy()
X_NAN[3, 1] = np.nan

BAD_FILES = {
    "missing-x": ({"s": X}, "missing required key 'x'"),
    "x-1d": ({"x": X[:, 0]}, r"'x' must be 2-D \(N, D\), got shape \(10,\)"),
    "x-nan": ({"x": X_NAN}, r"'x' contains NaN or Inf \(1 of 20 values; first at \[3, 1\]\)"),
    "x-strings": ({"x": np.full((10, 2), "a")}, r"'x' must be numeric \(real\), got dtype <U1"),
    "s-shape": ({"x": X, "s": X[:, :1]}, "'s' must have the shape of 'x'"),
    "u-length": ({"x": X, "u": np.arange(9)}, "'u' has 9 rows but 'x' has 10"),
    "u-float-1d": ({"x": X, "u": np.linspace(0, 1, 10)}, "integer segment labels"),
    "u-negative": ({"x": X, "u": np.arange(10) - 1}, "non-negative"),
    "u-3d": (
        {"x": X, "u": np.zeros((10, 1, 1))},
        r"'u' must have shape \(10,\) or \(10, d\), got \(10, 1, 1\)",
    ),
    "bad-config-json": ({"x": X, "config_json": np.array("{not json")}, "not valid JSON"),
    "bad-mixing": ({"x": X, "mixing_json": np.array('{"activation": "xtanh"}')}, "mixing_json"),
    "mixing-dim": (
        {"x": X, "mixing_json": np.array(json.dumps(sy.Mixing((np.eye(3),)).to_dict()))},
        "mixing dimension 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_loading_malformed_npz_raises_clear_error(tmp_path, case):
    arrays, match = BAD_FILES[case]
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as info:
        sy.load_dataset(path)
    message = str(info.value)
    assert message.startswith("data.npz: ") and "\n" not in message


@pytest.mark.parametrize(
    ("writer", "match"),
    [
        (lambda p: p.write_text("hello"), "cannot read as .npz"),
        (lambda p: np.save(p.with_suffix(".npy"), X) or p.with_suffix(".npy").rename(p), "npz"),
        (lambda p: None, "no such file"),
    ],
    ids=["text-file", "npy-file", "missing-file"],
)
def test_loading_non_npz_raises_clear_error(tmp_path, writer, match):
    path = tmp_path / "data.npz"
    writer(path)
    with pytest.raises(ValueError, match=match):
        sy.load_dataset(path)


def test_validate_arrays_is_reusable():
    sy.validate_arrays(X, X, np.arange(10))
    with pytest.raises(ValueError, match=r"^cli: 'x' must be 2-D"):
        sy.validate_arrays(X[None], source="cli")
    with pytest.raises(ValueError, match="Dataset: 'u' has 3 rows"):
        sy.Dataset(x=X, u=np.arange(3))


def test_mcc_floor_script_smoke(tmp_path):
    from experiments import mcc_floor

    table = mcc_floor.main(["--presets", "tiny", "--out", str(tmp_path)])
    assert (tmp_path / "report.md").read_text().startswith(table.rstrip())
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["preset"] for r in rows] == ["tiny"]
    row = next(line for line in table.splitlines() if line.startswith("| tiny"))
    pearson, spearman = (float(v) for v in row.strip("| ").split("|")[2:4])
    assert 0.0 < pearson < 1.0 and 0.0 < spearman < 1.0
