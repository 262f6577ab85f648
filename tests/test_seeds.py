"""Seeds trained together (`train_seeds`: vmap, sharded over devices) equal one-by-one fits."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import nica
from nica.core.conditional import SegmentPrior
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork
from nica.fitting.config import FitConfig
from nica.fitting.runs import seed_sharding
from nica.fitting.training import train, train_seeds

N_SEGMENTS, DIM = 4, 3


def _data(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(N_SEGMENTS), 150)
    s = rng.laplace(size=(u.size, DIM)) * rng.uniform(0.3, 2.0, (N_SEGMENTS, DIM))[u]
    y = s @ rng.normal(size=(DIM, DIM))
    return scale * np.where(y > 0, y, 0.3 * y) @ rng.normal(size=(DIM, DIM)), u


def _model(seed, dtype):
    net = DemixingNetwork(DIM, 2, rngs=nnx.Rngs(seed), param_dtype=dtype)
    return ICAModel(net, SegmentPrior(N_SEGMENTS, DIM, family="laplace", param_dtype=dtype))


def _params(model):
    return [np.asarray(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]


SETTINGS = dict(epochs=6, batch_size=64, eval_every=2, patience=1, min_delta=1e-3)


def test_fit_seeds_equals_fit_seed_by_seed(x64):
    seeds = (0, 1, 2, 3)
    data = [_data(seed) for seed in seeds]
    optimizer = optax.adam(3e-2)
    together = [_model(seed, np.float64) for seed in seeds]
    results = train_seeds(
        [jax.random.key(seed) for seed in seeds],
        together,
        [x for x, _ in data],
        [u for _, u in data],
        optimizer=optimizer,
        **SETTINGS,
    )
    for seed, (x, u), model, result in zip(seeds, data, together, results, strict=True):
        alone = _model(seed, np.float64)
        expected = train(jax.random.key(seed), alone, x, u, optimizer=optimizer, **SETTINGS)
        assert result.history["epoch"] == expected.history["epoch"]
        np.testing.assert_allclose(result.history["val_nll"], expected.history["val_nll"], 1e-10)
        assert (result.best_epoch, result.epochs_run, result.stop_reason) == (
            expected.best_epoch,
            expected.epochs_run,
            expected.stop_reason,
        )
        for a, b in zip(_params(model), _params(alone), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # The seeds really differ (distinct data and inits), and early stopping acted per seed.
    assert len({r.best_val_nll for r in results}) == len(seeds)


def test_a_diverging_seed_does_not_affect_the_others(x64):
    data = [_data(0), _data(1, scale=1e150), _data(2)]  # seed 1 overflows
    models = [_model(seed, np.float64) for seed in range(3)]
    keys = [jax.random.key(seed) for seed in range(3)]
    xs, us = [x for x, _ in data], [u for _, u in data]
    settings = dict(optimizer=optax.sgd(0.05), epochs=4, batch_size=64)
    results = train_seeds(keys, models, xs, us, **settings)
    assert results[1].stop_reason == "diverged" and "diverged at epoch" in results[1].diverged
    assert all(np.all(np.isfinite(p)) for p in _params(models[1]))  # best parameters kept
    for i in (0, 2):
        alone = _model(i, np.float64)
        expected = train(keys[i], alone, xs[i], us[i], **settings)
        assert results[i].diverged is None
        assert results[i].best_val_nll == pytest.approx(expected.best_val_nll, rel=1e-10)


def test_fit_seeds_matches_fit_seed_by_seed():
    """nica.fit_seeds (seeds x restarts vmapped, data broadcast over restarts) gives each seed
    what nica.fit gives it alone."""
    config = FitConfig.from_flat(
        dict(epochs=3, depth=2, eval_every=1, batch_size=64, restarts=3, restart_epochs=2)
    )
    data = [_data(seed) for seed in (5, 6)]
    together = nica.fit_seeds(
        [x for x, _ in data], [u for _, u in data], seeds=[5, 6], config=config
    )
    for seed, (x, u), fitted in zip((5, 6), data, together, strict=True):
        alone = nica.fit(x, u, config=config, seed=seed)
        assert fitted.config == alone.config and fitted.config.seed == seed
        assert fitted.restarts["chosen"] == alone.restarts["chosen"]
        assert fitted.restarts["val_nll"] == pytest.approx(alone.restarts["val_nll"], rel=1e-5)
        np.testing.assert_allclose(fitted.transform(x), alone.transform(x), rtol=1e-4, atol=1e-5)
    assert together[0].restarts["val_nll"] != together[1].restarts["val_nll"]
    with pytest.raises(ValueError, match="same shape"):
        nica.fit_seeds(
            [data[0][0], data[1][0][:-5]],
            [data[0][1], data[1][1][:-5]],
            seeds=[0, 1],
            config=config,
        )
    with pytest.raises(ValueError, match="one x"):
        nica.fit_seeds([data[0][0]], [data[0][1]], seeds=[0, 1], config=config)


def test_one_device_means_no_sharding():
    assert len(jax.local_devices()) == 1  # the suite runs on a single host device
    assert seed_sharding(5) == (5, None)


# Runs in a fresh interpreter, where XLA_FLAGS can still create 4 host devices.
_MULTI_DEVICE = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np, optax
    sys.path.insert(0, sys.argv[1])
    import test_seeds as t
    from nica.fitting.runs import seed_sharding
    from nica.fitting.training import train, train_seeds

    jax.config.update("jax_enable_x64", True)
    assert len(jax.local_devices()) == 4, jax.local_devices()
    seeds = (0, 1, 2, 3, 4)  # padded to 8 = 2 per device
    padded, sharding = seed_sharding(len(seeds))
    data = [t._data(seed) for seed in seeds]
    models = [t._model(seed, np.float64) for seed in seeds]
    opt = optax.adam(3e-2)
    results = train_seeds([jax.random.key(s) for s in seeds], models, [x for x, _ in data],
                        [u for _, u in data], optimizer=opt, **t.SETTINGS)
    gaps = []
    for seed, (x, u), model, result in zip(seeds, data, models, results):
        alone = t._model(seed, np.float64)
        expected = train(jax.random.key(seed), alone, x, u, optimizer=opt, **t.SETTINGS)
        gaps.append(max(float(np.max(np.abs(a - b)))
                        for a, b in zip(t._params(model), t._params(alone))))
        gaps.append(abs(result.best_val_nll - expected.best_val_nll))
    print(json.dumps({"padded": padded, "devices": len(sharding.mesh.devices.flat),
                      "spec": str(sharding.spec), "max_gap": max(gaps)}))
    """
)


def test_seed_axis_shards_over_four_host_devices():
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = {**os.environ, "XLA_FLAGS": flags.strip()}
    env["JAX_PLATFORMS"] = "cpu"
    here = os.path.dirname(__file__)
    done = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE, here],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["padded"] == 8 and report["devices"] == 4
    assert "seeds" in report["spec"]
    assert report["max_gap"] < 1e-9


def test_seeds_vmap_benchmark_smoke(tmp_path):
    from experiments import seeds_vmap

    records = seeds_vmap.main(["--smoke", "--out", str(tmp_path)])
    assert [r["seeds"] for r in records] == [1, 2]
    for r in records:
        assert r["sequential_s"] > 0 and r["vmapped_s"] > 0
        assert r["max_abs_mcc_diff"] < 1e-3  # the two modes recover the same sources
    table = (tmp_path / "report.md").read_text()
    assert "| 1 |" in table and "| 2 |" in table


def test_restarts_keep_the_initialisation_with_the_best_validation_nll():
    x, u = _data(7)
    config = FitConfig.from_flat(
        dict(epochs=2, depth=2, batch_size=64, restarts=4, restart_epochs=3)
    )
    fitted = nica.fit(x, u, config=config)
    val = fitted.restarts["val_nll"]
    assert len(val) == 4 and len(set(val)) == 4  # distinct initialisations
    assert fitted.restarts["chosen"] == int(np.argmin(val))
    # The main fit starts from the chosen restart, on the same validation split.
    assert fitted.result.history["val_nll"][0] == pytest.approx(min(val), rel=1e-5)
