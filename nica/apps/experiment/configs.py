"""The shipped experiments, :data:`EXPERIMENTS`: ``nica run NAME`` runs ``EXPERIMENTS[NAME]``.

Configs are code. A user's run writes to the git-ignored ``runs/<name>``; the committed reports
are regenerated explicitly with the command each config quotes (``ExperimentConfig.reproduce``).
"""

from __future__ import annotations

import dataclasses

from nica.apps.experiment.design import DEFAULT_MODELS, ExperimentConfig, Setting

__all__ = ["BENCHMARK_MODELS", "EXPERIMENTS"]

#: The benchmark configs' methods: nica's, FastICA and the baselines side by side.
BENCHMARK_MODELS = (*DEFAULT_MODELS, "ivae", "tcl")
_FIVE_SEEDS = (0, 1, 2, 3, 4)


def _mixing_family() -> tuple[Setting, ...]:
    from synthetic.presets import MIXING_FAMILY

    return tuple(
        Setting(name, "ivae", tuple(overrides.items())) for name, overrides in MIXING_FAMILY.items()
    )


def _mixing_depths() -> tuple[Setting, ...]:
    return tuple(Setting(f"L={n}", "ivae", (("n_layers", n),)) for n in range(1, 6))


def _icebeem_depths(overrides: tuple = ()) -> tuple[Setting, ...]:
    """ICE-BeeM's settings at mixing depth L in {2, 4} (presets ``icebeem-l2``/``-l4`` with
    ``overrides``), TCL's depth = L as ICE-BeeM runs it."""
    return tuple(
        Setting(f"L={depth}", f"icebeem-l{depth}", overrides, (("tcl", "depth", depth),))
        for depth in (2, 4)
    )


@dataclasses.dataclass(frozen=True)
class _ContinuousExperiment(ExperimentConfig):
    """An experiment on continuous-``u`` data (``synthetic.ContinuousConfig`` presets, sized by
    ``n_samples``, with no segments): its smoke version holds as many samples as
    :meth:`ExperimentConfig.smoke`'s segments do."""

    def smoke(self) -> ExperimentConfig:
        config = super().smoke()
        settings = tuple(
            dataclasses.replace(s, overrides=_unsegmented(s.overrides)) for s in config.settings
        )
        return dataclasses.replace(config, settings=settings)


def _unsegmented(overrides: tuple) -> tuple:
    """``overrides`` with ``n_segments`` x ``samples_per_segment`` replaced by ``n_samples``."""
    fields = dict(overrides)
    fields["n_samples"] = fields.pop("n_segments") * fields.pop("samples_per_segment")
    return tuple(fields.items())


def _tcl_settings() -> tuple[Setting, ...]:
    """TCL's simulation (preset ``tcl``, 256 x 512) at (D, L) = (5, 5), (20, 5) (published)
    and (20, 3)."""
    return tuple(
        Setting(f"D={d} L={n}", "tcl", (("n_sources", d), ("n_layers", n)))
        for d, n in ((5, 5), (20, 5), (20, 3))
    )


def _benchmark(name: str, description: str, settings: tuple, **fields) -> ExperimentConfig:
    """A benchmark config: every method of :data:`BENCHMARK_MODELS`, five seeds."""
    return ExperimentConfig(
        name, description, settings, seeds=_FIVE_SEEDS, models=BENCHMARK_MODELS, **fields
    )


def _with_gradient(base: ExperimentConfig, gradient: str, settings=None) -> ExperimentConfig:
    """``base`` with the conditional model only, trained in the gradient mode ``gradient``
    (compare with ``base``'s report, which trains in the default mode)."""
    name = f"{base.name}-{gradient}"
    return dataclasses.replace(
        base,
        name=name,
        models=("conditional",),
        settings=settings or base.settings,
        fit=base.fit + (("gradient", gradient),),
        description=f"{base.description} Conditional model, `gradient={gradient!r}`.",
        command=f"nica run {name} --out results/gradient_benchmarks/{gradient}/{base.name}",
    )


_DEMO = (
    ("n_sources", 3),
    ("n_segments", 20),
    ("samples_per_segment", 500),
    ("n_layers", 2),
    ("distribution", "gaussian"),
)

_SHIPPED = (
    ExperimentConfig(
        name="demo",
        description=(
            "Default demo (`make demo`, `nica run demo`): 3 Gaussian sources whose variances"
            " change over 20 segments x 500 points (TCL-style nonstationarity), 2-layer"
            " leaky-ReLU mixing; conditional (Eq. 4) vs unconditional (Eq. 3), both with Gaussian"
            " component densities, vs FastICA. Without u, Gaussian components are not identifiable."
        ),
        settings=(Setting("demo", "ivae", _DEMO),),
        seeds=_FIVE_SEEDS,
        fit=(("epochs", 150), ("prior", "gaussian")),
    ),
    _benchmark(
        "ivae",
        "iVAE benchmark (`nica run ivae`): 5 sources, 40 x 1000, 3-layer mixing; nica,"
        " FastICA and the iVAE and TCL baselines.",
        (Setting("ivae", "ivae"),),
    ),
    _benchmark(
        "icebeem",
        "ICE-BeeM/TCL benchmark (`nica run icebeem`): 5 sources, 20 x 1000, L in {2, 4};"
        " nica, FastICA and the iVAE and TCL baselines (TCL's depth = L, as ICE-BeeM runs it).",
        _icebeem_depths(),
        sweep="mixing layers",
    ),
    ExperimentConfig(
        name="ivae-original",
        description=(
            "iVAE's own recipe (`nica run ivae-original`, the default config of iVAE's code):"
            " 5 Gaussian sources, std ~ U(0.5, 3) over 40 x 1000, 3 xtanh layers with one matrix"
            " reused in every layer; the conditional model vs FastICA, iVAE and TCL."
        ),
        settings=(Setting("ivae-original", "ivae-original"),),
        seeds=_FIVE_SEEDS,
        models=("conditional", "fastica", "ivae", "tcl"),
        command="nica run ivae-original --out results/baselines/ivae-original",
    ),
    ExperimentConfig(
        name="icebeem-2000",
        description=(
            "ICE-BeeM's published setting for TCL and iVAE (`nica run icebeem-2000`): 5 Gaussian"
            " sources, 20 x 2000, leaky-ReLU mixing, L in {2, 4}; TCL's depth = L."
        ),
        settings=_icebeem_depths((("samples_per_segment", 2000),)),
        sweep="mixing layers",
        seeds=_FIVE_SEEDS,
        models=("fastica", "ivae", "tcl"),  # nica's conditional model: `nica run icebeem`
        command="nica run icebeem-2000 --out results/baselines/icebeem-2000",
    ),
    ExperimentConfig(
        name="tcl",
        description=(
            "TCL's simulation (`nica run tcl`; Hyvarinen & Morioka 2016): Laplace sources"
            " modulated by U(0, 1) scales over 256 segments x 512 points, L-layer leaky-ReLU"
            " (0.2) mixing of well-conditioned uniform matrices; D=5 L=5, the published D=20"
            " L=5, and D=20 L=3. The conditional model vs FastICA: the iVAE and TCL baselines"
            " are too slow at 131072 x 20 to run here."
        ),
        settings=_tcl_settings(),
        models=("conditional", "fastica"),
        command="nica run tcl --out results/tcl",
    ),
    _ContinuousExperiment(
        name="continuous",
        description=(
            "Continuous auxiliary variable u = t (`nica run continuous`): Laplace sources whose"
            " standard deviations are smooth functions of time in [0.5, 3] (length scale 0.25"
            " on t in [0, 1]), 3-layer leaky-ReLU mixing; D=10 over 40000 and D=20 over 80000"
            " time points (the sample sizes of the `dimension` sweep). The conditional model,"
            " its prior an MLP of u, vs FastICA: TCL needs segments, and iVAE is too slow at"
            " this size."
        ),
        settings=(
            Setting("D=10", "continuous", (("n_sources", 10), ("n_samples", 40_000))),
            Setting("D=20", "continuous", (("n_sources", 20), ("n_samples", 80_000))),
        ),
        models=("conditional", "fastica"),
        command="nica run continuous --out results/continuous",
    ),
    ExperimentConfig(
        name="depth",
        description=(
            "Sweep of mixing depth 1-5 on the iVAE setting (`nica run depth`); the demixer keeps"
            " its default depth (4 at 5 sources)."
        ),
        settings=_mixing_depths(),
        sweep="mixing layers",
    ),
    ExperimentConfig(
        name="segments",
        description="Sweep of the number of segments (`nica run segments`).",
        settings=tuple(Setting(f"M={m}", "ivae", (("n_segments", m),)) for m in (5, 10, 20, 40)),
        sweep="segments",
    ),
    ExperimentConfig(
        name="samples",
        description="Sweep of samples per segment (`nica run samples`).",
        settings=tuple(
            Setting(f"n={n}", "ivae", (("samples_per_segment", n),)) for n in (100, 250, 500, 1000)
        ),
        sweep="samples per segment",
    ),
    ExperimentConfig(
        name="dimension",
        description=(
            "Sweep of source dimension 5 -> 50 on the iVAE setting (3-layer mixing) with segments"
            " growing with D (at least 4D, since scale-only segment variation identifies the"
            " sources only with more than D segments): D=5 40 x 1000, D=10 40 x 1000, D=20"
            " 80 x 1000, D=50 200 x 500 (`nica run dimension`)."
        ),
        settings=tuple(
            Setting(f"D={d}", "ivae", (("n_sources", d), ("n_segments", m), *extra))
            for d, m, extra in (
                (5, 40, ()),
                (10, 40, ()),
                (20, 80, ()),
                (50, 200, (("samples_per_segment", 500),)),
            )
        ),
        sweep="source dimension",
    ),
    ExperimentConfig(
        name="mixings",
        description=(
            "Robustness to the mixing nonlinearity (`nica run mixings`): the iVAE setting"
            " (5 sources, 40 x 1000, 3 layers) with each mixing of `synthetic.MIXING_FAMILY`"
            " (leaky ReLU at slopes 0.05 / 0.2 / 0.5, xtanh, asinh, smooth leaky ReLU, leaky ELU,"
            " tanhshrink); a user never knows the mixing, so the defaults must hold for all."
        ),
        settings=_mixing_family(),
        sweep="mixing nonlinearity",
    ),
)
_BY_NAME = {config.name: config for config in _SHIPPED}

#: The conditional model in MATH.md's augmented ``relative`` gradient mode on the benchmarks
#: (``ivae``, ``icebeem``, and ``dimension`` at D = 10 and 20), against the default mode's.
_RELATIVE = (
    _with_gradient(_BY_NAME["ivae"], "relative"),
    _with_gradient(_BY_NAME["icebeem"], "relative"),
    _with_gradient(_BY_NAME["dimension"], "relative", _BY_NAME["dimension"].settings[1:3]),
)

#: Shipped experiments; ``nica run NAME``.
EXPERIMENTS: dict[str, ExperimentConfig] = {c.name: c for c in (*_SHIPPED, *_RELATIVE)}
