"""Synthetic data for nonlinear ICA: nonstationary sources, invertible mixings, presets, toys."""

from synthetic.dataset import Dataset, load_dataset, save_dataset, validate_arrays
from synthetic.mixing import (
    ACTIVATIONS,
    CONVENTIONS,
    FAMILIES,
    Mixing,
    condition_threshold,
    leaky_relu,
    leaky_relu_inverse,
    random_matrix,
    random_mixing,
    xtanh,
    xtanh_inverse,
)
from synthetic.presets import PRESETS, SyntheticConfig, generate_dataset, make_preset
from synthetic.sources import (
    DISTRIBUTIONS,
    ar1_sources,
    continuous_aux_sources,
    segment_sources,
    unit_noise,
)
from synthetic.toy2d import TOY2D, sample_toy2d

__all__ = [
    "ACTIVATIONS",
    "CONVENTIONS",
    "DISTRIBUTIONS",
    "FAMILIES",
    "PRESETS",
    "TOY2D",
    "Dataset",
    "Mixing",
    "SyntheticConfig",
    "ar1_sources",
    "condition_threshold",
    "continuous_aux_sources",
    "generate_dataset",
    "leaky_relu",
    "leaky_relu_inverse",
    "load_dataset",
    "make_preset",
    "random_matrix",
    "random_mixing",
    "sample_toy2d",
    "save_dataset",
    "segment_sources",
    "unit_noise",
    "validate_arrays",
    "xtanh",
    "xtanh_inverse",
]
