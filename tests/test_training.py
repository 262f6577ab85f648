"""Trainer: recovers linear ICA, matches ordinary training, detects divergence, validates input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nica.core.metrics import mean_correlation_coefficient
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.core.priors import make_prior
from nica.fitting.steps import HostShuffle, batch_order, make_epoch_fn, make_pass_fn
from nica.fitting.stopping import TrainingDivergedError
from nica.fitting.training import train


def _linear_ica_data(seed, n=6000, dim=4):
    rng = np.random.default_rng(seed)
    s = rng.laplace(size=(n, dim))
    while True:
        mixing = rng.uniform(-1, 1, size=(dim, dim))
        if np.linalg.cond(mixing) < 5:
            break
    return s, s @ mixing


def test_linear_ica_recovers_laplace_sources(key):
    s, x = _linear_ica_data(0)
    net = DemixingNetwork(4, 1, rngs=nnx.Rngs(0))
    result = train(key, net, x, prior="laplace", optimizer=optax.adam(1e-2), epochs=40)
    mcc = mean_correlation_coefficient(s, np.asarray(net(jnp.asarray(x, jnp.float32)))).mcc
    assert mcc >= 0.99
    assert result.history["val_nll"][-1] < result.history["val_nll"][0]


def _two_d_problem():
    rng = np.random.default_rng(5)
    s = rng.laplace(size=(3000, 2))
    y = s @ np.array([[1.0, 0.6], [-0.4, 1.0]])
    return np.where(y > 0, y, 0.3 * y) @ np.array([[0.8, -0.5], [0.3, 1.1]])


def _fit_2d(gradient):
    net = DemixingNetwork(2, 2, activation_kwargs={"slope": 0.5}, rngs=nnx.Rngs(11))
    result = train(
        jax.random.key(3),
        net,
        _two_d_problem(),
        prior="laplace",
        gradient=gradient,
        optimizer=optax.adam(3e-3),
        epochs=200,
        batch_size=100,
        eval_every=20,
    )
    return result.history["val_nll"][-1], result.history["val_nll"][0]


@pytest.mark.parametrize("gradient", ["relative", "relative_coords"])
def test_relative_and_ordinary_reach_the_same_nll_in_2d(gradient):
    relative, start = _fit_2d(gradient)
    ordinary, _ = _fit_2d("ordinary")
    assert relative < start - 0.1  # both actually learned something
    assert abs(relative - ordinary) <= 0.01 * abs(ordinary)


def test_training_is_deterministic_per_key(key):
    _, x = _linear_ica_data(1, n=1000, dim=3)

    def run():
        net = DemixingNetwork(3, 2, rngs=nnx.Rngs(4))
        train(key, net, x, prior="logistic", epochs=3)
        return [np.asarray(p) for p in jax.tree.leaves(nnx.state(net, nnx.Param))]

    for a, b in zip(run(), run(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_host_shuffle_draws_a_permutation_per_run_and_epoch_from_its_key_alone():
    keys = jax.random.split(jax.random.key(3), 6).reshape(2, 3)
    shuffle = HostShuffle(keys, 103, 10)
    first, second = shuffle.next(), shuffle.next()
    assert first.shape == (2, 3, 10, 10) and first.dtype == np.int32
    for orders in (first, second):  # every run: 100 distinct indices of 0..102
        flat = orders.reshape(6, 100)
        assert all(len(set(row)) == 100 and row.min() >= 0 and row.max() < 103 for row in flat)
    assert len({first.reshape(6, 100)[i].tobytes() for i in range(6)}) == 6  # runs differ
    assert not np.array_equal(first, second)  # epochs differ
    alone = HostShuffle(keys[1, 2][None, None], 103, 10)  # run (1, 2) trained on its own
    np.testing.assert_array_equal(alone.next()[0, 0], first[1, 2])
    np.testing.assert_array_equal(alone.next()[0, 0], second[1, 2])


def test_epoch_fn_is_the_pass_over_its_keys_permutation(key):
    _, x = _linear_ica_data(5, n=250, dim=3)
    model = ICAModel(DemixingNetwork(3, 2, rngs=nnx.Rngs(1)), make_prior("logistic"))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-2)
    x = jnp.asarray(x, jnp.float32)
    by_key = make_epoch_fn(graphdef, rest, tx, gradient="relative_coords", batch_size=40)
    by_order = make_pass_fn(graphdef, rest, tx, gradient="relative_coords")
    order = batch_order(jax.random.permutation(key, 250), 40)
    assert order.shape == (6, 40)
    got = by_key(params, tx.init(params), key, x, None)
    want = by_order(params, tx.init(params), order, x, None)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(a, b)
    assert bool(got[3]) and np.isfinite(float(got[2]))


def test_divergence_is_detected_and_best_parameters_kept(key):
    _, x = _linear_ica_data(2, n=1000, dim=3)
    net = DemixingNetwork(3, 2, rngs=nnx.Rngs(0))
    initial = [np.asarray(p) for p in jax.tree.leaves(nnx.state(net, nnx.Param))]
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch \d+") as info:
        train(key, net, x * 1e3, prior="gaussian", optimizer=optax.sgd(1e3), epochs=5)
    assert info.value.epoch >= 1
    kept = [np.asarray(p) for p in jax.tree.leaves(nnx.state(net, nnx.Param))]
    assert all(np.all(np.isfinite(p)) for p in kept)
    assert info.value.history["epoch"][-1] < info.value.epoch
    # Nothing improved on the initial parameters, so they are the ones kept.
    for a, b in zip(initial, kept, strict=True):
        np.testing.assert_array_equal(a, b)


def test_early_stopping_and_history(key):
    _, x = _linear_ica_data(3, n=2000, dim=2)
    net = DemixingNetwork(2, 1, rngs=nnx.Rngs(0))
    seen = []
    result = train(
        key,
        net,
        x,
        prior="laplace",
        optimizer=optax.adam(0.05),
        epochs=200,
        patience=3,
        progress=seen.append,
    )
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run < 200
    # eval_every=1: one history record and one progress event per epoch, plus epoch 0.
    assert len(seen) == len(result.history["epoch"]) == result.epochs_run + 1
    assert [e.epoch for e in seen] == result.history["epoch"]
    assert [e.val_nll for e in seen] == pytest.approx(result.history["val_nll"])
    assert result.best_val_nll == min(result.history["val_nll"])


BAD_INPUTS = {
    "nan": (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), None, "NaN"),
    "1-d": (lambda x: x[:, 0], None, "2-D"),
    "wrong-dim": (lambda x: x[:, :2], None, "expects dim=3"),
    "empty": (lambda x: x[:0], None, "empty"),
    "u-length": (lambda x: x, np.zeros(5, int), "'u' must have shape"),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gets_a_clear_error(case, key):
    transform, u, message = case
    x = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match=message):
        train(key, DemixingNetwork(3, 1, rngs=nnx.Rngs(0)), transform(x), u, epochs=1)


def test_bad_settings_get_clear_errors(key):
    x = np.random.default_rng(0).normal(size=(50, 3))
    net = DemixingNetwork(3, 1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown gradient mode"):
        train(key, net, x, gradient="natural")
    with pytest.raises(ValueError, match="unknown prior 'cauchy'"):
        train(key, net, x, prior="cauchy")
    with pytest.raises(ValueError, match="pass prior only with a bare demixer"):
        train(key, ICAModel(net, make_prior("laplace")), x, prior="laplace")
    with pytest.raises(ValueError, match="validation_fraction"):
        train(key, net, x, validation_fraction=1.5)


def test_exploding_validation_nll_is_divergence(key):
    _, x = _linear_ica_data(4, n=1000, dim=3)
    ascent = optax.sgd(-0.005)  # gradient *ascent*: the NLL climbs, finite for about 10 epochs
    net = DemixingNetwork(3, 2, rngs=nnx.Rngs(0))
    with pytest.raises(TrainingDivergedError, match="validation NLL exploded") as info:
        train(key, net, x, prior="laplace", optimizer=ascent, epochs=50, explode_nats=1.0)
    history = info.value.history["val_nll"]
    assert max(history) <= history[0] + 3.0  # caught at the first evaluation past the limit
    # Without the check the same climb goes on while the values stay finite.
    net = DemixingNetwork(3, 2, rngs=nnx.Rngs(0))
    result = train(key, net, x, prior="laplace", optimizer=ascent, epochs=12, explode_nats=None)
    assert result.best_epoch == 0 and result.history["val_nll"][-1] > history[0] + 3.0
