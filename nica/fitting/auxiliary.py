"""The auxiliary variable ``u``: how an array is read, and the map of segment labels to rows.

One rule for every entry point (``nica.fit``, the baselines, ``nica fit``, a fitted model's
``transform`` / ``log_likelihood``):

* **segment labels**: a 1-D array ``(N,)`` of integers, whole floats, booleans or strings; an
  integer (or boolean, or string) column ``(N, 1)``; one-hot rows ``(N, M)``, ``M >= 2`` (every
  value 0 or 1 and one 1 per row, any dtype: the format iVAE's and ICE-BeeM's generators write;
  the label is the column index).
* **continuous covariates**: a float array ``(N, d)`` that is not one-hot (``u = t`` as
  ``t[:, None]``).
* anything else (a non-whole float vector, an integer matrix that is not one-hot) is refused
  with a one-line error saying how to pass it.

Segment labels are any values: at fit time the sorted distinct labels are numbered ``0..M-1``
(the rows of the conditional prior) and the label set is saved with the model (``aux["labels"]``),
so ``u = 7 * k + 3`` builds ``M`` rows, not ``max(u) + 1``. New data are mapped through the
saved set; a label never seen in training is a one-line ``ValueError`` naming it.

:func:`check_segments` refuses segment layouts that cannot identify anything (one segment,
segments too small to estimate their parameters) and warns (:class:`IdentifiabilityWarning`)
when there are fewer segments than the identifiability theorems ask for (``2D + 1``: Hyvarinen,
Sasaki & Turner 2019, Theorem 1; Khemakhem et al. 2020, iVAE, Theorem 1 with ``k = 2``
sufficient statistics, a location and a scale, per component).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nica.util.warn import warn

__all__ = [
    "MIN_SEGMENT_ROWS",
    "AuxReading",
    "IdentifiabilityWarning",
    "check_segments",
    "encode_aux",
    "known_labels",
    "read_aux",
]

#: Fewest rows a segment may have: its prior has a location and a scale per component, and a
#: scale fitted to fewer points than this (a tenth of them held out for validation) is
#: degenerate (one point: the likelihood is unbounded as the scale shrinks to it).
MIN_SEGMENT_ROWS = 5


class IdentifiabilityWarning(UserWarning):
    """The data meet a condition under which the theory does not guarantee identifiability."""


class AuxReading(NamedTuple):
    """How ``u`` was read for a fit.

    Attributes:
      aux: ``{"kind": "segments", "n_segments": M, "labels": [...]}`` (the sorted distinct
        labels, JSON values) or ``{"kind": "continuous", "aux_dim": d}``.
      values: the prior's input: label codes ``0..M-1`` ``(N,)`` int32, or covariates
        ``(N, d)`` float32.
      description: one line saying how ``u`` was read.
    """

    aux: dict
    values: np.ndarray
    description: str


def _whole_labels(u: np.ndarray, where: str) -> np.ndarray:
    """A 1-D array as label values: ints (from ints, bools or whole floats) or strings."""
    kind = u.dtype.kind
    if kind in "US":
        return u.astype(str)
    if kind == "b":
        return u.astype(np.int64)
    if kind in "iu":
        if u.size and u.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{where}: segment labels above int64 ({u.max()})")
        return u.astype(np.int64)
    if kind == "f":
        if not np.all(np.isfinite(u)) or np.any(u != np.round(u)):
            raise ValueError(
                f"{where}: 1-D u of dtype {u.dtype} holds non-integer values: segment labels"
                " must be whole numbers or strings; pass a continuous covariate as a float"
                " column of shape (N, 1)"
            )
        return u.astype(np.int64)
    raise ValueError(f"{where}: u must hold numbers or strings, got dtype {u.dtype}")


def _is_one_hot(u: np.ndarray) -> bool:
    if u.ndim != 2 or u.shape[1] < 2 or u.dtype.kind not in "biuf":
        return False
    binary = (u == 0) | (u == 1)
    return bool(binary.all() and np.all(u.sum(axis=1) == 1))


def _read(u, where: str) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """``(label values (N,) or None, covariates (N, d) or None, description)``."""
    u = np.asarray(u)
    n = u.shape[0] if u.ndim else 0
    if u.ndim == 1:
        return _whole_labels(u, where), None, f"segment labels (1-D, dtype {u.dtype})"
    if u.ndim != 2 or u.shape[1] < 1:
        raise ValueError(f"{where}: u must have shape (N,) or (N, d), got {u.shape}")
    d = u.shape[1]
    if _is_one_hot(u):
        return np.argmax(u, axis=1).astype(np.int64), None, f"one-hot segment labels ({n}, {d})"
    if u.dtype.kind == "f":
        if not np.all(np.isfinite(u)):
            raise ValueError(f"{where}: u contains NaN or Inf")
        what = "a continuous covariate" if d == 1 else f"{d} continuous covariates"
        return None, u.astype(np.float32), f"{what} (float, shape ({n}, {d}))"
    if d == 1:
        labels = _whole_labels(u[:, 0], where)
        return labels, None, f"segment labels (one column, dtype {u.dtype})"
    raise ValueError(
        f"{where}: u of dtype {u.dtype} and shape ({n}, {d}) is neither segment labels ((N,),"
        f" (N, 1) or one-hot rows) nor covariates; cast it to float to use it as {d} covariates"
    )


def _json_label(value) -> int | str:
    return value.item() if isinstance(value, np.generic) and value.dtype.kind != "U" else str(value)


def read_aux(u, *, where: str = "data") -> AuxReading | None:
    """Reads the ``u`` of a fit (``None``: no auxiliary variable, ``None`` returned).

    Raises:
      ValueError: one line, starting with ``where``, when ``u`` is neither labels nor
        covariates (see the module docstring).
    """
    if u is None:
        return None
    labels, covariates, how = _read(u, where)
    if labels is None:
        aux = {"kind": "continuous", "aux_dim": int(covariates.shape[1])}
        return AuxReading(aux, covariates, f"u read as {how}")
    known, codes = np.unique(labels, return_inverse=True)
    aux = {
        "kind": "segments",
        "n_segments": int(known.size),
        "labels": [_json_label(v) for v in known],
    }
    return AuxReading(aux, codes.astype(np.int32), f"u read as {known.size} {how}")


def known_labels(aux: dict) -> np.ndarray:
    """The fitted label set, sorted: the order of the prior's rows (``0..M-1`` for models
    saved before labels were recorded)."""
    labels = aux.get("labels")
    if labels is None:
        return np.arange(aux["n_segments"], dtype=np.int64)
    if all(isinstance(v, str) for v in labels):
        return np.asarray(labels, dtype=str)
    return np.asarray(labels, dtype=np.int64)


def _summary(values) -> str:
    shown = ", ".join(repr(v.item()) if isinstance(v, np.generic) else repr(v) for v in values[:5])
    return shown + (f", ... ({len(values)} in all)" if len(values) > 5 else "")


def encode_aux(u, aux: dict | None, *, where: str = "u") -> np.ndarray | None:
    """The prior's input for new ``u`` of a model fitted with ``aux`` (see :func:`read_aux`).

    Returns label codes ``(N,)`` int32 (through the saved label set), covariates ``(N, d)``
    float32, or ``None`` for an unconditional model.

    Raises:
      ValueError: one line: ``u`` missing or given where it does not belong, of the wrong kind
        or width, or holding labels never seen in training (named).
    """
    if aux is None:
        if u is not None:
            raise ValueError(f"{where}: the model is unconditional (Eq. 3): pass no u")
        return None
    if u is None:
        raise ValueError(f"{where}: the model is conditional (Eq. 4): pass u")
    labels, covariates, how = _read(u, where)
    if aux["kind"] == "continuous":
        width = aux["aux_dim"]
        if covariates is None or covariates.shape[1] != width:
            raise ValueError(
                f"{where}: the model was fitted on {width} float covariate(s), shape (N,"
                f" {width}); u was read as {how}"
            )
        return covariates
    if labels is None:
        raise ValueError(
            f"{where}: the model was fitted on segment labels; u was read as {how}: pass labels"
        )
    known = known_labels(aux)
    if (labels.dtype.kind == "U") != (known.dtype.kind == "U"):
        unseen = np.unique(labels)
    else:
        position = np.clip(np.searchsorted(known, labels), 0, known.size - 1)
        unseen = np.unique(labels[known[position] != labels])
    if unseen.size:
        raise ValueError(
            f"{where}: label(s) {_summary(unseen)} never seen in training; the model knows"
            f" {known.size} label(s): {_summary(known)}"
        )
    return np.searchsorted(known, labels).astype(np.int32)


def _rows(label, count: int) -> str:
    return f"{label!r} ({count} row{'' if count == 1 else 's'})"


def check_segments(reading: AuxReading, dim: int, *, where: str = "data") -> None:
    """Refuses segment layouts that cannot work; warns where identifiability is not assured.

    Raises ``ValueError`` (one line) for a single segment or a segment with fewer than
    :data:`MIN_SEGMENT_ROWS` rows; warns :class:`IdentifiabilityWarning` when there are fewer
    than ``2 * dim + 1`` segments. Covariates pass unchecked.
    """
    if reading.aux["kind"] != "segments":
        return
    labels = reading.aux["labels"]
    n_segments = len(labels)
    if n_segments < 2:
        raise ValueError(
            f"{where}: u holds a single segment label ({labels[0]!r}): the conditional model"
            " needs at least 2 segments (drop u to fit the unconditional model)"
        )
    counts = np.bincount(reading.values, minlength=n_segments)
    small = np.flatnonzero(counts < MIN_SEGMENT_ROWS)
    if small.size:
        named = ", ".join(_rows(labels[i], counts[i]) for i in small[:3])
        more = f" and {small.size - 3} more" if small.size > 3 else ""
        raise ValueError(
            f"{where}: segment(s) {named}{more} have fewer than {MIN_SEGMENT_ROWS} rows: too"
            " few to estimate a segment's location and scale; merge or drop them"
        )
    needed = 2 * dim + 1
    if n_segments < needed:
        warn(
            f"{where}: {n_segments} segments for {dim} sources; identifiability is guaranteed"
            f" from 2D+1 = {needed} segments on (iVAE Theorem 1, Khemakhem et al. 2020)",
            IdentifiabilityWarning,
        )
