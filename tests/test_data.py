"""nica.fitting.data: the one validation path (observations, labels) and the degenerate-data
guard."""

import dataclasses

import numpy as np
import pytest

from nica.fitting.data import (
    ISOLATION,
    MAX_CONDITION,
    MIN_OUTLIER_Z,
    WARN_ISOLATION,
    Observations,
    OutlierWarning,
    Standardisation,
    check_labels,
    check_observations,
    isolation,
    load_observations,
    standardise,
)
from synthetic import make_preset

RNG = np.random.default_rng(0)
X = RNG.normal(size=(10, 2))


def _one_line(err: pytest.ExceptionInfo, where: str = "data") -> str:
    message = str(err.value)
    assert message.startswith(f"{where}: ") and "\n" not in message, message
    return message


# --- observations --------------------------------------------------------------------------


def test_check_observations_returns_float64_record():
    obs = check_observations(X.astype(np.float32), np.arange(10) % 3, X.astype(np.int64))
    assert isinstance(obs, Observations)
    assert obs.x.dtype == np.float64 and obs.s.dtype == np.float64
    np.testing.assert_array_equal(obs.x, X.astype(np.float32))
    assert obs.u.dtype == np.int64  # u keeps its dtype: labels vs covariates decided later
    with pytest.raises(dataclasses.FrozenInstanceError):
        obs.x = X


X_NAN = X.copy()
X_NAN[3, 1] = np.nan
BAD_OBSERVATIONS = {
    "x-1d": ({"x": X[:, 0]}, r"'x' must be 2-D \(N, D\), got shape \(10,\)"),
    "x-empty": ({"x": X[:0]}, r"'x' is empty or has a single sample, shape \(0, 2\)"),
    "x-one-row": ({"x": X[:1]}, "'x' is empty or has a single sample"),
    "x-no-columns": ({"x": X[:, :0]}, "'x' is empty"),
    "x-nan": ({"x": X_NAN}, r"'x' contains NaN or Inf \(1 of 20 values; first at \[3, 1\]\)"),
    "x-text": ({"x": np.full((10, 2), "a")}, r"'x' must be numeric \(real\), got dtype <U1"),
    "x-complex": ({"x": X + 1j}, "'x' must be numeric"),
    "u-length": ({"x": X, "u": np.arange(9)}, r"'u' has 9 rows but 'x' has 10; 'u' must have"),
    "u-3d": ({"x": X, "u": np.zeros((10, 1, 1))}, r"'u' must have shape \(10,\) or \(10, d\)"),
    "u-no-columns": ({"x": X, "u": np.zeros((10, 0))}, "'u' must have shape"),
    "u-inf": ({"x": X, "u": np.r_[np.inf, np.zeros(9)]}, r"'u' contains NaN or Inf \(1 of"),
    "s-shape": ({"x": X, "s": X[:, :1]}, r"'s' must have the shape of 'x' \(10, 2\)"),
    "s-nan": ({"x": X, "s": X_NAN}, "'s' contains NaN or Inf"),
}


@pytest.mark.parametrize("case", BAD_OBSERVATIONS.values(), ids=BAD_OBSERVATIONS.keys())
def test_check_observations_refuses_with_one_line(case):
    arrays, match = case
    with pytest.raises(ValueError, match=match) as err:
        check_observations(**arrays, where="f.npz")
    _one_line(err, "f.npz")


def test_load_observations_reads_and_names_the_file(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=X, u=np.arange(10) % 2)
    obs = load_observations(path)
    np.testing.assert_array_equal(obs.x, X)
    assert obs.s is None and obs.u.shape == (10,)
    np.savez(path, u=np.arange(10))
    with pytest.raises(ValueError, match=r"no 'x' array \(keys: u\)") as err:
        load_observations(path)
    _one_line(err, str(path))
    np.savez(path, x=X_NAN)
    with pytest.raises(ValueError, match="'x' contains NaN") as err:
        load_observations(path)
    _one_line(err, str(path))


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "u",
    [np.array([0, 2, 1, 2]), np.array([0.0, 2.0, 1.0, 2.0]), np.array([0, 2, 1, 2], np.uint8)],
    ids=["int", "whole-float", "uint8"],
)
def test_check_labels_accepts_integer_valued_labels(u):
    labels = check_labels(u)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, [0, 2, 1, 2])


@pytest.mark.parametrize(
    ("u", "match"),
    [
        (np.array([0.0, 0.5]), "segment labels u must be integers, got dtype float64"),
        (np.array([0.0, np.nan]), "segment labels u must be integers"),
        (np.array([0, -1]), "segment labels u must be non-negative, got minimum -1"),
        (np.array([[0, 1]]), r"segment labels u must be 1-D \(N,\), got shape \(1, 2\)"),
        (np.array(["a", "b"]), "segment labels u must be integers, got dtype <U1"),
        (np.array([0, 2**40]), "must fit int32"),
    ],
    ids=["fraction", "nan", "negative", "2d", "text", "huge"],
)
def test_check_labels_refuses_with_one_line(u, match):
    with pytest.raises(ValueError, match=match) as err:
        check_labels(u, where="f.npz")
    _one_line(err, "f.npz")


# --- standardise: legitimate data pass -----------------------------------------------------


def _mixed(r, s):
    return s @ r.normal(size=(s.shape[1], s.shape[1]))


LEGITIMATE = {
    "laplace-40000x5": lambda r: r.laplace(size=(40000, 5)),
    "student-t3-40000x5": lambda r: r.standard_t(3, size=(40000, 5)),
    "student-t3-mixed": lambda r: _mixed(r, r.standard_t(3, size=(40000, 5))),
    "lognormal-40000x5": lambda r: r.lognormal(0.0, 1.0, size=(40000, 5)),
    "sparse-bernoulli": lambda r: (r.random((40000, 5)) < 0.02) * 1.0,
    "counts-and-timestamps": lambda r: np.c_[
        r.poisson(0.3, (5000, 2)), 1.7e9 + np.arange(5000.0), r.normal(size=5000)
    ],
    "tiny-values": lambda r: 1e-200 * r.normal(size=(500, 3)),
    "preset-ivae": lambda r: make_preset("ivae", 0).x,
    "preset-icebeem-l4": lambda r: make_preset("icebeem-l4", 0).x,
    "preset-ivae-20-sources": lambda r: make_preset("ivae", 0, n_sources=20).x,
}


@pytest.mark.parametrize("make", LEGITIMATE.values(), ids=LEGITIMATE.keys())
def test_standardise_passes_legitimate_data_exactly(make):
    x = make(np.random.default_rng(1))
    z, st = standardise(x)
    assert isinstance(st, Standardisation) and z.dtype == np.float64 and z.shape == x.shape
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(st.apply(x), z)
    np.testing.assert_allclose(z * st.scale + st.mean, x, rtol=1e-12, atol=1e-12 * np.abs(x).max())


def test_standardise_disabled_returns_x_and_identity():
    x = RNG.laplace(size=(300, 3)) * [1.0, 10.0, 100.0] + 5.0
    z, st = standardise(x.astype(np.float32), enabled=False)
    assert z.dtype == np.float64
    np.testing.assert_array_equal(z, x.astype(np.float32))
    np.testing.assert_array_equal(st.mean, np.zeros(3))
    np.testing.assert_array_equal(st.scale, np.ones(3))


def test_standardisation_apply_checks_the_width():
    _, st = standardise(X)
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 2\), got \(4, 3\)"):
        st.apply(np.zeros((4, 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.mean = np.zeros(2)


# --- standardise: degenerate data are refused, naming the column or row ---------------------

BASE = np.random.default_rng(2).laplace(size=(1000, 4))


def _with_row(i: int, factor: float) -> np.ndarray:
    x = BASE.copy()
    x[i] *= factor
    return x


def _with_value(i: int, j: int, value: float) -> np.ndarray:
    x = BASE.copy()
    x[i, j] = value
    return x


DEGENERATE = {
    "duplicate-columns": (np.c_[BASE, BASE[:, 1]], r"columns 1 and 4 are identical or collinear"),
    "scaled-negated-copy": (
        np.c_[BASE[:, :2], 3.0 - 2.0 * BASE[:, 0], BASE[:, 2:]],
        r"columns 0 and 2 are identical or collinear \(correlation -1\.0",
    ),
    "combination-of-three": (
        np.c_[BASE, BASE[:, 0] + BASE[:, 3] - BASE[:, 2]],
        r"column 4 is \(numerically\) a linear combination of columns 0, 2, 3",
    ),
    "near-combination": (
        np.c_[BASE, BASE[:, 0] + BASE[:, 2] + 1e-5 * RNG.normal(size=1000)],
        r"column 4 is \(numerically\) a linear combination of columns 0, 2 .*condition number",
    ),
    "row-times-1e30": (_with_row(7, 1e30), r"row 7 is a gross outlier in column \d"),
    "row-times-1e6": (_with_row(123, 1e6), r"row 123 is a gross outlier in column \d"),
    "x-times-1e200": (BASE * 1e200, r"column \d holds a value of magnitude .*e\+200"),
    "one-huge-value": (
        _with_value(5, 0, 1e160),
        r"column 0 holds a value of magnitude 1e\+160 \(row 5\)",
    ),
    "constant-column": (
        np.c_[BASE[:, :2], np.full(1000, 3.5), BASE[:, 2:]],
        r"column 2 is constant \(every value is 3\.5\)",
    ),
    "numerically-constant": (
        np.c_[BASE, 1.0 + 1e-14 * RNG.normal(size=1000)],
        "column 4 is numerically constant",
    ),
    "fewer-rows-than-columns": (RNG.normal(size=(4, 6)), "'x' has 4 rows for 6 columns"),
}


@pytest.mark.parametrize("enabled", [True, False], ids=["standardised", "raw"])
@pytest.mark.parametrize("case", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_standardise_refuses_degenerate_data_in_one_line(case, enabled):
    x, match = case
    with pytest.raises(ValueError, match=match) as err:
        standardise(x, enabled=enabled, where="f.npz")
    _one_line(err, "f.npz")


RAW_ONLY = {
    "tiny-values": (1e-200 * BASE, "column 0 .* out of the float32 model's range"),
    "large-values": (1e20 * BASE, "column 0 .* out of the float32 model's range"),
    "offset-beyond-float32": (1e6 + 1e-3 * BASE, "column 0 varies by .* below float32"),
}


@pytest.mark.parametrize("case", RAW_ONLY.values(), ids=RAW_ONLY.keys())
def test_unstandardised_data_must_survive_float32(case):
    x, match = case
    with pytest.raises(ValueError, match=match) as err:
        standardise(x, enabled=False)
    _one_line(err)
    z, _ = standardise(x)  # standardising makes them fine
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-9)


def test_thresholds_are_bracketed():
    # Outliers: a row just inside ISOLATION x the next rows' distance passes, one just beyond
    # is refused; so are several such rows (up to OUTLIER_RANK), each named.
    median = np.median(BASE[:, 0])
    next_far = (
        isolation(BASE)[1][-1, 0] * 1.482602218505602 * np.median(np.abs(BASE[:, 0] - median))
    )  # the 5th farthest row's distance, in x's units (the planted row becomes the 1st)
    for factor, refused in [(0.97 * ISOLATION, False), (1.03 * ISOLATION, True)]:
        x = BASE.copy()
        x[5, 0] = median + factor * next_far
        if refused:
            with pytest.raises(ValueError, match="row 5 is a gross outlier in column 0"):
                standardise(x)
        else:
            standardise(x)
    # Between WARN_ISOLATION and ISOLATION: a one-line warning, and the data pass.
    x = BASE.copy()
    x[5, 0] = median + 0.5 * (WARN_ISOLATION + ISOLATION) * next_far
    with pytest.warns(OutlierWarning, match=r"row 5 lies far out in column 0") as caught:
        standardise(x)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    x = BASE.copy()
    x[[3, 9], 1] = 1e4  # two corrupted rows: neither hides the other
    with pytest.raises(ValueError, match=r"row [39] is a gross outlier in column 1.*1 more"):
        standardise(x)
    # A tiny sample's isolated value within MIN_OUTLIER_Z robust deviations is data.
    column = [0.0, 0.0, 0.0, 0.0, 0.01, 0.3, -0.3, 0.35, -0.35, 1.0]
    small = np.c_[column, np.arange(10.0) % 3]
    rows, z, ratio = isolation(small)
    assert rows[0, 0] == 9 and ratio[0, 0] > ISOLATION and z[0, 0] < MIN_OUTLIER_Z
    standardise(small)
    # Collinearity: noise giving a condition number well below the limit passes.
    noise = 1e-3  # condition ~1e6 < MAX_CONDITION; 1e-5 gives ~1e10 (refused above)
    x = np.c_[BASE, BASE[:, 0] + BASE[:, 2] + noise * RNG.normal(size=1000)]
    z, _ = standardise(x)
    eigenvalues = np.linalg.eigvalsh(z.T @ z / len(z))
    assert 1e4 < eigenvalues[-1] / eigenvalues[0] < MAX_CONDITION
