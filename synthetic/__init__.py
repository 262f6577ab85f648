"""Synthetic data for nonlinear ICA: nonstationary sources, invertible mixings, presets, toys."""

from synthetic.continuous import (
    AUX_KINDS,
    ContinuousSourceParams,
    continuous_aux_sources,
    draw_continuous_params,
    sample_continuous_sources,
)
from synthetic.dataset import Dataset, load_dataset, save_dataset, validate_arrays
from synthetic.elementwise import (
    ACTIVATION_REGISTRY,
    ACTIVATIONS,
    DEFAULT_SLOPES,
    Activation,
    get_activation,
    leaky_relu,
    leaky_relu_inverse,
    xtanh,
    xtanh_inverse,
)
from synthetic.matrices import FAMILIES, condition_threshold, random_matrix
from synthetic.mixing import CONVENTIONS, Mixing, random_mixing
from synthetic.presets import (
    MIXING_FAMILY,
    PRESETS,
    ContinuousConfig,
    SyntheticConfig,
    generate_dataset,
    make_preset,
)
from synthetic.sources import (
    DISTRIBUTIONS,
    SegmentSourceParams,
    ar1_sources,
    draw_segment_params,
    sample_segment_sources,
    segment_sources,
    unit_log_density,
    unit_noise,
)
from synthetic.toy2d import TOY2D, sample_toy2d
from synthetic.truth import (
    has_true_marginal,
    nll_gap,
    sample_from_truth,
    source_params,
    true_log_likelihood,
    true_marginal_log_likelihood,
)

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_REGISTRY",
    "AUX_KINDS",
    "CONVENTIONS",
    "DEFAULT_SLOPES",
    "DISTRIBUTIONS",
    "FAMILIES",
    "MIXING_FAMILY",
    "PRESETS",
    "TOY2D",
    "Activation",
    "ContinuousConfig",
    "ContinuousSourceParams",
    "Dataset",
    "Mixing",
    "SegmentSourceParams",
    "SyntheticConfig",
    "ar1_sources",
    "condition_threshold",
    "continuous_aux_sources",
    "draw_continuous_params",
    "draw_segment_params",
    "generate_dataset",
    "get_activation",
    "has_true_marginal",
    "leaky_relu",
    "leaky_relu_inverse",
    "load_dataset",
    "make_preset",
    "random_matrix",
    "random_mixing",
    "nll_gap",
    "sample_continuous_sources",
    "sample_from_truth",
    "sample_segment_sources",
    "sample_toy2d",
    "save_dataset",
    "segment_sources",
    "source_params",
    "true_log_likelihood",
    "true_marginal_log_likelihood",
    "unit_log_density",
    "unit_noise",
    "validate_arrays",
    "xtanh",
    "xtanh_inverse",
]
