"""The :class:`Dataset` record and its ``.npz`` file format.

File format (the same one the ``nica`` CLI reads):

* ``x``: observations, ``(N, D)`` float. Required.
* ``s``: true sources, ``(N, D)`` float. Optional.
* ``u``: auxiliary variable, ``(N,)`` integer segment labels (non-negative) or ``(N, d)`` float.
  Optional.
* ``config_json``: generator configuration as a JSON string (0-d unicode array). Optional.
* ``mixing_json``: :meth:`synthetic.mixing.Mixing.to_dict` as a JSON string. Optional.

Loading tolerates the absence of every optional key and rejects malformed files with a one-line
``ValueError`` that names the file and the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthetic.mixing import Mixing

_KNOWN_KEYS = ("x", "s", "u", "config_json", "mixing_json")


def validate_arrays(
    x: np.ndarray,
    s: np.ndarray | None = None,
    u: np.ndarray | None = None,
    *,
    source: str = "data",
) -> None:
    """Checks the shapes, dtypes and finiteness of a dataset's arrays.

    Args:
        x: observations, must be ``(N, D)`` real, finite, with ``N, D >= 1``.
        s: sources, must match ``x``'s shape and be real and finite, or ``None``.
        u: auxiliary variable, ``(N,)`` non-negative integers or ``(N, d)`` finite reals, or
            ``None``.
        source: name used as the message prefix (e.g. the file name).

    Raises:
        ValueError: one-line message ``"<source>: <problem>"``.
    """

    def fail(problem: str) -> None:
        raise ValueError(f"{source}: {problem}")

    x = np.asarray(x)
    if x.ndim != 2:
        fail(f"'x' must be 2-D (N, D), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        fail(f"'x' must have at least one row and one column, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        fail(f"'x' must hold real numbers, got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        fail(f"'x' contains {np.size(x) - np.count_nonzero(np.isfinite(x))} NaN or inf values")
    n = x.shape[0]
    if s is not None:
        s = np.asarray(s)
        if s.shape != x.shape:
            fail(f"'s' must have the same shape as 'x' {x.shape}, got {s.shape}")
        if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
            fail(f"'s' must hold real numbers, got dtype {s.dtype}")
        if not np.all(np.isfinite(s)):
            fail("'s' contains NaN or inf values")
    if u is not None:
        u = np.asarray(u)
        if u.ndim not in (1, 2):
            fail(f"'u' must be (N,) integer labels or (N, d) floats, got shape {u.shape}")
        if u.shape[0] != n:
            fail(f"'u' has {u.shape[0]} rows but 'x' has {n}")
        if u.ndim == 1:
            if not np.issubdtype(u.dtype, np.integer):
                fail(
                    f"1-D 'u' must hold integer segment labels, got dtype {u.dtype} "
                    "(cast labels with astype(int), or pass a continuous u as shape (N, 1))"
                )
            if u.size and u.min() < 0:
                fail(f"segment labels in 'u' must be non-negative, got minimum {u.min()}")
        else:
            if u.shape[1] < 1:
                fail(f"'u' must have at least one column, got shape {u.shape}")
            if not (np.issubdtype(u.dtype, np.floating) or np.issubdtype(u.dtype, np.integer)):
                fail(f"'u' must hold real numbers, got dtype {u.dtype}")
            if not np.all(np.isfinite(u)):
                fail("'u' contains NaN or inf values")


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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def _json_key(archive: Any, key: str, name: str) -> Any:
    if key not in archive.files:
        return None
    value = archive[key]
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
    if not path.is_file():
        raise ValueError(f"{name}: no such file ({path})")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{name}: not a readable .npz archive ({type(err).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{name}: not an .npz archive (a single .npy array?)")
    with archive:
        if "x" not in archive.files:
            raise ValueError(f"{name}: missing required key 'x' (found: {sorted(archive.files)})")
        try:
            x = archive["x"]
            s = archive["s"] if "s" in archive.files else None
            u = archive["u"] if "u" in archive.files else None
        except ValueError as err:  # object arrays need pickle, which we refuse
            raise ValueError(f"{name}: unreadable array ({err})") from None
        validate_arrays(x, s, u, source=name)
        config = _json_key(archive, "config_json", name)
        mixing_dict = _json_key(archive, "mixing_json", name)
    mixing = None
    if mixing_dict is not None:
        try:
            mixing = Mixing.from_dict(mixing_dict)
        except ValueError as err:
            raise ValueError(f"{name}: 'mixing_json' is malformed ({err})") from None
        if mixing.dim != x.shape[1]:
            raise ValueError(f"{name}: mixing dimension {mixing.dim} does not match 'x' {x.shape}")
    return Dataset(x=x, s=s, u=u, mixing=mixing, config=config)
