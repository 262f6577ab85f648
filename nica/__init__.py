"""nica: exact maximum-likelihood nonlinear ICA with relative-gradient training.

Start with :func:`fit` (arrays in, :class:`FittedModel` out; the defaults of ``nica fit``) and
:func:`load`; :func:`stability` says which components come back across seeds (no ground truth
needed); :class:`FitConfig` composes the typed settings (:class:`ModelConfig`,
:class:`OptimizerConfig`, :class:`LoopConfig`, :class:`RestartConfig`). :func:`train` is the
low-level trainer of a Flax module.

Importing nica turns on JAX's persistent compilation cache in a private per-user folder
(``~/.cache/nica/jax``; ``NICA_CACHE_DIR`` moves it, ``NICA_CACHE_DIR=off`` turns it off,
:func:`set_cache_dir` does either from code; a ``JAX_COMPILATION_CACHE_DIR`` of the user's is
kept): see :mod:`nica.util.cache`.
"""

from nica.core.activations import ACTIVATIONS, make_activation
from nica.core.gradients import GRADIENTS, GradientMode, get_gradient, resolve_gradient
from nica.core.metrics import mean_correlation_coefficient
from nica.core.model import ICAModel
from nica.core.network import DemixingNetwork, InvertibleDense
from nica.core.priors import PRIORS, make_prior
from nica.core.relative import relative_dense, relative_log_abs_det
from nica.fitting.auxiliary import IdentifiabilityWarning
from nica.fitting.build import build_model
from nica.fitting.config import (
    DepthSearch,
    FitConfig,
    LoopConfig,
    ModelConfig,
    OptimizerConfig,
    PriorSpec,
    RestartConfig,
)
from nica.fitting.estimator import fit, fit_seeds
from nica.fitting.fitted import FittedModel, load
from nica.fitting.stability import Stability, stability
from nica.fitting.stopping import FitResult, ProgressEvent, TrainingDivergedError
from nica.fitting.training import train, train_seeds
from nica.util.cache import enable_default_cache as _enable_default_cache
from nica.util.cache import set_cache_dir

_enable_default_cache()  # before the first compilation; cheap, never raises

__version__ = "0.3.0"

__all__ = [
    "__version__",
    "ACTIVATIONS",
    "GRADIENTS",
    "PRIORS",
    "DemixingNetwork",
    "DepthSearch",
    "FitConfig",
    "FitResult",
    "FittedModel",
    "GradientMode",
    "IdentifiabilityWarning",
    "ICAModel",
    "InvertibleDense",
    "LoopConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PriorSpec",
    "ProgressEvent",
    "RestartConfig",
    "Stability",
    "TrainingDivergedError",
    "build_model",
    "fit",
    "fit_seeds",
    "get_gradient",
    "resolve_gradient",
    "load",
    "make_activation",
    "make_prior",
    "mean_correlation_coefficient",
    "relative_dense",
    "relative_log_abs_det",
    "set_cache_dir",
    "stability",
    "train",
    "train_seeds",
]
