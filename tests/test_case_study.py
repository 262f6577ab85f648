"""experiments/case_study_digits.py: linear ICA's exact density, the decoder's directions, and a
smoke run (written, then resumed without refitting)."""

import json
import math

import jax
import numpy as np
import pytest

from experiments import case_study_digits as study
from experiments import flowjax_flows
from nica.apps.density import Preprocessing, gaussian_log_likelihood
from nica.fitting.build import build_model
from nica.fitting.config import FitConfig
from nica.fitting.data import Standardisation
from nica.fitting.fitted import FittedModel

pytest.importorskip("sklearn")


def test_linear_ica_density_with_one_gaussian_per_source_is_the_full_gaussian():
    """FastICA's W whitens the training rows, so with one Gaussian per source the density
    (log|det W| included) is the maximum-likelihood full-covariance Gaussian's."""
    rng = np.random.default_rng(0)
    z = rng.laplace(size=(600, 4)) @ rng.normal(size=(4, 4)) + rng.normal(size=4)
    train, val, test = z[:400], z[400:500], z[500:]
    density, info = study.fit_linear_ica_density(train, val, seed=0, sizes=(1,))
    assert info["mixture_sizes"] == [1, 1, 1, 1]
    expected = gaussian_log_likelihood(train, test)
    np.testing.assert_allclose(density.log_likelihood(test), expected, rtol=1e-5, atol=1e-5)
    # Non-Gaussian sources: the validation rows pick larger mixtures, the likelihood rises.
    richer, info = study.fit_linear_ica_density(train, val, seed=0, sizes=(1, 2, 3))
    assert max(info["mixture_sizes"]) > 1
    assert richer.log_likelihood(val).mean() > density.log_likelihood(val).mean()
    assert richer.n_parameters == 16 + 4 + sum(3 * k - 1 for k in info["mixture_sizes"])


def test_describe_components_contrast_and_class_share():
    """A source that copies pixel 3 has its contrast image there; one that is the class has
    all its variance between classes."""
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 50)
    pixels = rng.integers(0, 17, size=(200, 64)).astype(float)
    s = np.stack([pixels[:, 3], labels + 0.0, rng.normal(size=200)], axis=1)
    described = study.describe_components(s, labels, pixels)
    assert described["contrast"].shape == (3, 64) and described["class_means"].shape == (3, 4)
    assert np.argmax(described["contrast"][0]) == 3 and described["contrast"][0, 3] > 10
    assert described["class_share"][1] == pytest.approx(1.0)
    assert described["class_share"][2] < 0.1
    assert described["log_scale_spread"].shape == (3,)


def test_decoder_directions_match_finite_differences_of_the_exact_inverse():
    dim = 4
    config = FitConfig().replace(depth=2, conditional=False)
    model = build_model(config, dim, None, key=jax.random.key(1))
    rng = np.random.default_rng(1)
    standardisation = Standardisation(rng.normal(size=dim), rng.uniform(0.5, 2.0, size=dim))
    fitted = FittedModel(model, config, standardisation, None)
    pixels = Preprocessing(logit=True, low=0, high=16, dequantise=True)
    v0, scales = rng.uniform(2.0, 15.0, size=dim), rng.uniform(0.5, 2.0, size=dim)
    directions = study.decoder_directions(fitted, pixels, v0, scales)
    s0 = fitted.transform(pixels.forward_and_log_det(v0[None])[0])[0]
    step = 1e-2
    for i in range(dim):
        moved = np.stack([s0 + step * scales[i] * np.eye(dim)[i] * sign for sign in (1, -1)])
        up, down = pixels.inverse(fitted.inverse(moved))
        np.testing.assert_allclose(directions[i], (up - down) / (2 * step), rtol=0.02, atol=0.02)


def test_case_study_smoke_writes_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(flowjax_flows, "available", lambda: False)  # flows: density_real's tests
    models = ["nica-conditional", "fastica", "gaussian", "maf"]
    argv = ["--smoke", "--out", str(tmp_path), "--models", *models]
    record = study.main(argv)
    assert record["skipped"] == ["maf"]
    assert [r["model"] for r in record["records"]] == ["nica-conditional", "fastica", "gaussian"]
    rows = {(r["model"], r["key"]): r for r in record["rows"]}
    assert set(rows) == {
        ("nica-conditional", "test_ll_given_class"),
        ("nica-conditional", "class_gaussian_test_ll_given_class"),
        ("nica-conditional", "test_ll"),
        ("fastica", "test_ll"),
        ("gaussian", "test_ll"),
    }
    assert all(math.isfinite(r["test_ll_mean"]) for r in record["rows"])
    stab = record["stability"]
    reliability = np.array(stab["reliability"])
    assert reliability.shape == (64,) and np.all((0 <= reliability) & (reliability <= 1))
    assert sorted(stab["order"]) == list(range(64)) and len(stab["seeds"]) == 2
    most, least = study.shown_components(stab)
    assert len(most) == len(least) == study.SHOWN and not set(most) & set(least)
    assert set(stab["pictures"]) == {str(i) for i in most + least}
    assert all(len(p["contrast"]) == len(p["decoder"]) == 64 for p in stab["pictures"].values())
    # Ten classes for 64 sources: nica warns, and the report quotes it.
    assert any("IdentifiabilityWarning" in w for w in stab["warnings"])
    report = (tmp_path / "report.md").read_text()
    assert "IdentifiabilityWarning: u: 10 segments for 64 sources" in report
    assert "Skipped: maf" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "components.png",
        "reliability.png",
        "report.md",
        "results.json",
    ]

    def refit(*args, **kwargs):
        raise AssertionError("a finished piece was fitted again")

    monkeypatch.setattr(study, "fit_piece", refit)
    monkeypatch.setattr(study, "run_stability", refit)
    again = study.main(argv)
    assert again["records"] == json.loads(json.dumps(record["records"]))
    assert again["stability"]["reliability"] == stab["reliability"]
