"""``NonlinearICA``: :func:`nica.fit` as a scikit-learn estimator (needs scikit-learn).

A transformer for pipelines, grid searches and ``clone``: its parameters are the flat settings
of :class:`nica.FitConfig` (``FitConfig().flat()``: the same names and defaults as
:func:`nica.fit` and ``nica fit``, but ``init`` for the flat ``warm_start``: scikit-learn
reserves ``warm_start`` for a boolean that reuses the previous fit) plus ``progress``.
``fit(X, y)`` reads ``y`` as the auxiliary variable ``u`` (segment labels or covariates) of
the conditional model (Eq. 4); without ``y`` the unconditional model (Eq. 3) is fitted. Only
users who have scikit-learn (``pip install 'nica[baselines]'``) import this module;
``import nica`` does not.
"""

from __future__ import annotations

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
    from sklearn.utils.validation import check_array, check_is_fitted
except ImportError as err:  # tests/test_sklearn.py hides scikit-learn to check this
    raise ImportError(
        "nica.sklearn needs scikit-learn: pip install scikit-learn (or pip install"
        " 'nica[baselines]')"
    ) from err

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the estimator's own method

    def validate_data(estimator, X, **check_params):
        return estimator._validate_data(X, **check_params)


import nica
from nica.fitting.config import FLAT_NAMES

#: Flat settings whose estimator parameter has another name (scikit-learn's checks set a
#: ``warm_start`` parameter to ``False``, its meaning there: do not reuse the previous fit).
PARAMETER_OF = {"warm_start": "init"}

__all__ = ["PARAMETER_OF", "NonlinearICA"]


class NonlinearICA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Exact maximum-likelihood nonlinear ICA (:func:`nica.fit`) as a scikit-learn transformer.

    Every parameter but ``progress`` is a flat setting of :class:`nica.FitConfig`, with its
    default (docs/configuration.md; ``init`` is the flat ``warm_start``,
    :data:`PARAMETER_OF`); ``__init__`` only stores them: a bad value is nica's
    one-line ``ValueError`` at :meth:`fit`. ``seed`` plays ``random_state``'s part: the same
    seed and data give the same fit.

    Which model is fitted follows :func:`nica.fit`: the conditional model (Eq. 4) when ``u``
    is given (as ``y`` or ``u=``) and ``conditional`` is true; else the unconditional one
    (Eq. 3), and a ``u`` given with ``conditional=False`` is ignored, by :meth:`fit` as by the
    scoring methods. ``conditional_`` says which was fitted.

    Args:
      progress: ``None`` (default: silent), ``"auto"`` (progress bars when a person watches)
        or a callable receiving each :class:`nica.ProgressEvent` (see :func:`nica.fit`).

    Attributes:
      model_: the :class:`nica.FittedModel`.
      n_features_in_: ``D``, the columns of ``X``.
      feature_names_in_: ``X``'s column names, when ``X`` was a data frame with string names.
      n_components_: ``D`` (nonlinear ICA recovers as many sources as there are columns).
      depth_: the depth of the demixer kept (a depth search's choice).
      conditional_: whether the fitted model uses ``u`` (Eq. 4).
    """

    def __init__(
        self,
        *,
        seed=0,
        epochs=300,
        depth="auto",
        prior="auto",
        prior_shape_init=None,
        conditional=True,
        gradient="auto",
        activation="monotone_spline",
        slope=5.0,
        sharpness=10.0,
        activation_knots=None,
        activation_sharpness=6.0,
        activation_tail_slope=1.0,
        learning_rate=0.01,
        lr_reference_dim=10,
        batch_size=256,
        clip_norm=10.0,
        validation_fraction=0.1,
        patience=None,
        eval_every=10,
        standardise=True,
        restarts=8,
        restart_epochs=None,
        init="auto",
        progress=None,
    ):
        self.seed = seed
        self.epochs = epochs
        self.depth = depth
        self.prior = prior
        self.prior_shape_init = prior_shape_init
        self.conditional = conditional
        self.gradient = gradient
        self.activation = activation
        self.slope = slope
        self.sharpness = sharpness
        self.activation_knots = activation_knots
        self.activation_sharpness = activation_sharpness
        self.activation_tail_slope = activation_tail_slope
        self.learning_rate = learning_rate
        self.lr_reference_dim = lr_reference_dim
        self.batch_size = batch_size
        self.clip_norm = clip_norm
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.eval_every = eval_every
        self.standardise = standardise
        self.restarts = restarts
        self.restart_epochs = restart_epochs
        self.init = init
        self.progress = progress

    def fit(self, X, y=None, *, u=None):
        """Fits the model to ``X (N, D)``, ``D >= 2``; returns ``self``.

        Args:
          X: observations, shape ``(N, D)``, finite.
          y: the auxiliary variable ``u`` (what a ``Pipeline`` passes on): segment labels
            ``(N,)`` or covariates ``(N, d)`` (docs/data.md); ``None``: the unconditional model.
          u: the same, by its own name (give ``y`` or ``u``, not both).

        Raises:
          ValueError: one line: bad settings (nica's, before the data is read), bad data, or
            both ``y`` and ``u``. nica.TrainingDivergedError: the fit diverged.
        """
        u = _one_aux(y, u)
        config = nica.FitConfig.from_flat(
            {name: getattr(self, PARAMETER_OF.get(name, name)) for name in FLAT_NAMES}
        )
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, ensure_min_features=2)
        self.model_ = nica.fit(X, u, config=config, progress=self.progress)
        self.n_components_ = self.model_.dim
        self.depth_ = int(self.model_.config.model.depth)
        self.conditional_ = self.model_.aux is not None
        return self

    def transform(self, X) -> np.ndarray:
        """Recovered sources of ``X (N, D)``, shape ``(N, D)``, float64 (``u`` is not needed)."""
        X = self._checked(X)
        return np.asarray(self.model_.transform(X), np.float64)

    def inverse_transform(self, S) -> np.ndarray:
        """Observations of sources ``S (N, D)`` in ``X``'s units, shape ``(N, D)``."""
        check_is_fitted(self)
        S = check_array(S, dtype=np.float64)
        if S.shape[1] != self.n_components_:
            raise ValueError(
                f"S has shape {S.shape}, but {type(self).__name__} has"
                f" {self.n_components_} components: expected (N, {self.n_components_})"
            )
        return self.model_.inverse(S)

    def score_samples(self, X, y=None, *, u=None) -> np.ndarray:
        """Exact ``log p(x | u)`` of each row, nats in ``X``'s units, shape ``(N,)``.

        ``u`` (as ``y`` or ``u=``) is needed by a conditional model (labels read through the
        fit's label set) and ignored by an unconditional one, as :meth:`fit` ignores it.
        """
        X = self._checked(X)
        u = _one_aux(y, u)
        return self.model_.log_likelihood(X, u if self.conditional_ else None)

    def score(self, X, y=None, *, u=None) -> float:
        """Mean exact log-likelihood per row, nats in ``X``'s units (:meth:`score_samples`)."""
        return float(np.mean(self.score_samples(X, y, u=u)))

    @property
    def _n_features_out(self) -> int:
        """Columns of :meth:`transform`'s output (``get_feature_names_out``)."""
        return self.n_components_

    def _checked(self, X) -> np.ndarray:
        """``X`` as a float64 ``(N, D)`` array of the fitted width (one-line ``ValueError``)."""
        check_is_fitted(self)
        shape = check_array(X, dtype=np.float64).shape
        if shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {shape[1]} features, but {type(self).__name__} is expecting"
                f" {self.n_features_in_} features as input: got shape {shape}"
            )
        return validate_data(self, X, dtype=np.float64, reset=False)  # feature names too


def _one_aux(y, u):
    """The auxiliary variable given as ``y`` or as ``u`` (a one-line ``ValueError`` if both)."""
    if y is not None and u is not None:
        raise ValueError("pass the auxiliary variable as y or as u, not both")
    return u if y is None else y
