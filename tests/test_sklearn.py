"""nica.sklearn.NonlinearICA: nica.fit as a scikit-learn transformer, and scikit-learn's own
estimator checks on it (those that do not apply are skipped, each with its reason)."""

import importlib
import inspect
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import estimator_checks  # noqa: E402

import nica  # noqa: E402
from nica.sklearn import PARAMETER_OF, NonlinearICA  # noqa: E402
from synthetic import make_preset  # noqa: E402

#: A tiny fit: one initialisation, a search between depths 1 and 2 (so ``depth_`` is chosen).
SMALL = dict(epochs=3, restarts=1, depth=[1, 2], eval_every=1, batch_size=100)

#: The estimator checks' fits: as short as a fit can be (they fit dozens of times).
TINY = dict(epochs=2, restarts=1, depth=1, eval_every=1, batch_size=32)

#: Both models go through the checks: the checks' ``fit(X, y)`` pass a target ``y``, which the
#: default (``conditional=True``) reads as segment labels ``u`` and ``conditional=False``
#: ignores.
CHECKED = {
    "unconditional": NonlinearICA(**TINY, conditional=False),
    "conditional": NonlinearICA(**TINY),
}

#: Checks skipped for every model, with the reason.
SKIPPED = {
    "check_array_api_input": (
        "nica computes in JAX on NumPy input; array-API inputs (torch, CuPy, array-api-strict)"
        " are not supported"
    ),
    "check_methods_subset_invariance": (
        "nica computes in float32, and XLA compiles each batch shape into its own program: a"
        " row's log-likelihood may differ in the last float32 bit (4.8e-7 of 3.6) between a"
        " batch and a subset of it, above the check's 1e-7 tolerance"
    ),
}
#: Checks that test how X is handled, never how y is read: run on the unconditional model only
#: (on the conditional one each would compile and fit the same again, for about 1.5 s each).
X_ONLY = (
    "check_dont_overwrite_parameters",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_fit_check_is_fitted",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
)
#: Checks skipped for the conditional model (``fit(X, y)`` reads ``y`` as ``u``).
SKIPPED_CONDITIONAL = {
    **SKIPPED,
    "check_methods_sample_order_invariance": (
        "calls score_samples(X) without y: the conditional model's log-likelihood needs u"
    ),
    "check_dtype_object": (
        "expects 'Unknown label type' for an object-dtype y; nica reads y as u and refuses"
        " an object-dtype u with its own one-line message ('u' must be numeric (real))"
    ),
    **{name: "tests X only: run on the unconditional model" for name in X_ONLY},
}
SKIPS = {"unconditional": SKIPPED, "conditional": SKIPPED_CONDITIONAL}


@pytest.fixture(scope="module")
def data():
    return make_preset("tiny", 0)


@pytest.fixture(scope="module")
def fitted(data):
    return NonlinearICA(**SMALL).fit(data.x, data.u)


def test_parameters_are_the_flat_settings_with_their_defaults():
    """The signature is written out (scikit-learn reads it): it must not drift from FitConfig."""
    parameters = inspect.signature(NonlinearICA.__init__).parameters
    settings = {
        name: p.default for name, p in parameters.items() if name not in ("self", "progress")
    }
    flat = {PARAMETER_OF.get(k, k): v for k, v in nica.FitConfig().flat().items()}
    assert PARAMETER_OF == {"warm_start": "init"} and "warm_start" not in settings
    assert settings == flat
    assert list(settings) == list(flat)  # the same order
    assert parameters["progress"].default is None
    assert all(p.kind is p.KEYWORD_ONLY for name, p in parameters.items() if name != "self")
    assert NonlinearICA().get_params() == {**flat, "progress": None}


def test_init_is_the_warm_start_setting(data):
    """``init`` reaches the fit as its ``warm_start``; a bad one is nica's one-line error."""
    settings = {**SMALL, "depth": 2}
    fitted = NonlinearICA(**settings, init="linear").fit(data.x, data.u).model_
    assert fitted.config.restarts.warm_start == "linear" and "warm_start" in fitted.histories
    with pytest.raises(ValueError, match="unknown warm_start 'cubic'"):
        NonlinearICA(**settings, init="cubic").fit(data.x, data.u)


def test_clone_and_get_set_params_round_trip():
    estimator = NonlinearICA(epochs=5, depth=[1, 2], progress="auto")
    copy = clone(estimator)
    assert copy is not estimator and copy.get_params() == estimator.get_params()
    assert copy.get_params()["depth"] == [1, 2] and copy.get_params()["epochs"] == 5
    assert copy.set_params(seed=3, conditional=False) is copy
    assert (copy.seed, copy.conditional, estimator.seed) == (3, False, 0)
    with pytest.raises(ValueError, match="Invalid parameter 'learning_rte'"):
        copy.set_params(learning_rte=0.1)


def test_fit_sets_the_fitted_attributes(fitted, data):
    assert isinstance(fitted.model_, nica.FittedModel)
    assert fitted.n_features_in_ == fitted.n_components_ == data.x.shape[1]
    assert fitted.depth_ == fitted.model_.depth_search["chosen"] in (1, 2)
    assert fitted.conditional_ and fitted.model_.aux is not None
    assert not hasattr(fitted, "feature_names_in_")  # a plain array has no column names
    assert list(fitted.get_feature_names_out()) == ["nonlinearica0", "nonlinearica1"]


def test_u_as_y_or_as_u_is_the_same_fit_as_nica_fit(fitted, data):
    by_keyword = NonlinearICA(**SMALL).fit(data.x, u=data.u)
    direct = nica.fit(data.x, data.u, progress=None, **SMALL)
    sources = fitted.transform(data.x)
    assert sources.shape == data.x.shape and sources.dtype == np.float64
    np.testing.assert_array_equal(by_keyword.transform(data.x), sources)
    np.testing.assert_array_equal(direct.transform(data.x), sources)


def test_without_u_or_with_conditional_false_the_unconditional_model(data):
    """As nica.fit: no u, or conditional=False (then u is ignored, by fit and by score)."""
    settings = {**SMALL, "depth": 1}
    plain = NonlinearICA(**settings).fit(data.x)
    ignoring = NonlinearICA(**settings, conditional=False).fit(data.x, data.u)
    assert not plain.conditional_ and not ignoring.conditional_
    np.testing.assert_array_equal(plain.transform(data.x), ignoring.transform(data.x))
    assert ignoring.score(data.x, data.u) == plain.score(data.x) == ignoring.score(data.x)


def test_transform_then_inverse_transform_round_trip(fitted, data):
    back = fitted.inverse_transform(fitted.transform(data.x))
    np.testing.assert_allclose(back, data.x, rtol=1e-3, atol=1e-3)


def test_score_is_the_mean_exact_log_likelihood(fitted, data):
    expected = fitted.model_.log_likelihood(data.x, data.u)
    samples = fitted.score_samples(data.x, data.u)
    assert samples.shape == (data.x.shape[0],)
    np.testing.assert_array_equal(samples, expected)
    np.testing.assert_array_equal(fitted.score_samples(data.x, u=data.u), expected)
    score = fitted.score(data.x, data.u)
    assert isinstance(score, float) and score == pytest.approx(expected.mean(), rel=1e-12)
    with pytest.raises(ValueError, match=r"the model is conditional \(Eq. 4\): pass u"):
        fitted.score(data.x)


def test_pipeline_with_a_scaler_round_trip(data):
    pipe = Pipeline([("scale", StandardScaler()), ("ica", NonlinearICA(**SMALL))])
    sources = pipe.fit(data.x, data.u).transform(data.x)
    assert sources.shape == data.x.shape and pipe.named_steps["ica"].conditional_
    np.testing.assert_allclose(pipe.inverse_transform(sources), data.x, rtol=1e-3, atol=1e-3)
    assert np.isfinite(pipe.score(data.x, data.u))  # y reaches NonlinearICA.score as u


def test_before_fit_not_fitted_error(data):
    estimator = NonlinearICA()
    for method in (estimator.transform, estimator.inverse_transform, estimator.score):
        with pytest.raises(NotFittedError):
            method(data.x)


def test_one_line_value_errors(fitted, data):
    with pytest.raises(ValueError, match="as y or as u, not both"):
        NonlinearICA(**SMALL).fit(data.x, data.u, u=data.u)
    for method in (fitted.score, fitted.score_samples):
        with pytest.raises(ValueError, match="as y or as u, not both"):
            method(data.x, data.u, u=data.u)
    wide = np.hstack([data.x, data.x[:, :1]])
    with pytest.raises(ValueError, match=r"expecting 2 features as input: got shape \(500, 3\)"):
        fitted.transform(wide)
    with pytest.raises(ValueError, match=r"S has shape \(500, 3\)"):
        fitted.inverse_transform(wide)
    with pytest.raises(ValueError, match=r"1 feature\(s\) \(shape=\(500, 1\)\) .* minimum of 2"):
        NonlinearICA(**SMALL).fit(data.x[:, :1])
    # Bad settings are nica's one-line errors, at fit (before the data is read).
    with pytest.raises(ValueError, match="unknown gradient mode 'natural'"):
        NonlinearICA(gradient="natural").fit(data.x)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        NonlinearICA(epochs=0).fit(np.zeros((1, 1)))


def test_feature_names_of_a_data_frame(data):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(data.x, columns=["left", "right"])
    estimator = NonlinearICA(**SMALL).fit(frame, data.u)
    assert list(estimator.feature_names_in_) == ["left", "right"]
    np.testing.assert_array_equal(estimator.transform(frame), estimator.model_.transform(data.x))


def test_missing_scikit_learn_is_a_one_line_import_error(monkeypatch):
    for name in [n for n in sys.modules if n.partition(".")[0] == "sklearn"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails
    monkeypatch.delitem(sys.modules, "nica.sklearn")
    with pytest.raises(ImportError, match=r"pip install scikit-learn.*nica\[baselines\]") as err:
        importlib.import_module("nica.sklearn")
    assert "\n" not in str(err.value)


def test_import_nica_does_not_import_scikit_learn():
    code = "import sys, nica; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _estimator_checks():
    """``pytest.param(estimator, check)`` of every scikit-learn check, the skipped marked."""
    generator = getattr(estimator_checks, "estimator_checks_generator", None)
    if generator is None:  # scikit-learn < 1.6
        yield pytest.param(None, None, marks=pytest.mark.skip(reason="scikit-learn < 1.6"))
        return
    for label, estimator in CHECKED.items():
        for instance, check in generator(estimator, legacy=True):
            name = check.func.__name__
            options = ",".join(f"{k}={v}" for k, v in check.keywords.items())
            skip = SKIPS[label].get(name)
            marks = [pytest.mark.skip(reason=skip)] if skip else []
            check_id = f"{label}-{name}" + (f"({options})" if options else "")
            yield pytest.param(instance, check, marks=marks, id=check_id)


ESTIMATOR_CHECKS = list(_estimator_checks())


def test_skipped_checks_exist():
    """A skip names a check scikit-learn still runs (a renamed one must be renamed here)."""
    names = {p.values[1].func.__name__ for p in ESTIMATOR_CHECKS if p.values[1] is not None}
    assert not {*SKIPPED_CONDITIONAL} - names


@pytest.mark.filterwarnings("ignore::nica.IdentifiabilityWarning")
@pytest.mark.parametrize("estimator, check", ESTIMATOR_CHECKS)
def test_scikit_learn_estimator_check(estimator, check):
    check(estimator)
