"""The typed fit settings: each part's validation, the flat names of 0.2.0 (round trip, old
records, unknown names), the presets, and the ``auto`` rules."""

import dataclasses
import json
import re

import jax
import numpy as np
import pytest

import nica
from nica.core import activations as act
from nica.core.activations import make_activation
from nica.fitting.config import AUTO_DEPTH_RULE, FLAT_NAMES, TRAINER_LOOP, check_setting_names
from nica.fitting.data import Standardisation

#: ``nica.FitConfig().to_dict()`` of nica 0.2.0 with the later rules (``depth_rule``'s 10 layers,
#: ``warm_start``), written out: ``nica run``'s cell keys hash it, so a change here changes
#: every default cell's key.
RECORD_0_2_0 = {
    "seed": 0,
    "epochs": 300,
    "depth": "auto",
    "prior": "auto",
    "prior_shape_init": None,
    "conditional": True,
    "gradient": "auto",
    "activation": "monotone_spline",
    "slope": 5.0,
    "sharpness": 10.0,
    "activation_knots": None,
    "activation_sharpness": 6.0,
    "activation_tail_slope": 1.0,
    "learning_rate": 0.01,
    "lr_reference_dim": 10,
    "batch_size": 256,
    "clip_norm": 10.0,
    "validation_fraction": 0.1,
    "patience": None,
    "eval_every": 10,
    "standardise": True,
    "restarts": 8,
    "restart_epochs": None,
    "warm_start": "auto",
    "prior_family": "gennorm",
    "resolved_restart_epochs": 25,
    "depth_rule": "4 or 5 up to 10 sources (the lower validation NLL), 10 above",
    "warm_start_rule": "none up to 10 sources, linear above",
    "resolved_prior_shape_init": 1.02,
}

BAD_PARTS = {
    "depth-name": (nica.ModelConfig, {"depth": "deep"}, "depth must be 'auto', an integer"),
    "depth-zero": (nica.ModelConfig, {"depth": 0}, "depth must be >= 1, got 0"),
    "activation-name": (nica.ModelConfig, {"activation": "monotone_spline"}, "activation must be"),
    "prior-name": (
        nica.ModelConfig,
        {"prior": nica.PriorSpec("cauchy")},
        "unknown conditional prior",
    ),
    "prior-type": (nica.ModelConfig, {"prior": "gaussian"}, "prior must be a PriorSpec"),
    "prior-unconditional": (
        nica.ModelConfig,
        {"prior": nica.PriorSpec("gennorm"), "conditional": False},
        "unknown unconditional prior 'gennorm'",
    ),
    "shape-range": (
        nica.ModelConfig,
        {"prior": nica.PriorSpec(shape_init=2.5)},
        "strictly between",
    ),
    "shape-family": (
        nica.ModelConfig,
        {"prior": nica.PriorSpec("laplace", 1.5)},
        "'laplace' prior has no shape",
    ),
    "shape-unconditional": (
        nica.ModelConfig,
        {"prior": nica.PriorSpec(shape_init=1.5), "conditional": False},
        "prior_shape_init is for the conditional model",
    ),
    "gradient": (nica.OptimizerConfig, {"gradient": "natural"}, "unknown gradient mode 'natural'"),
    "learning_rate": (nica.OptimizerConfig, {"learning_rate": 0.0}, "learning_rate must be > 0"),
    "clip_norm": (nica.OptimizerConfig, {"clip_norm": -1.0}, "clip_norm must be > 0"),
    "lr_reference_dim": (nica.OptimizerConfig, {"lr_reference_dim": 0}, "lr_reference_dim must be"),
    "epochs": (nica.LoopConfig, {"epochs": 0}, "epochs must be >= 1, got 0"),
    "batch_size": (nica.LoopConfig, {"batch_size": 0}, "batch_size must be >= 1"),
    "eval_every": (nica.LoopConfig, {"eval_every": 0}, "eval_every must be >= 1"),
    "patience": (nica.LoopConfig, {"patience": -1}, "patience must be >= 0"),
    "min_delta": (nica.LoopConfig, {"min_delta": -1.0}, "min_delta must be >= 0"),
    "explode_nats": (nica.LoopConfig, {"explode_nats": 0.0}, "explode_nats must be > 0"),
    "validation_fraction": (
        nica.LoopConfig,
        {"validation_fraction": 1.0},
        "validation_fraction=1.0",
    ),
    "restarts": (nica.RestartConfig, {"count": 0}, "restarts must be >= 1, got 0"),
    "restart_epochs": (nica.RestartConfig, {"epochs": 0}, "restart_epochs must be >= 1, got 0"),
    "warm_start": (nica.RestartConfig, {"warm_start": "cubic"}, "unknown warm_start 'cubic'"),
    "spline-knots": (act.MonotoneSplineSpec, {"knots": 4}, "MonotoneSpline knots must be odd"),
    "spline-tail": (act.MonotoneSplineSpec, {"tail_slope": 0.0}, "MonotoneSpline tail_slope"),
    "mixture-knots": (act.MonotoneMixtureSpec, {"knots": 0}, "MonotoneMixture knots must be >= 1"),
    "mixture-sharpness": (act.MonotoneMixtureSpec, {"sharpness": 0.0}, "MonotoneMixture sharpness"),
    "slope": (act.SmoothLeakyReLU, {"slope": 0.0}, "SmoothLeakyReLU slope must be > 0"),
    "part-type": (nica.FitConfig, {"loop": {"epochs": 3}}, "loop must be a LoopConfig"),
    # Wrong types: the same one line, never a TypeError from a comparison.
    "clip_norm-none": (nica.OptimizerConfig, {"clip_norm": None}, "clip_norm must be a number"),
    "learning_rate-text": (
        nica.OptimizerConfig,
        {"learning_rate": "1e-3"},
        "learning_rate must be a number > 0, got '1e-3'",
    ),
    "learning_rate-nan": (nica.OptimizerConfig, {"learning_rate": float("nan")}, "got nan"),
    "epochs-float": (nica.LoopConfig, {"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
    "epochs-bool": (nica.LoopConfig, {"epochs": True}, "epochs must be an integer >= 1, got True"),
    "epochs-text": (nica.LoopConfig, {"epochs": "10"}, "epochs must be an integer >= 1, got '10'"),
    "batch_size-none": (nica.LoopConfig, {"batch_size": None}, "batch_size must be an integer"),
    "eval_every-none": (nica.LoopConfig, {"eval_every": None}, "eval_every must be an integer"),
    "patience-float": (nica.LoopConfig, {"patience": 1.5}, "patience must be an integer >= 0"),
    "validation_fraction-none": (
        nica.LoopConfig,
        {"validation_fraction": None},
        "validation_fraction must be a number >= 0, got None",
    ),
    "restarts-none": (nica.RestartConfig, {"count": None}, "restarts must be an integer >= 1"),
    "spline-knots-float": (
        act.MonotoneSplineSpec,
        {"knots": 9.0},
        "MonotoneSpline knots must be an integer >= 3, got 9.0",
    ),
    "seed-float": (nica.FitConfig, {"seed": 1.5}, "seed must be an integer, got 1.5"),
    "seed-text": (nica.FitConfig, {"seed": "0"}, "seed must be an integer, got '0'"),
    "conditional-text": (
        nica.ModelConfig,
        {"conditional": "yes"},
        "conditional must be True or False, got 'yes'",
    ),
    "standardise-text": (
        nica.ModelConfig,
        {"standardise": "no"},
        "standardise must be True or False, got 'no'",
    ),
    "shape-text": (
        nica.ModelConfig,
        {"prior": nica.PriorSpec(shape_init="1.5")},
        "prior_shape_init must be a number, got '1.5'",
    ),
    "leaky-slope-text": (act.LeakyReLU, {"slope": "0.2"}, "LeakyReLU slope must be a number"),
}


@pytest.mark.parametrize("case", BAD_PARTS.values(), ids=BAD_PARTS.keys())
def test_each_part_refuses_a_bad_value_with_one_line_naming_it(case):
    part, fields, message = case
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        part(**fields)
    assert "\n" not in str(info.value)


def test_numpy_scalars_are_accepted_as_settings():
    loop = nica.LoopConfig(epochs=np.int64(7), validation_fraction=np.float32(0.25))
    assert loop.epochs == 7 and loop.validation_fraction == 0.25
    assert nica.OptimizerConfig(learning_rate=np.float64(3e-3)).learning_rate == 3e-3


def test_a_wrong_typed_flat_setting_is_one_line_from_fit():
    x = np.random.default_rng(0).normal(size=(60, 2))
    with pytest.raises(ValueError, match="^clip_norm must be a number > 0, got None$"):
        nica.fit(x, clip_norm=None, progress=None)


#: A value other than the default for every flat name (the activation's with an activation
#: that has the setting), and the typed field it sets.
FLAT_CASES = {
    "seed": (3, lambda c: c.seed),
    "epochs": (7, lambda c: c.loop.epochs),
    "depth": (3, lambda c: c.model.depth),
    "prior": ("gaussian", lambda c: c.model.prior.family),
    "prior_shape_init": (1.5, lambda c: c.model.prior.shape_init),
    "conditional": (False, lambda c: c.model.conditional),
    "gradient": ("relative", lambda c: c.optimizer.gradient),
    "activation": ("leaky_relu", lambda c: type(c.model.activation)),
    "slope": (2.0, lambda c: c.model.activation.slope),
    "sharpness": (3.0, lambda c: c.model.activation.sharpness),
    "activation_knots": (9, lambda c: c.model.activation.knots),
    "activation_sharpness": (4.0, lambda c: c.model.activation.sharpness),
    "activation_tail_slope": (2.0, lambda c: c.model.activation.tail_slope),
    "learning_rate": (3e-3, lambda c: c.optimizer.learning_rate),
    "lr_reference_dim": (None, lambda c: c.optimizer.lr_reference_dim),
    "batch_size": (64, lambda c: c.loop.batch_size),
    "clip_norm": (5.0, lambda c: c.optimizer.clip_norm),
    "validation_fraction": (0.2, lambda c: c.loop.validation_fraction),
    "patience": (4, lambda c: c.loop.patience),
    "eval_every": (2, lambda c: c.loop.eval_every),
    "standardise": (False, lambda c: c.model.standardise),
    "restarts": (3, lambda c: c.restarts.count),
    "restart_epochs": (2, lambda c: c.restarts.epochs),
    "warm_start": ("linear", lambda c: c.restarts.warm_start),
}
#: The activation each activation setting needs, and what ``activation="leaky_relu"`` gives.
CONTEXT = {
    "slope": {"activation": "smooth_leaky_relu"},
    "sharpness": {"activation": "smooth_leaky_relu"},
    "activation_sharpness": {"activation": "monotone_mixture"},
}
TYPED = {"activation": act.LeakyReLU}


def test_every_flat_name_is_covered():
    assert set(FLAT_CASES) == set(FLAT_NAMES) and len(FLAT_NAMES) == 24
    assert list(nica.FitConfig().flat()) == list(FLAT_NAMES)


@pytest.mark.parametrize("name", FLAT_CASES)
def test_flat_round_trip(name):
    value, field = FLAT_CASES[name]
    settings = {**CONTEXT.get(name, {}), name: value}
    config = nica.FitConfig.from_flat(settings)
    assert field(config) == TYPED.get(name, value)
    assert config.flat()[name] == value
    assert nica.FitConfig.from_flat(config.flat()) == config
    assert nica.FitConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert nica.FitConfig().replace(**settings) == config


def test_default_record_is_the_0_2_0_record():
    """The default config's record is the one written out (a change of it is a change of every
    default ``nica run`` cell key, made on purpose here)."""
    assert nica.FitConfig().to_dict() == RECORD_0_2_0
    assert nica.FitConfig.from_dict(RECORD_0_2_0) == nica.FitConfig()


def test_activation_settings_map_to_the_activation_objects():
    flat = nica.FitConfig.from_flat
    assert flat({}).model.activation == act.MonotoneSplineSpec()
    assert flat({"activation": "smooth_leaky_relu"}).model.activation == act.SmoothLeakyReLU(
        5.0, 10.0
    )
    assert flat({"activation": "leaky_tanh", "slope": 0.3}).model.activation == act.LeakyTanh(0.3)
    assert flat({"activation": "identity", "slope": 3.0}).model.activation == act.Identity()
    mixture = {"activation": "monotone_mixture", "activation_knots": 5}
    assert flat(mixture).model.activation == act.MonotoneMixtureSpec(5, 6.0, 1.0)
    # Settings of another family are ignored, as in 0.2.0; a shared one carries over.
    assert flat({"slope": 3.0}).model.activation == act.MonotoneSplineSpec()
    leaky = flat({"activation": "smooth_leaky_relu", "slope": 2.0, "sharpness": 4.0})
    assert leaky.replace(activation="leaky_relu").model.activation == act.LeakyReLU(2.0)
    with pytest.raises(ValueError, match="unknown activation 'relu'; known: smooth_leaky_relu"):
        flat({"activation": "relu"})


def test_learnable_specs_build_what_the_registry_builds():
    for spec in (act.MonotoneSplineSpec(5, 2.0), act.MonotoneMixtureSpec(3, 4.0, 0.5)):
        built = spec.build(3)
        want = make_activation(spec.name, dim=3, **spec.kwargs())
        np.testing.assert_array_equal(built.log_slopes[...], want.log_slopes[...])
        assert type(built) is type(want)


def test_unknown_flat_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown FitConfig setting\(s\) \['learning_rte'\]"):
        nica.FitConfig().replace(learning_rte=0.1)
    with pytest.raises(ValueError, match="known: .*'learning_rate'"):
        nica.FitConfig.from_flat({"model": nica.ModelConfig()})
    with pytest.raises(ValueError, match=r"unknown TCLConfig setting\(s\) \['x'\]; known"):
        check_setting_names({"x": 1, "epochs": 2}, ["epochs"], "TCLConfig")
    check_setting_names({"epochs": 2}, ["epochs"], "TCLConfig")


def test_replace_rebuilds_each_part_once_with_all_its_changes():
    """Switching to the unconditional model and dropping the gennorm start in one call is
    valid, though either change alone is not."""
    shaped = nica.FitConfig.from_flat({"prior_shape_init": 1.5})
    plain = shaped.replace(conditional=False, prior_shape_init=None)
    assert plain.model == nica.ModelConfig(conditional=False)
    with pytest.raises(ValueError, match="prior_shape_init is for the conditional model"):
        shaped.replace(conditional=False)


def test_old_flat_checkpoint_loads(tmp_path):
    """A checkpoint of 0.2.0 stores ``nica.FitConfig.to_dict()`` flat: ``nica.load`` reads it."""
    old = {**RECORD_0_2_0, "depth": 2, "prior": "gennorm", "epochs": 40, "restarts": 1}
    for later in ("depth_rule", "warm_start", "warm_start_rule"):
        del old[later]
    config = nica.FitConfig.from_dict(old)
    assert config.model.depth == 2 and config.loop.epochs == 40 and config.restarts.count == 1
    assert config.model.prior == nica.PriorSpec("gennorm") and config.seed == 0
    aux = {"kind": "segments", "n_segments": 3}
    model = nica.build_model(config, 2, aux, key=jax.random.key(1))
    standardisation = Standardisation(np.array([1.0, -1.0]), np.array([2.0, 0.5]))
    nica.FittedModel(model, config, standardisation, aux).save(tmp_path)
    meta_path = tmp_path / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "config": old}))
    loaded = nica.load(tmp_path)
    assert loaded.config == config
    x = np.random.default_rng(0).normal(size=(5, 2))
    np.testing.assert_array_equal(
        loaded.transform(x), nica.FittedModel(model, config, standardisation, aux).transform(x)
    )


def test_presets():
    """The density preset is the 0.2.0 density overrides; the trainers' loop its defaults."""
    overrides = {
        "prior": "gaussian",
        "depth": 3,
        "activation": "smooth_leaky_relu",
        "slope": 2.0,
        "epochs": 300,
        "learning_rate": 3e-3,
        "lr_reference_dim": None,
        "batch_size": 128,
        "eval_every": 5,
        "patience": 6,
        "restarts": 1,
    }
    from nica.apps.density import DENSITY_PRESET

    assert DENSITY_PRESET == nica.FitConfig.from_flat(overrides)
    assert DENSITY_PRESET.replace(conditional=False).resolve().prior_family == "gaussian"
    assert dataclasses.astuple(TRAINER_LOOP) == (100, 100, 0.1, None, 1, 0.0, 50.0)


@pytest.mark.parametrize(
    ("depth", "dim", "want"),
    [
        ("auto", 2, (4, 5)),
        ("auto", 10, (4, 5)),
        ("auto", 11, (10,)),
        (3, 50, (3,)),
        ([4, 5], 50, (4, 5)),
    ],
)
def test_auto_depth_rule(depth, dim, want):
    config = nica.FitConfig.from_flat({"depth": depth})
    assert config.resolve(dim).depths == want
    assert isinstance(config.model.depth, int if isinstance(depth, int) else nica.DepthSearch)
    assert (config.to_dict().get("depth_rule") == AUTO_DEPTH_RULE) == (depth == "auto")


@pytest.mark.parametrize(
    ("prior", "conditional", "family", "shape"),
    [
        ("auto", True, "gennorm", 1.02),
        ("auto", False, "laplace", None),
        ("gaussian", True, "gaussian", None),
        ("logistic", False, "logistic", None),
    ],
)
def test_auto_prior_rule(prior, conditional, family, shape):
    config = nica.FitConfig.from_flat({"prior": prior, "conditional": conditional})
    resolved = config.resolve()
    assert (resolved.prior_family, resolved.prior_shape_init) == (family, shape)


@pytest.mark.parametrize(
    ("epochs", "restart_epochs", "want"), [(300, None, 25), (11, None, 1), (300, 7, 7)]
)
def test_auto_restart_epochs_rule(epochs, restart_epochs, want):
    config = nica.FitConfig.from_flat({"epochs": epochs, "restart_epochs": restart_epochs})
    assert config.resolve().restart_epochs == want
    assert config.to_dict()["resolved_restart_epochs"] == want


@pytest.mark.parametrize(
    ("dim", "n_samples", "batch_size", "want"),
    [
        (5, 40_000, 256, "relative_coords"),
        (300, 40_000, 256, "relative_pooled"),
        (300, 40_000, 512, "relative_coords"),
        (300, 250, 512, "relative_pooled"),  # the batch is capped at the 225 training rows
    ],
)
def test_auto_gradient_rule(dim, n_samples, batch_size, want):
    config = nica.FitConfig(loop=nica.LoopConfig(batch_size=batch_size))
    assert config.resolve(dim, n_samples).gradient.name == want
    assert config.resolve(dim).gradient is None
