"""A density data set split once into train / validation / test rows and mapped through ``T``.

Every model compared on one seed (nica, the Gaussian baselines, other flows) reads the same
:class:`DensityData`; the test rows are never trained or selected on.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from nica.apps.density.preprocessing import Preprocessing
from nica.fitting.auxiliary import encode_aux, read_aux

__all__ = [
    "DensityData",
    "Split",
    "prepare_density_data",
    "split_indices",
    "training_class_log_prior",
]


class Split(NamedTuple):
    """Row indices of the three parts of a data set, each sorted."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_indices(
    key: jax.Array, n: int, test_fraction: float, validation_fraction: float
) -> Split:
    """A random train / validation / test split of ``n`` rows (fractions of ``n``)."""
    n_test = int(round(test_fraction * n))
    n_val = int(round(validation_fraction * n))
    if not (0 < test_fraction < 1 and 0 < validation_fraction < 1) or min(n_test, n_val) < 1:
        raise ValueError(
            f"test_fraction={test_fraction} and validation_fraction={validation_fraction} must"
            f" each leave at least one of {n} rows"
        )
    if n - n_test - n_val < 2:
        raise ValueError(f"the test and validation splits leave under 2 of {n} rows to train on")
    order = np.asarray(jax.random.permutation(key, n))
    parts = order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]
    return Split(*(np.sort(p) for p in parts))


@dataclasses.dataclass(frozen=True)
class DensityData:
    """One seed's data in the model's space, split once and shared by every model compared.

    Attributes:
      split: the row indices of the input.
      v: the dequantised input (one noise draw; the input itself without dequantisation),
        shape ``(N, D)``: validation and test rows are evaluated at these values.
      z_train: ``T`` of the training rows, ``copies`` times with fresh noise each,
        shape ``(copies * n_train, D)``.
      z_val, z_test: ``T(v)`` of the validation and test rows.
      log_det_val, log_det_test: ``log|det dT/dv|`` of the validation and test rows,
        ``(n_val,)`` and ``(n_test,)``.
      u_train, u_val, u_test: the labels of those rows as given (``u_train`` repeated like
        ``z_train``), or ``None``.
      aux: how the labels were read (``nica.fitting.auxiliary.read_aux``: the sorted label set), or
        ``None``; :meth:`codes` maps labels to their rows ``0..M-1``.
    """

    split: Split
    v: np.ndarray
    z_train: np.ndarray
    z_val: np.ndarray
    z_test: np.ndarray
    log_det_val: np.ndarray
    log_det_test: np.ndarray
    u_train: np.ndarray | None
    u_val: np.ndarray | None
    u_test: np.ndarray | None
    aux: dict | None = None

    def codes(self, u: np.ndarray | None) -> np.ndarray | None:
        """Label codes ``0..M-1`` of labels ``u`` (one of ``u_train``, ``u_val``, ``u_test``)."""
        return None if u is None else encode_aux(u, self.aux)


def _read_labels(u, n: int, where: str) -> tuple[np.ndarray | None, dict | None]:
    """Class labels ``u`` as given ``(N,)`` (one-hot rows as column indices) and their label
    set; a one-line ValueError for covariates or a wrong length."""
    if u is None:
        return None, None
    u = np.asarray(u)
    if u.ndim == 0 or u.shape[0] != n:
        raise ValueError(f"{where}: 'u' has shape {u.shape} but 'x' has {n} rows")
    reading = read_aux(u, where=where)
    if reading.aux["kind"] != "segments":
        raise ValueError(f"{where}: density conditioning needs class labels; {reading.description}")
    labels = np.asarray(reading.aux["labels"])[reading.values]
    return labels, reading.aux


def prepare_density_data(
    key: jax.Array,
    x,
    u=None,
    *,
    preprocessing: Preprocessing,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    copies: int = 1,
    where: str = "data",
) -> DensityData:
    """Checks ``x (N, D)`` (and labels ``u (N,)``), splits it and maps it through ``T``.

    ``key`` is split into the split's key and the noise's. With dequantisation, the
    training rows appear ``copies`` times with independent noise (the objective is the
    expectation over the noise; copies estimate it better than one draw, and no noise draw of
    a validation or test row is ever trained on).
    """
    preprocessing = preprocessing.validate()
    if copies < 1 or (copies > 1 and not preprocessing.dequantise):
        raise ValueError(f"copies={copies}: more than 1 copy needs dequantisation")
    x = preprocessing.check(x, where=where)
    labels, aux = _read_labels(u, x.shape[0], where)
    split_key, noise_key = jax.random.split(key)
    split = split_indices(split_key, x.shape[0], test_fraction, validation_fraction)
    keys = jax.random.split(noise_key, copies)
    v = preprocessing.dequantised(keys[0], x)
    extra = [preprocessing.dequantised(k, x[split.train]) for k in keys[1:]]
    z_train = preprocessing.forward_and_log_det(np.concatenate([v[split.train], *extra]))[0]
    z_val, log_det_val = preprocessing.forward_and_log_det(v[split.validation])
    z_test, log_det_test = preprocessing.forward_and_log_det(v[split.test])
    pick = lambda idx, k=1: None if labels is None else np.tile(labels[idx], k)  # noqa: E731
    return DensityData(
        split,
        v,
        z_train,
        z_val,
        z_test,
        log_det_val,
        log_det_test,
        pick(split.train, copies),
        pick(split.validation),
        pick(split.test),
        aux,
    )


def training_class_log_prior(data: DensityData, n_classes: int) -> np.ndarray:
    """``log p(c)``, shape ``(n_classes,)``: the class frequencies of the training rows, in
    the order of the label set (``data.aux["labels"]``)."""
    counts = np.bincount(data.codes(data.u_train), minlength=n_classes).astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())
