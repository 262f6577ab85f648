"""The flat setting names of 0.2.0 and where each lives in the typed config.

``nica fit``'s options, ``nica.fit(x, u, epochs=...)``'s overrides, the ``fit`` tuples of
``nica run`` configs and saved checkpoints name settings flat (``epochs``, ``slope``, ...).
:data:`FLAT_NAMES` lists them; :data:`FLAT_FIELDS` maps each (but the activation's) to its field
of :class:`nica.fitting.config.FitConfig`; :data:`ACTIVATION_FAMILIES` maps an activation name
to its type and which flat name sets which of its fields. ``FitConfig.from_flat``, ``flat`` and
``replace`` are built on :func:`flat_values` and :func:`replace_flat`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

from nica.core import activations as act

__all__ = [
    "ACTIVATION_FAMILIES",
    "FLAT_FIELDS",
    "FLAT_NAMES",
    "check_setting_names",
    "flat_values",
    "replace_flat",
]

#: The flat value of a setting resolved from the data (``depth``, ``prior``, ``gradient``).
AUTO = "auto"

#: Flat name -> its field in the typed config (a path of attributes from ``FitConfig``), for
#: every flat name but the activation's (:data:`ACTIVATION_FAMILIES`).
FLAT_FIELDS: dict[str, tuple[str, ...]] = {
    "seed": ("seed",),
    "epochs": ("loop", "epochs"),
    "depth": ("model", "depth"),
    "prior": ("model", "prior", "family"),
    "prior_shape_init": ("model", "prior", "shape_init"),
    "conditional": ("model", "conditional"),
    "gradient": ("optimizer", "gradient"),
    "learning_rate": ("optimizer", "learning_rate"),
    "lr_reference_dim": ("optimizer", "lr_reference_dim"),
    "batch_size": ("loop", "batch_size"),
    "clip_norm": ("optimizer", "clip_norm"),
    "validation_fraction": ("loop", "validation_fraction"),
    "patience": ("loop", "patience"),
    "eval_every": ("loop", "eval_every"),
    "standardise": ("model", "standardise"),
    "restarts": ("restarts", "count"),
    "restart_epochs": ("restarts", "epochs"),
    "warm_start": ("restarts", "warm_start"),
}

#: Activation name (the flat ``activation``) -> its type in ``ModelConfig.activation`` and
#: which flat name sets which of its fields.
ACTIVATION_FAMILIES: dict[str, tuple[type, dict[str, str]]] = {
    "smooth_leaky_relu": (act.SmoothLeakyReLU, {"slope": "slope", "sharpness": "sharpness"}),
    "leaky_relu": (act.LeakyReLU, {"slope": "slope"}),
    "leaky_tanh": (act.LeakyTanh, {"slope": "beta"}),
    "identity": (act.Identity, {}),
    "monotone_mixture": (
        act.MonotoneMixtureSpec,
        {
            "activation_knots": "knots",
            "activation_sharpness": "sharpness",
            "activation_tail_slope": "tail_slope",
        },
    ),
    "monotone_spline": (
        act.MonotoneSplineSpec,
        {"activation_knots": "knots", "activation_tail_slope": "tail_slope"},
    ),
}
#: Activation type -> its flat name.
FAMILY_OF = {kind: name for name, (kind, _) in ACTIVATION_FAMILIES.items()}

#: The activation's flat settings where the activation has no such field: the 0.2.0 defaults
#: (slope 5 makes ``smooth_leaky_relu`` the inverse of a leaky-ReLU(0.2) mixing).
ACTIVATION_DEFAULTS = {
    "activation": "monotone_spline",
    "slope": 5.0,
    "sharpness": 10.0,
    "activation_knots": None,
    "activation_sharpness": 6.0,
    "activation_tail_slope": 1.0,
}

#: Every flat name, in the order of 0.2.0's ``FitConfig`` fields, later ones appended.
FLAT_NAMES = (
    "seed",
    "epochs",
    "depth",
    "prior",
    "prior_shape_init",
    "conditional",
    "gradient",
    *ACTIVATION_DEFAULTS,
    "learning_rate",
    "lr_reference_dim",
    "batch_size",
    "clip_norm",
    "validation_fraction",
    "patience",
    "eval_every",
    "standardise",
    "restarts",
    "restart_epochs",
    "warm_start",
)
assert set(FLAT_NAMES) == {*FLAT_FIELDS, *ACTIVATION_DEFAULTS}


def check_setting_names(names: Iterable[str], known: Collection[str], owner: str) -> None:
    """A one-line ``ValueError`` listing the known names when ``names`` holds another one
    (``owner`` names the settings' type in the message, e.g. ``"FitConfig"``)."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown {owner} setting(s) {unknown}; known: {sorted(known)}")


def flat_values(config) -> dict:
    """The value of every flat name of a ``FitConfig`` (:data:`FLAT_NAMES`, in that order); a
    depth rule is ``auto``, a search among depths their list; the activation settings of
    another family than the config's are at :data:`ACTIVATION_DEFAULTS`."""
    values = {name: _get(config, path) for name, path in FLAT_FIELDS.items()}
    if not isinstance(values["depth"], int):
        depths = values["depth"].depths
        values["depth"] = AUTO if depths is None else list(depths)
    values.update({**ACTIVATION_DEFAULTS, **_activation_flat(config.model.activation)})
    return {name: values[name] for name in FLAT_NAMES}


def replace_flat(config, settings: Mapping[str, object]):
    """A ``FitConfig`` with flat ``settings`` replaced: unknown names are refused; each part is
    rebuilt (and so validated) once with all its changes; the activation's flat settings are
    read together with the current activation's (those of another family are ignored)."""
    check_setting_names(settings, FLAT_NAMES, "FitConfig")
    updates = {FLAT_FIELDS[k]: v for k, v in settings.items() if k in FLAT_FIELDS}
    chosen = {k: v for k, v in settings.items() if k not in FLAT_FIELDS}
    if chosen:
        current = {**ACTIVATION_DEFAULTS, **_activation_flat(config.model.activation)}
        updates[("model", "activation")] = _activation_from_flat({**current, **chosen})
    return _updated(config, updates)


def _get(obj, path: tuple[str, ...]):
    for name in path:
        obj = getattr(obj, name)
    return obj


def _updated(obj, updates: dict[tuple[str, ...], object]):
    """``obj`` with the fields at the paths of ``updates`` replaced, each nested dataclass
    rebuilt once."""
    direct = {path[0]: value for path, value in updates.items() if len(path) == 1}
    nested: dict[str, dict] = {}
    for path, value in updates.items():
        if len(path) > 1:
            nested.setdefault(path[0], {})[path[1:]] = value
    for name, inner in nested.items():
        direct[name] = _updated(getattr(obj, name), inner)
    return dataclasses.replace(obj, **direct) if direct else obj


def _activation_flat(activation) -> dict:
    """The flat settings of an activation of ``ModelConfig``: its name and its fields'."""
    name = FAMILY_OF[type(activation)]
    fields = ACTIVATION_FAMILIES[name][1]
    return {"activation": name, **{flat: getattr(activation, f) for flat, f in fields.items()}}


def _activation_from_flat(settings: dict):
    """The activation that flat ``settings`` (every activation flat name) describe."""
    name = settings["activation"]
    if name not in ACTIVATION_FAMILIES:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATION_FAMILIES)}")
    kind, fields = ACTIVATION_FAMILIES[name]
    return kind(**{field: settings[flat] for flat, field in fields.items()})
