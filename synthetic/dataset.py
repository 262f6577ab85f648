"""The :class:`Dataset` record and its ``.npz`` file format.

File format (the same one the ``nica`` CLI reads):

* ``x``: observations, ``(N, D)`` float. Required.
* ``s``: true sources, ``(N, D)`` float. Optional.
* ``u``: auxiliary variable, ``(N,)`` integer segment labels (non-negative) or ``(N, d)`` float.
  Optional.
* ``config_json``: generator configuration as a JSON string (0-d unicode array). Optional.
* ``mixing_json``: :meth:`synthetic.mixing.Mixing.to_dict` as a JSON string. Optional.

Files are written and read through :mod:`nica.util.files` (atomic, byte-deterministic) and checked
with :func:`nica.fitting.data.check_observations`. Loading tolerates the absence of every optional
key and rejects malformed files with a one-line ``ValueError`` that names the file and the problem.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nica.fitting.data import check_labels, check_observations
from nica.util.files import load_npz, save_npz
from synthetic.mixing import Mixing

_KNOWN_KEYS = ("x", "s", "u", "config_json", "mixing_json")


def validate_arrays(
    x: np.ndarray,
    s: np.ndarray | None = None,
    u: np.ndarray | None = None,
    *,
    source: str = "data",
) -> None:
    """Checks a dataset's arrays with :func:`nica.fitting.data.check_observations`, plus one rule.

    The rule of this file format: a 1-D ``u`` holds integer segment labels (integer dtype,
    non-negative); a continuous ``u`` is stored as ``(N, d)``.

    Args:
        x: observations ``(N, D)``, real and finite, ``N >= 2``.
        s: sources of ``x``'s shape, real and finite, or ``None``.
        u: ``(N,)`` non-negative integer labels or ``(N, d)`` finite reals, or ``None``.
        source: the message prefix (e.g. the file name).

    Raises:
        ValueError: one-line message ``"<source>: <problem>"``.
    """
    checked = check_observations(x, u, s, where=source)
    if checked.u is not None and checked.u.ndim == 1:
        if not np.issubdtype(checked.u.dtype, np.integer):
            raise ValueError(
                f"{source}: 1-D 'u' must hold integer segment labels, got dtype {u.dtype}"
                " (cast labels with astype(int), or pass a continuous u as shape (N, 1))"
            )
        check_labels(checked.u, where=source)


@dataclass(eq=False)
class Dataset:
    """A synthetic (or loaded) dataset.

    Attributes:
        x: observations, ``(N, D)``.
        s: true sources, ``(N, D)``, or ``None`` if unknown.
        u: auxiliary variable, ``(N,)`` int labels or ``(N, d)`` float, or ``None``.
        mixing: the mixing with ``x = mixing(s)``, or ``None``.
        config: JSON-serialisable description of how the data were made, or ``None``.
    """

    x: np.ndarray
    s: np.ndarray | None = None
    u: np.ndarray | None = None
    mixing: Mixing | None = None
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        validate_arrays(self.x, self.s, self.u, source="Dataset")

    @property
    def n_samples(self) -> int:
        """Number of samples ``N``."""
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        """Data dimension ``D``."""
        return int(self.x.shape[1])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes the dataset to an ``.npz`` file atomically; see :func:`save_dataset`."""
        return save_dataset(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Dataset:
        """Reads a dataset from an ``.npz`` file; see :func:`load_dataset`."""
        return load_dataset(path)


def save_dataset(dataset: Dataset, path: str | os.PathLike[str]) -> Path:
    """Saves ``dataset`` to ``path`` as an uncompressed ``.npz``, atomically.

    The archive is written to a temporary file in the destination directory and moved into place
    with :func:`os.replace`, so readers never see a partial file. ``path`` is used as given (no
    ``.npz`` suffix is appended).

    Args:
        dataset: the record to save.
        path: destination file.

    Returns:
        The destination path.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"x": np.asarray(dataset.x)}
    if dataset.s is not None:
        arrays["s"] = np.asarray(dataset.s)
    if dataset.u is not None:
        arrays["u"] = np.asarray(dataset.u)
    if dataset.config is not None:
        arrays["config_json"] = np.array(json.dumps(dataset.config, sort_keys=True))
    if dataset.mixing is not None:
        arrays["mixing_json"] = np.array(json.dumps(dataset.mixing.to_dict()))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_npz(path, **arrays)


def _json_key(arrays: dict[str, np.ndarray], key: str, name: str) -> Any:
    if key not in arrays:
        return None
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise ValueError(f"{name}: {key!r} must be a JSON string, got {value.dtype} {value.shape}")
    try:
        return json.loads(str(value))
    except json.JSONDecodeError as err:
        raise ValueError(f"{name}: {key!r} is not valid JSON ({err.msg})") from None


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Loads a dataset saved by :func:`save_dataset` (or any ``.npz`` with an ``x`` key).

    Args:
        path: the ``.npz`` file.

    Returns:
        The :class:`Dataset`; ``s``, ``u``, ``mixing`` and ``config`` are ``None`` when absent.

    Raises:
        ValueError: the file is missing, not an npz archive, lacks ``x``, or holds malformed
            arrays or JSON; the message names the file and the problem.
    """
    path = Path(path)
    name = path.name
    arrays = load_npz(path)
    if "x" not in arrays:
        raise ValueError(f"{name}: missing required key 'x' (found: {sorted(arrays)})")
    x, s, u = arrays["x"], arrays.get("s"), arrays.get("u")
    validate_arrays(x, s, u, source=name)
    config = _json_key(arrays, "config_json", name)
    mixing_dict = _json_key(arrays, "mixing_json", name)
    mixing = None
    if mixing_dict is not None:
        try:
            mixing = Mixing.from_dict(mixing_dict)
        except ValueError as err:
            raise ValueError(f"{name}: 'mixing_json' is malformed ({err})") from None
        if mixing.dim != x.shape[1]:
            raise ValueError(f"{name}: mixing dimension {mixing.dim} does not match 'x' {x.shape}")
    return Dataset(x=x, s=s, u=u, mixing=mixing, config=config)
