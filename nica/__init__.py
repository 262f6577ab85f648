"""nica: exact maximum-likelihood nonlinear ICA with relative-gradient training.

Start with :func:`fit` (arrays in, :class:`FittedModel` out; the defaults of ``nica fit``) and
:func:`load`. :func:`train` is the low-level trainer of a Flax module.
"""

from nica.activations import ACTIVATIONS, make_activation
from nica.auxiliary import IdentifiabilityWarning
from nica.estimator import FitConfig, FittedModel, build_model, fit, fit_seeds, load
from nica.gradients import GRADIENTS, GradientMode, get_gradient, resolve_gradient
from nica.model import ICAModel
from nica.network import DemixingNetwork, InvertibleDense
from nica.priors import PRIORS, make_prior
from nica.relative import relative_dense, relative_log_abs_det
from nica.training import FitResult, ProgressEvent, TrainingDivergedError, train, train_seeds

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
