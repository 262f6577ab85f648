"""The public estimator: nica.fit / FittedModel / nica.load, and the README's library snippet."""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nica
from nica.apps.cli import main
from nica.fitting import build, estimator
from nica.fitting import fitted as fitted_module
from synthetic import make_preset

SMALL = dict(epochs=2, restarts=2, restart_epochs=1, eval_every=1, depth=2)


@pytest.fixture(scope="module")
def data():
    return make_preset("tiny", 0)


@pytest.fixture(scope="module")
def fitted(data):
    return nica.fit(data.x, data.u, **SMALL)


def test_one_set_of_defaults():
    """nica.fit, nica.fit_seeds and the CLI share FitConfig's defaults."""
    import inspect

    for function in (nica.fit, nica.fit_seeds):
        assert inspect.signature(function).parameters["config"].default is None
    assert nica.FitConfig().optimizer.gradient == "auto"
    assert nica.FitConfig().resolve(5, 40_000).gradient.name == "relative_coords"
    assert nica.FitConfig().resolve(300, 40_000).gradient.name == "relative_pooled"
    big_batch = nica.FitConfig(loop=nica.LoopConfig(batch_size=512))
    assert big_batch.resolve(300, 40_000).gradient.name == "relative_coords"
    # The batch is capped at the training split (225 of 250 points): D = 300 > B.
    assert big_batch.resolve(300, 250).gradient.name == "relative_pooled"
    with pytest.raises(ValueError, match="unknown FitConfig setting"):
        nica.fit(np.zeros((10, 2)), learning_rte=0.1)
    with pytest.raises(ValueError, match="unknown gradient mode 'natural'"):
        nica.fit(np.zeros((10, 2)), gradient="natural")


def test_transform_and_log_likelihood_compile_once_per_shape(fitted, data):
    fitted.transform(data.x)
    fitted.log_likelihood(data.x, data.u)
    demix, log_likelihood = fitted_module._demix, fitted_module._log_likelihood
    sizes = (demix._cache_size(), log_likelihood._cache_size())
    for _ in range(3):
        fitted.transform(data.x)
        fitted.log_likelihood(data.x, data.u)
    assert (demix._cache_size(), log_likelihood._cache_size()) == sizes
    fitted.transform(data.x[:7])  # a new shape compiles once more
    assert demix._cache_size() == sizes[0] + 1


def test_inverse_round_trip_in_original_units(fitted, data):
    s_hat = fitted.transform(data.x)
    np.testing.assert_allclose(fitted.inverse(s_hat), data.x, rtol=1e-3, atol=1e-3)


def test_log_likelihood_is_the_change_of_variables_sum_in_original_units(fitted, data, x64):
    """log p(x|u) = log p(s|u) + log|det J_g(z)| - sum log scale, with J by autodiff."""
    x, u = data.x[:5], data.u[:5]
    model = fitted.model
    z = jnp.asarray(fitted.standardisation.apply(x), jnp.float32)
    g = lambda zi: model.demixer(zi[None])[0]  # noqa: E731
    logdet = jnp.linalg.slogdet(jax.vmap(jax.jacfwd(g))(z))[1]
    expected = model.prior.log_prob(model.demixer(z), jnp.asarray(u)).sum(-1) + logdet
    expected = np.asarray(expected) - np.log(fitted.scale).sum()
    np.testing.assert_allclose(fitted.log_likelihood(x, u), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"the model is conditional \(Eq. 4\): pass u"):
        fitted.log_likelihood(x)


def test_save_and_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "ckpt")
    loaded = nica.load(tmp_path / "ckpt")
    # The checkpoint keeps the resolved prior: a later change of "auto" cannot change it.
    assert fitted.config.model.prior.family == "auto"
    assert loaded.config.model.prior.family == "gennorm"
    assert loaded.config == fitted.config.replace(prior="gennorm")
    assert loaded.aux == fitted.aux and loaded.prior_shape == fitted.prior_shape
    np.testing.assert_array_equal(loaded.transform(data.x), fitted.transform(data.x))
    np.testing.assert_array_equal(
        loaded.log_likelihood(data.x, data.u), fitted.log_likelihood(data.x, data.u)
    )
    with pytest.raises(ValueError, match="not a nica checkpoint"):
        nica.load(tmp_path)


def test_checkpoint_saved_when_auto_meant_laplace_still_loads(data, tmp_path):
    """A checkpoint written with ``prior="auto"`` before ``auto`` became ``gennorm`` (no
    shape parameter) is rebuilt with the Laplace prior it was trained with."""
    laplace = nica.fit(data.x, data.u, **{**SMALL, "prior": "laplace"})
    laplace.save(tmp_path / "old")
    meta_path = tmp_path / "old" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["prior"] = "auto"
    meta_path.write_text(json.dumps(meta))
    loaded = nica.load(tmp_path / "old")
    assert loaded.config.model.prior.family == "laplace" and loaded.prior_shape is None
    np.testing.assert_array_equal(
        loaded.log_likelihood(data.x, data.u), laplace.log_likelihood(data.x, data.u)
    )


def test_fit_without_u_is_the_unconditional_model_with_its_own_auto_prior(data):
    fitted = nica.fit(data.x, **SMALL)
    assert not fitted.config.model.conditional
    assert fitted.config.resolve().prior_family == "laplace"
    assert fitted.aux is None and fitted.prior_shape is None
    with pytest.raises(ValueError, match="unknown unconditional prior 'gennorm'"):
        nica.fit(data.x, **{**SMALL, "prior": "gennorm"})


def test_bad_inputs_to_a_fitted_model(fitted):
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        fitted.transform(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fitted.transform(np.full((4, 2), np.nan))


def test_restart_phase_inits_every_run_in_one_call_and_keeps_the_best(data):
    fitted = nica.fit(data.x, data.u, **{**SMALL, "restarts": 4})
    val = fitted.restarts["val_nll"]
    assert len(set(val)) == 4 and fitted.restarts["chosen"] == int(np.argmin(val))
    assert fitted.result.history["val_nll"][0] == pytest.approx(min(val), rel=1e-5)


def test_fit_equals_the_low_level_trainer_without_restarts(data):
    """nica.fit(restarts=1) is nica.train on build_model's module, standardised data, the same
    keys and make_optimizer: the estimator adds no hidden behaviour."""
    config = nica.FitConfig.from_flat({**SMALL, "restarts": 1})
    fitted = nica.fit(data.x, data.u, config=config)
    z = (data.x - data.x.mean(0)) / data.x.std(0)
    init_keys = estimator.seed_keys(config.seed, 1)[2]
    model = nica.build_model(config, 2, fitted.aux, key=init_keys[0])
    data_key = jax.random.split(jax.random.key(config.seed))[0]
    result = nica.train(
        data_key,
        model,
        z.astype(np.float32),
        data.u,
        optimizer=build.make_optimizer(config, z.shape[0]),
        loop=config.loop,
    )
    # The estimator records NLLs in the units of x: the trainer's, on z, plus sum(log scale).
    in_x_units = result.best_val_nll + np.log(fitted.scale).sum()
    assert in_x_units == pytest.approx(fitted.result.best_val_nll, rel=1e-5)
    for a, b in zip(
        jax.tree.leaves(nnx.state(model, nnx.Param)),
        jax.tree.leaves(nnx.state(fitted.model, nnx.Param)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _readme_library_snippet() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Library") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_library_snippet_gives_what_nica_fit_gives(tmp_path, monkeypatch, data):
    """The README's library section calls nica.fit with the CLI's defaults: with the same
    (small) overrides on both sides, it recovers exactly the sources `nica fit` recovers."""
    snippet = _readme_library_snippet()
    assert "nica.fit(x, u)" in snippet
    data.save(tmp_path / "data.npz")
    out = tmp_path / "fit"
    argv = ["fit", "--data", str(tmp_path / "data.npz"), "--out", str(out), "--quiet"]
    argv += ["--epochs", "2", "--restarts", "2", "--depth", "2"]
    assert main(argv) == 0
    cli = np.load(out / "recovered.npz")["s_hat"]
    real_fit = nica.fit
    monkeypatch.setattr(nica, "fit", lambda *a, **k: real_fit(*a, epochs=2, restarts=2, depth=2))
    monkeypatch.chdir(tmp_path)  # the snippet saves its fit
    scope = {"x": data.x, "u": data.u, "s": data.s}
    exec(snippet, scope)
    np.testing.assert_array_equal(scope["s_hat"].astype(np.float32), cli)
    assert scope["mcc"] == pytest.approx(
        nica.core.metrics.mean_correlation_coefficient(data.s, cli).mcc
    )


def test_prior_shape_init_sets_the_gennorm_start_and_is_validated():
    aux = {"kind": "segments", "n_segments": 3}
    key = jax.random.key(0)
    two_layers = nica.ModelConfig(depth=2)
    default = build.build_model(nica.FitConfig(model=two_layers), 4, aux, key=key)
    start = nica.core.conditional.gennorm_shape(default.prior.raw_shape[...])
    np.testing.assert_allclose(start, 1.02, rtol=1e-5)  # the Laplace end
    custom = nica.ModelConfig(depth=2, prior=nica.PriorSpec(shape_init=1.7))
    custom = build.build_model(nica.FitConfig(model=custom), 4, aux, key=key)
    np.testing.assert_allclose(
        nica.core.conditional.gennorm_shape(custom.prior.raw_shape[...]), 1.7
    )
    # The resolved start is part of the config's record (and so of nica run's cell keys).
    assert nica.FitConfig().to_dict()["resolved_prior_shape_init"] == 1.02
    unconditional = nica.FitConfig(model=nica.ModelConfig(conditional=False))
    assert "resolved_prior_shape_init" not in unconditional.to_dict()
    bad = {
        "strictly between 1.0 and 2.0, got 2.5": {"prior_shape_init": 2.5},
        "'laplace' prior has no shape": {"prior": "laplace", "prior_shape_init": 1.5},
        "for the conditional model": {"conditional": False, "prior_shape_init": 1.5},
    }
    for message, fields in bad.items():
        with pytest.raises(ValueError, match=message):
            nica.FitConfig.from_flat(fields)
