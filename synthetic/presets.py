"""Named synthetic benchmarks reproducing published settings.

``make_preset(name, seed, **overrides)`` builds a :class:`~synthetic.dataset.Dataset` from the
:class:`SyntheticConfig` in :data:`PRESETS`:

* ``"ivae"`` -- iVAE (Khemakhem et al., 2020): 5 sources, 40 segments x 1000 points, Laplace
  sources with std ~ U(0.5, 3) per segment (``prior='lap'``, the default of ``generate_data`` in
  iVAE's code; its dataset-creation script defaults to Gaussian), 3-layer leaky-ReLU (0.2) MLP in
  the iVAE convention (activation after every matrix but the last), uniform column-normalised
  matrices under the 25th-percentile condition threshold. Deviation: iVAE's code reuses one
  matrix for every layer when the dimensions agree; we draw each layer's matrix independently
  (``"ivae-original"`` below follows iVAE's code).
* ``"ivae-original"`` -- the recipe of iVAE's own default config (``configs/ivae.yaml``): 5
  Gaussian sources with std ~ U(0.5, 3) per segment, 40 segments x 1000 points, 3 layers of
  xtanh (``tanh(x) + 0.1 x``) in the iVAE convention, and *one* uniform matrix reused in every
  layer (``shared_matrix``), as its ``generate_data(repeat_linearity=True)`` does.
* ``"icebeem-l2"`` / ``"icebeem-l4"`` -- ICE-BeeM's TCL simulation (Khemakhem et al., 2020b,
  ``gen_TCL_data_ortho``): 5 Gaussian sources, 20 segments x 1000 points, per-segment std
  ~ U(0.01, 3), Haar-orthogonal matrices, leaky ReLU 0.2 applied *before* each of the
  ``L - 1`` matrices (the ICE-BeeM convention), ``L`` = 2 or 4.
* ``"tcl"`` -- TCL (Hyvarinen & Morioka, 2016, ``generate_artificial_data`` of its code): 20
  Laplace sources, 256 segments x 512 points, each segment's component a unit-variance Laplace
  modulated by a factor ~ U(0, 1) (its standard deviation), 5 layers of leaky ReLU (0.2) in the
  iVAE convention (activation between matrices, none after the last; no bias), uniform
  column-normalised matrices under the 25th-percentile condition threshold. TCL's code mixes
  column vectors, ``x = A s``, so in our row convention its matrices are used transposed
  (``transpose_matrices``: unit-norm rows). Smaller versions come from overrides
  (``n_sources``, ``n_layers``).
* ``"continuous"`` -- continuous ``u = t``: 10 Laplace sources over 40000 time points in
  ``[0, 1]``, each source's standard deviation a smooth function of ``t`` in ``[0.5, 3]``
  (:mod:`synthetic.continuous`, length scale 0.25), the iVAE preset's 3-layer leaky-ReLU mixing
  (a :class:`ContinuousConfig`; ``n_samples`` instead of segments).
* ``"tiny"`` -- a 2-D, 5 x 100 version of ``"ivae"`` (with 2 layers) for fast tests.

:data:`MIXING_FAMILY` holds overrides that swap the mixing nonlinearity (robustness sweeps).

Example:
    ``ds = make_preset("ivae", 0)``; ``make_preset("tiny", 1, n_layers=3)``;
    ``make_preset("continuous", 0, n_sources=20, n_samples=80_000)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthetic.continuous import (
    ContinuousSourceParams,
    draw_continuous_params,
    sample_continuous_sources,
)
from synthetic.dataset import Dataset
from synthetic.mixing import Mixing, random_mixing
from synthetic.sources import SegmentSourceParams, draw_segment_params, sample_segment_sources


@dataclass(frozen=True)
class SyntheticConfig:
    """Configuration of a segment-source benchmark ``x = f(s)``.

    Attributes:
        n_sources: dimension ``D`` of sources and observations.
        n_segments: number of segments ``K``.
        samples_per_segment: samples per segment; ``N = K * samples_per_segment``.
        n_layers: mixing depth, counted per ``convention``.
        activation: a key of :data:`synthetic.elementwise.ACTIVATION_REGISTRY`.
        slope: the activation's parameter (e.g. leaky-ReLU negative slope, xtanh's linear
            coefficient); see :data:`synthetic.elementwise.DEFAULT_SLOPES`.
        family: matrix family, ``"uniform"`` or ``"orthogonal"``.
        convention: layer-counting convention, ``"ivae"``, ``"tcl"`` or ``"icebeem"``.
        distribution: source family, ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
        scale_range: range of the per-segment source standard deviations.
        mean_range: range of the per-segment means, or ``None`` for zero-mean sources.
        n_threshold_draws: draws used to estimate the uniform family's condition threshold.
        description: one-line human description.
        df: Student-t degrees of freedom (used only by ``distribution="student_t"``).
        shared_matrix: one matrix reused in every layer (iVAE's code) instead of one per layer.
        transpose_matrices: use every drawn matrix transposed (unit-norm rows): TCL's code
            mixes column vectors, ``x = A s`` with unit-norm columns of ``A``, which is
            ``s @ A.T`` in the row convention.
    """

    n_sources: int
    n_segments: int
    samples_per_segment: int
    n_layers: int
    activation: str = "leaky_relu"
    slope: float = 0.2
    family: str = "uniform"
    convention: str = "ivae"
    distribution: str = "laplace"
    scale_range: tuple[float, float] = (0.5, 3.0)
    mean_range: tuple[float, float] | None = None
    n_threshold_draws: int = 10_000
    description: str = ""
    df: float = 5.0
    shared_matrix: bool = False
    transpose_matrices: bool = False

    @property
    def n_samples(self) -> int:
        """Total number of samples ``N``."""
        return self.n_segments * self.samples_per_segment

    def draw_sources(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, SegmentSourceParams]:
        """Draws the per-segment parameters, then the sources, from ``rng``.

        Returns:
            ``(s, u, params)``: sources ``(N, D)``, labels ``(N,)`` int64, and the
            :class:`SegmentSourceParams`.
        """
        params = _draw_params(rng, self)
        s, u = sample_segment_sources(rng, params, self.samples_per_segment)
        return s, u, params


@dataclass(frozen=True)
class ContinuousConfig:
    """Configuration of a continuous-``u`` benchmark ``x = f(s)``: the sources' standard
    deviations are smooth functions of ``u`` (:mod:`synthetic.continuous`).

    Attributes:
        n_sources: dimension ``D`` of sources and observations.
        n_samples: number of samples ``N``.
        n_layers, activation, slope, family, convention, n_threshold_draws, shared_matrix,
            transpose_matrices: the mixing, as in :class:`SyntheticConfig`.
        distribution: source family, ``"gaussian"``, ``"laplace"`` or ``"student_t"``.
        scale_range: range ``0 < low <= high`` of the standard deviations ``sigma_j(u)``.
        bandwidth: length scale of ``sigma_j`` in ``u`` (``u = t`` lies in ``[0, 1]``).
        n_features: random Fourier features per component.
        aux: ``"time"`` (``u = t``, ``N`` equally spaced points of ``[0, 1]``) or
            ``"uniform"`` (``u ~ U(0, 1)^aux_dim``).
        aux_dim: dimension ``d`` of ``u`` (1 for ``"time"``).
        description: one-line human description.
        df: Student-t degrees of freedom (used only by ``distribution="student_t"``).
    """

    n_sources: int
    n_samples: int
    n_layers: int
    activation: str = "leaky_relu"
    slope: float = 0.2
    family: str = "uniform"
    convention: str = "ivae"
    distribution: str = "laplace"
    scale_range: tuple[float, float] = (0.5, 3.0)
    bandwidth: float = 0.25
    n_features: int = 8
    aux: str = "time"
    aux_dim: int = 1
    n_threshold_draws: int = 10_000
    description: str = ""
    df: float = 5.0
    shared_matrix: bool = False
    transpose_matrices: bool = False

    def draw_sources(
        self, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, ContinuousSourceParams]:
        """Draws the scale functions, then ``u`` and the sources, from ``rng``.

        Returns:
            ``(s, u, params)``: sources ``(N, D)``, ``u (N, d)`` float64, and the
            :class:`~synthetic.continuous.ContinuousSourceParams`.
        """
        params = draw_continuous_params(
            rng,
            self.n_sources,
            aux_dim=self.aux_dim,
            aux=self.aux,
            distribution=self.distribution,
            scale_range=self.scale_range,
            n_features=self.n_features,
            bandwidth=self.bandwidth,
            df=self.df,
        )
        s, u = sample_continuous_sources(rng, params, self.n_samples)
        return s, u, params


def _icebeem(n_layers: int) -> SyntheticConfig:
    """ICE-BeeM's TCL simulation (``gen_TCL_data_ortho``) with ``L = n_layers``."""
    return SyntheticConfig(
        n_sources=5,
        n_segments=20,
        samples_per_segment=1000,
        n_layers=n_layers,
        family="orthogonal",
        convention="icebeem",
        distribution="gaussian",
        scale_range=(0.01, 3.0),
        description=(
            f"ICE-BeeM TCL: D=5, 20x1000, Gaussian std~U(0.01,3), L={n_layers}, orthogonal"
        ),
    )


PRESETS: dict[str, SyntheticConfig | ContinuousConfig] = {
    "ivae": SyntheticConfig(
        n_sources=5,
        n_segments=40,
        samples_per_segment=1000,
        n_layers=3,
        description="iVAE: D=5, 40x1000, Laplace std~U(0.5,3), 3-layer leaky ReLU 0.2, uniform",
    ),
    "icebeem-l2": _icebeem(2),
    "icebeem-l4": _icebeem(4),
    "ivae-original": SyntheticConfig(
        n_sources=5,
        n_segments=40,
        samples_per_segment=1000,
        n_layers=3,
        activation="xtanh",
        slope=0.1,
        distribution="gaussian",
        shared_matrix=True,
        description=(
            "iVAE's own recipe: D=5, 40x1000, Gaussian std~U(0.5,3), 3-layer xtanh,"
            " one uniform matrix in every layer"
        ),
    ),
    "tcl": SyntheticConfig(
        n_sources=20,
        n_segments=256,
        samples_per_segment=512,
        n_layers=5,
        scale_range=(0.0, 1.0),
        transpose_matrices=True,
        description=(
            "TCL: D=20, 256x512, Laplace std~U(0,1), 5-layer leaky ReLU 0.2, uniform"
            " (column-vector convention)"
        ),
    ),
    "continuous": ContinuousConfig(
        n_sources=10,
        n_samples=40_000,
        n_layers=3,
        description=(
            "continuous u = t: D=10, N=40000, Laplace std = smooth sigma(t) in [0.5, 3]"
            " (length scale 0.25), 3-layer leaky ReLU 0.2, uniform"
        ),
    ),
    "tiny": SyntheticConfig(
        n_sources=2,
        n_segments=5,
        samples_per_segment=100,
        n_layers=2,
        n_threshold_draws=1_000,
        description="tiny test set: D=2, 5x100, Laplace, 2-layer leaky ReLU 0.2, uniform",
    ),
}


MIXING_FAMILY: dict[str, dict[str, Any]] = {
    "leaky_relu-0.05": {"activation": "leaky_relu", "slope": 0.05},
    "leaky_relu-0.2": {"activation": "leaky_relu", "slope": 0.2},
    "leaky_relu-0.5": {"activation": "leaky_relu", "slope": 0.5},
    "xtanh": {"activation": "xtanh", "slope": 0.1},
    "asinh": {"activation": "asinh", "slope": 1.0},
    "smooth_leaky_relu": {"activation": "smooth_leaky_relu", "slope": 0.2},
    "leaky_elu": {"activation": "leaky_elu", "slope": 0.2},
    "tanhshrink": {"activation": "tanhshrink", "slope": 0.2},
}
"""Mixing nonlinearities for robustness sweeps: overrides of any preset (made for ``"ivae"``:
5 sources, 40 x 1000, 3 layers). Leaky ReLU at three slopes (piecewise linear, asymmetric),
xtanh (iVAE; compressive with linear tails), asinh (compressive, logarithmic tails),
smooth leaky ReLU and leaky ELU (smooth, asymmetric), tanhshrink (expansive shape, bounded).
Usage: ``make_preset("ivae", seed, **MIXING_FAMILY["asinh"])``."""


def generate_dataset(
    seed: int | np.random.Generator, config: SyntheticConfig | ContinuousConfig
) -> Dataset:
    """Generates sources, mixing and observations for ``config``.

    Sources and mixing use independent child streams of ``seed``, so changing the mixing
    settings leaves the sources unchanged and vice versa.

    Args:
        seed: integer seed or numpy Generator.
        config: the benchmark configuration.

    Returns:
        A :class:`Dataset` with ``x (N, D)``, ``s (N, D)``, ``u`` (``(N,)`` int64 segment
        labels, or ``(N, d)`` float64 for a :class:`ContinuousConfig`), the mixing, and
        ``config``: the dataclass fields as a dict plus ``"source_params"``, the source
        distribution (:meth:`SegmentSourceParams.to_dict` or
        :meth:`~synthetic.continuous.ContinuousSourceParams.to_dict`), so that
        :func:`synthetic.truth.true_log_likelihood` can evaluate the true density.
    """
    source_rng, mixing_rng = np.random.default_rng(seed).spawn(2)
    s, u, params = config.draw_sources(source_rng)
    mixing = _draw_mixing(mixing_rng, config)
    record = dataclasses.asdict(config)
    record["source_params"] = params.to_dict()
    return Dataset(x=mixing(s), s=s, u=u, mixing=mixing, config=record)


def _draw_mixing(rng: np.random.Generator, config: SyntheticConfig | ContinuousConfig) -> Mixing:
    """The mixing of ``config``, drawn from ``rng`` (the mixing's child stream)."""
    mixing = random_mixing(
        rng,
        config.n_sources,
        config.n_layers,
        activation=config.activation,
        slope=config.slope,
        family=config.family,
        convention=config.convention,
        n_threshold_draws=config.n_threshold_draws,
        shared_matrix=config.shared_matrix,
    )
    if config.transpose_matrices:
        mixing = dataclasses.replace(
            mixing, matrices=tuple(np.ascontiguousarray(a.T) for a in mixing.matrices)
        )
    return mixing


def _draw_params(rng: np.random.Generator, config: SyntheticConfig) -> SegmentSourceParams:
    """The per-segment source parameters of ``config``, drawn from ``rng`` (the sources' child
    stream of :func:`generate_dataset`)."""
    return draw_segment_params(
        rng,
        config.n_segments,
        config.n_sources,
        distribution=config.distribution,
        scale_range=config.scale_range,
        mean_range=config.mean_range,
        df=config.df,
    )


def replay_source_params(config: dict[str, Any]) -> SegmentSourceParams:
    """Recovers the source parameters of a dataset made by :func:`make_preset` with an integer
    seed from its recorded ``config`` (for files written before ``"source_params"`` was
    recorded): re-draws them from the same child stream.

    Args:
        config: a :class:`Dataset` ``config`` with the :class:`SyntheticConfig` fields and an
            integer ``"seed"``.

    Raises:
        ValueError: the config lacks the seed or a field needed.
    """
    names = {f.name for f in dataclasses.fields(SyntheticConfig)}
    if "seed" not in config:
        raise ValueError("config has neither 'source_params' nor an integer 'seed' to replay")
    try:
        fields = {k: config[k] for k in names if k in config}
        mean_range = fields.get("mean_range")
        fields["scale_range"] = tuple(fields["scale_range"])
        fields["mean_range"] = None if mean_range is None else tuple(mean_range)
        synthetic_config = SyntheticConfig(**fields)
    except (KeyError, TypeError) as err:
        raise ValueError(f"config cannot be replayed: {err!r}") from err
    source_rng, _ = np.random.default_rng(int(config["seed"])).spawn(2)
    return _draw_params(source_rng, synthetic_config)


def make_preset(name: str, seed: int | np.random.Generator, **overrides: Any) -> Dataset:
    """Builds the named benchmark, optionally overriding configuration fields.

    Args:
        name: a key of :data:`PRESETS`.
        seed: integer seed or numpy Generator.
        **overrides: fields of the preset's config (:class:`SyntheticConfig` or
            :class:`ContinuousConfig`) to replace (e.g. ``n_layers=4``).

    Returns:
        The :class:`Dataset`; its ``config`` also records ``preset`` and (integer) ``seed``.

    Raises:
        ValueError: unknown preset name or unknown override field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(PRESETS[name])}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; valid fields: {sorted(fields)}")
    config = dataclasses.replace(PRESETS[name], **overrides)
    dataset = generate_dataset(seed, config)
    assert dataset.config is not None
    dataset.config["preset"] = name
    if isinstance(seed, int | np.integer):
        dataset.config["seed"] = int(seed)
    return dataset
