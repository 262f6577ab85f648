"""JAX's persistent compilation cache, on by default: a program is compiled once per machine.

``import nica`` calls :func:`enable_default_cache`, which points JAX's compilation cache at a
private per-user folder, so a new process (a second ``nica fit``, a test worker, an experiment
cell) loads the compiled programs of earlier ones instead of compiling them again.

Where (the first rule that applies):

1. JAX is configured already (``JAX_COMPILATION_CACHE_DIR``, or
   ``jax.config.update("jax_compilation_cache_dir", ...)`` before ``import nica``, or
   ``jax_enable_compilation_cache`` off): nica leaves JAX's settings alone.
2. ``NICA_CACHE_DIR=off``: no cache. Any other non-empty value is the folder.
3. ``$XDG_CACHE_HOME/nica/jax`` when ``XDG_CACHE_HOME`` is an absolute path, else
   ``~/.cache/nica/jax`` (on every platform).

:func:`set_cache_dir` moves or disables it from code. The cache holds compiled code that JAX
runs, so it is trusted: the folder is created with mode ``0o700``, and a folder owned by another
user, writable by group or others, or not writable by us, is not used (at import: one warning,
and nica goes on without a cache; from :func:`set_cache_dir`: a ``ValueError``). The folder may
be deleted at any time; JAX does not bound its size.

This module imports only the standard library and JAX.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

__all__ = [
    "CACHE_ENV",
    "CACHE_OFF",
    "cache_dir",
    "default_cache_dir",
    "enable_default_cache",
    "set_cache_dir",
]

#: Environment variable that moves the cache (a folder) or turns it off (:data:`CACHE_OFF`).
CACHE_ENV = "NICA_CACHE_DIR"
#: The value of :data:`CACHE_ENV` that turns the cache off (case-insensitive).
CACHE_OFF = "off"

#: JAX settings nica sets with the folder, unless the user set them (their JAX_* variable):
#: cache every program, however quick its compilation or small its executable (nica's fits
#: compile many small programs; together they are most of a short fit's compile time).
_THRESHOLDS = {
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_persistent_cache_min_entry_size_bytes": -1,
}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/nica/jax`` if ``XDG_CACHE_HOME`` is absolute, else ``~/.cache/nica/jax``.

    Raises:
        RuntimeError: no ``XDG_CACHE_HOME`` and the home folder is unknown.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "nica" / "jax"


def cache_dir() -> str | None:
    """The folder JAX's compilation cache uses now (nica's or the user's), or None when off."""
    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir


def _private_folder(path: Path) -> Path:
    """Creates ``path`` (mode 0o700) if absent and checks that it is safe to trust.

    Raises:
        ValueError: it cannot be created, is not a folder, belongs to another user, is writable
            by group or others, or is not writable by us (one line naming the folder).
    """
    path = path.expanduser().absolute()
    try:
        try:
            path.mkdir(mode=0o700, parents=True)
            path.chmod(0o700)  # whatever the umask
        except FileExistsError:
            pass
        info = os.stat(path)  # follows a link: the folder it points to is what must be safe
    except OSError as err:
        raise ValueError(f"cannot create compilation cache {path}: {err.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ValueError(f"compilation cache {path} is not a folder")
    getuid = getattr(os, "getuid", None)  # absent on Windows, where modes mean little
    if getuid is not None and info.st_uid != getuid():
        raise ValueError(f"compilation cache {path} belongs to another user")
    if getuid is not None and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError(f"compilation cache {path} is writable by group or others (chmod 700 it)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"compilation cache {path} is not writable")
    return path


def _point_jax_at(path: Path | None) -> None:
    """Sets JAX's cache folder (None: none) and the thresholds the user has not set; JAX reads
    them at its next compilation."""
    jax.config.update("jax_compilation_cache_dir", None if path is None else str(path))
    if path is not None:
        for name, value in _THRESHOLDS.items():
            if name.upper() not in os.environ:
                jax.config.update(name, value)
    _jax_cache.reset_cache()  # forget a folder opened before; the next compilation opens this


def set_cache_dir(path: str | os.PathLike | None) -> Path | None:
    """Moves JAX's persistent compilation cache to ``path`` (created, mode 0o700), or turns it
    off with None. Overrides every other setting (``NICA_CACHE_DIR``,
    ``JAX_COMPILATION_CACHE_DIR``); applies to programs compiled afterwards.

    Returns:
        The folder in use (absolute), or None.

    Raises:
        ValueError: the folder cannot be created, or is unsafe (see the module docstring); the
            cache is left as it was.
    """
    if path is None:
        _point_jax_at(None)
        return None
    if not os.fspath(path):
        raise ValueError("cache folder must be a path or None (None turns the cache off)")
    folder = _private_folder(Path(path))
    _point_jax_at(folder)
    return folder


def enable_default_cache() -> Path | None:
    """Turns nica's cache on as the module docstring says; called by ``import nica``. Never
    raises: a folder it cannot create or trust gives one ``RuntimeWarning`` and no cache.

    Returns:
        The folder nica set, or None (off, the user's JAX settings kept, or refused).
    """
    if jax.config.jax_compilation_cache_dir is not None:
        return None  # the user's own JAX setting
    if not jax.config.jax_enable_compilation_cache:
        return None
    setting = os.environ.get(CACHE_ENV, "")
    if setting.strip().lower() == CACHE_OFF:
        return None
    try:
        folder = _private_folder(Path(setting) if setting else default_cache_dir())
    except (RuntimeError, ValueError) as err:
        warnings.warn(
            f"{str(err).rstrip('.')}; nica runs without a compilation cache (set {CACHE_ENV} "
            f"to another folder, or to {CACHE_OFF})",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    _point_jax_at(folder)
    return folder
