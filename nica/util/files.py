"""Atomic, byte-deterministic result files (``.npz``, JSON, text, figures).

Every writer writes to a unique temporary file in the destination folder
(``.NAME.XXXXXXXX.tmp``) and moves it into place with :func:`os.replace`, so a reader never
sees a half-written file, two processes writing the same path never collide on a temporary
name, and a failed write leaves nothing behind. ``np.savez`` stamps the current time into the
archive; :func:`save_npz` fixes the timestamps, so identical arrays give identical bytes.


This module imports only the standard library and NumPy.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "load_npz",
    "read_json",
    "save_figure",
    "save_npz",
    "write_json",
    "write_text",
]

_EPOCH = (1980, 1, 1, 0, 0, 0)


@functools.cache
def file_mode() -> int:
    """The mode ``open()`` would give a new file (``mkstemp`` alone gives 0o600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Calls ``write(file)`` on a unique temporary file beside ``path``, then renames it.

    Raises an ``OSError`` naming ``path`` (not the temporary file) if ``path`` is a folder or
    cannot be written; the temporary file is removed on any failure.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, cannot write a file there", str(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OSError(err.errno, f"cannot write ({err.strerror})", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), file_mode())
            write(file)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, f"cannot write ({err.strerror})", str(path)) from None
        raise
    return path


def save_figure(figure, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Writes a matplotlib ``figure`` atomically, in the format of ``path``'s suffix."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _atomic_write(path, lambda file: figure.savefig(file, format=fmt, dpi=dpi))


def save_npz(path: str | os.PathLike, **arrays) -> Path:
    """Writes ``arrays`` to ``path`` as an uncompressed ``.npz``, atomically and reproducibly.

    Keys are written in sorted order with a fixed timestamp; ``path`` is used as given (no
    ``.npz`` suffix is appended). Object arrays are refused (they would need pickle).
    """
    buffers = {}
    for name in sorted(arrays):
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.asarray(arrays[name]), allow_pickle=False)
        buffers[name] = buffer.getvalue()

    def write(file: IO[bytes]) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            for name, data in buffers.items():
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", _EPOCH), data)

    return _atomic_write(path, write)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads every array of an ``.npz`` file into a dict (ValueError naming the file otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an .npz archive")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: cannot read as .npz ({err})") from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    data = text.encode("utf-8")
    return _atomic_write(path, lambda file: file.write(data))


def write_json(path: str | os.PathLike, record: Any, *, indent: int | None = 2) -> Path:
    """Writes ``record`` as JSON (with a final newline) to ``path`` atomically.

    ``indent=None`` writes it compactly (for long lists of numbers).
    """
    return write_text(path, json.dumps(record, indent=indent) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file; a missing, empty or invalid file is a one-line ValueError naming it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror})") from None
    if not data.strip():
        raise ValueError(f"{path}: empty file, expected JSON")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        reason = (
            f"{err.msg} at line {err.lineno} column {err.colno}"
            if isinstance(err, json.JSONDecodeError)
            else "not UTF-8 text"
        )
        raise ValueError(f"{path}: invalid JSON ({reason})") from None
