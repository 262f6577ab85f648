"""nica: exact maximum-likelihood nonlinear ICA with relative-gradient training.

Start with :func:`fit` (arrays in, :class:`FittedModel` out; the defaults of ``nica fit``) and
:func:`load`. :func:`train` is the low-level trainer of a Flax module.
"""

from nica.core.activations import ACTIVATIONS, make_activation
from nica.core.gradients import GRADIENTS, GradientMode, get_gradient, resolve_gradient
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork, InvertibleDense
from nica.core.priors import PRIORS, make_prior
from nica.core.relative import relative_dense, relative_log_abs_det
from nica.fitting.auxiliary import IdentifiabilityWarning
from nica.fitting.estimator import FitConfig, FittedModel, build_model, fit, fit_seeds, load
from nica.fitting.training import (
    FitResult,
    ProgressEvent,
    TrainingDivergedError,
    train,
    train_seeds,
)

__version__ = "0.2.0"

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "GRADIENTS",
    "PRIORS",
    "DemixingNetwork",
    "FitConfig",
    "FitResult",
    "FittedModel",
    "GradientMode",
    "IdentifiabilityWarning",
    "ICAModel",
    "InvertibleDense",
    "ProgressEvent",
    "TrainingDivergedError",
    "build_model",
    "fit",
    "fit_seeds",
    "get_gradient",
    "resolve_gradient",
    "load",
    "make_activation",
    "make_prior",
    "relative_dense",
    "relative_log_abs_det",
    "train",
    "train_seeds",
]
