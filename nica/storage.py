"""Atomic, byte-deterministic result files: ``.npz`` arrays and JSON records.

``np.savez`` stamps the current time into the archive, so two identical results would differ
byte for byte; :func:`save_npz` fixes the timestamps and writes through a temporary file and
``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["load_npz", "save_npz", "write_json"]

_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Writes ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically and reproducibly."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", _EPOCH), buffer.getvalue())
    os.replace(tmp, path)
    return path


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` file into a dict (ValueError if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: cannot read as .npz ({err})") from None


def write_json(path: str | os.PathLike, record, *, indent: int | None = 2) -> Path:
    """Writes ``record`` as JSON through a temporary file and ``os.replace``.

    ``indent=None`` writes it compactly (for long lists of numbers).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=indent, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path
