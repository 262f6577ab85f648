"""The method registry (nica.methods.METHODS): every method behind one protocol, checked alike."""

import numpy as np
import pytest

from nica.methods import METHODS, MethodFit, get_method, with_settings
from synthetic import make_preset

#: Settings small enough for a fit in seconds, by method.
TINY = {
    "conditional": {"epochs": 2, "restarts": 1, "depth": 2, "eval_every": 1},
    "unconditional": {"epochs": 2, "restarts": 1, "depth": 2, "eval_every": 1},
    "fastica": {},
    "ivae": {"epochs": 2, "hidden": 8, "batch_size": 50},
    "tcl": {"init_steps": 0, "steps": 20, "batch_size": 50, "depth": 2},
}


@pytest.fixture(scope="module")
def tiny_data():
    return [make_preset("tiny", seed) for seed in (0, 1)]


def test_every_method_is_registered_once_under_its_name():
    assert list(METHODS) == ["conditional", "unconditional", "fastica", "ivae", "tcl"]
    assert set(TINY) == set(METHODS)
    for name, method in METHODS.items():
        assert method.name == name and get_method(name) is method
        assert method.description and "\n" not in method.description


def test_unknown_method_is_one_line_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown method 'vae'; known: conditional, ") as err:
        get_method("vae")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", list(METHODS))
def test_config_is_validated_with_one_line_errors(name):
    method = METHODS[name]
    config = method.config(TINY[name], 3)
    assert isinstance(config, method.config_type)
    record = config.to_dict()
    assert record.get("seed", record.get("random_state")) == 3
    with pytest.raises(ValueError, match="unknown .*setting.*'bogus'") as err:
        method.config({"bogus": 1}, 0)
    assert "\n" not in str(err.value)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        METHODS["fastica"].config({"max_iter": 0}, 0)
    with pytest.raises(ValueError, match="elbo_weights"):
        METHODS["ivae"].config({"elbo_weights": (1.0,)}, 0)
    with pytest.raises(ValueError, match="unknown IVAEConfig setting"):
        with_settings(METHODS["ivae"].config({}, 0), {"steps": 3})


@pytest.mark.parametrize("name", list(METHODS))
def test_tiny_fit_gives_sources_of_every_seed(name, tiny_data):
    method = METHODS[name]
    xs, us = [d.x for d in tiny_data], [d.u for d in tiny_data]
    fits = method.fit_seeds(xs, us, seeds=[0, 1], config=method.config(TINY[name], 0))
    assert len(fits) == 2 and all(isinstance(f, MethodFit) for f in fits)
    for fit, data in zip(fits, tiny_data, strict=True):
        assert fit.diverged is None
        assert fit.sources.shape == data.x.shape and np.all(np.isfinite(fit.sources))
    # The nica models' diagnostics are there exactly when the method has an exact likelihood.
    assert (fits[0].val_nll is not None) == method.exact_likelihood
    assert (fits[0].history is not None) == method.exact_likelihood
    one = method.fit(xs[1], us[1], config=method.config(TINY[name], 1))
    np.testing.assert_allclose(one.sources, fits[1].sources, atol=1e-4)  # seed 1 alone


@pytest.mark.parametrize("name", list(METHODS))
def test_target_is_what_the_sources_are_scored_against(name):
    method = METHODS[name]
    s = np.array([[-1.0, 2.0], [0.5, -3.0]])
    expected = {"s": s, "|s|": np.abs(s)}[method.target_name]
    np.testing.assert_array_equal(method.target(s), expected)


def test_what_each_method_reads():
    uses_u = {name for name, method in METHODS.items() if method.uses_u}
    assert uses_u == {"conditional", "ivae", "tcl"}
    assert {name for name, m in METHODS.items() if m.labels_only} == {"tcl"}
    assert {name for name, m in METHODS.items() if m.exact_likelihood} == {
        "conditional",
        "unconditional",
    }
    assert {name for name, m in METHODS.items() if not m.batched} == {"fastica"}
