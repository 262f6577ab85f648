"""nica: exact maximum-likelihood nonlinear ICA with relative-gradient training."""

from nica.activations import ACTIVATIONS, make_activation
from nica.model import ICAModel
from nica.network import GRADIENTS, DemixingNetwork, InvertibleDense
from nica.priors import PRIORS, make_prior
from nica.relative import relative_dense, relative_log_abs_det
from nica.training import FitResult, TrainingDivergedError, fit

__all__ = [
    "ACTIVATIONS",
    "GRADIENTS",
    "PRIORS",
    "DemixingNetwork",
    "FitResult",
    "ICAModel",
    "InvertibleDense",
    "TrainingDivergedError",
    "fit",
    "make_activation",
    "make_prior",
    "relative_dense",
    "relative_log_abs_det",
]
