"""Claim files: several processes (or hosts sharing a folder) split work between them.

A claim file is created with ``O_CREAT | O_EXCL``, so exactly one process gets it; a claim
older than ``stale_after`` seconds (its holder died) can be taken over by exactly one process.

This module imports only the standard library and :mod:`nica.util.files`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path

from nica.util.files import file_mode

__all__ = ["claim", "release"]


def _claim_record() -> bytes:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    return json.dumps(record).encode("utf-8")


def _create_exclusive(path: Path) -> bool:
    """Creates ``path`` holding this process's claim record; False if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode())
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as file:
        file.write(_claim_record())
    return True


def _claim_owner(path: Path) -> tuple[int, str] | None:
    """``(pid, host)`` of the claim file ``path``; ``None`` if it is gone or unreadable."""
    try:
        record = json.loads(path.read_bytes())
        return int(record["pid"]), record["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _owner_gone(path: Path) -> bool:
    """True when the claim's owner ran on this host and its process no longer exists (a run
    killed before it could release its claims)."""
    owner = _claim_owner(path)
    if owner is None:
        return False
    pid, host = owner
    if host != socket.gethostname() or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def claim(path: str | os.PathLike, *, stale_after: float) -> bool:
    """Takes the claim file ``path`` for this process; True if taken, False if held elsewhere.

    The file is created atomically (``O_CREAT | O_EXCL``) and holds ``{"pid", "host",
    "time"}``. A claim whose file was last modified more than ``stale_after`` seconds ago, or
    whose owner was a process of this host that has exited (killed before releasing it), is
    taken over: it is renamed away (only one process can rename a given file) and checked to be
    the stale one (same inode and modification time) before a new claim is created, again with
    ``O_EXCL``; so at most one process wins, also when several find the same stale claim.

    Args:
      path: the claim file (its folder must exist).
      stale_after: age in seconds after which a claim is presumed abandoned.
    """
    if stale_after <= 0:
        raise ValueError(f"stale_after must be > 0 seconds, got {stale_after}")
    path = Path(path)
    for _ in range(3):
        if _create_exclusive(path):
            return True
        try:
            seen = os.stat(path)
        except FileNotFoundError:  # released meanwhile: try to create it again
            continue
        if time.time() - seen.st_mtime < stale_after and not _owner_gone(path):
            return False
        grave = path.with_name(f".{path.name}.{uuid.uuid4().hex}.stale")
        try:
            os.rename(path, grave)
        except FileNotFoundError:  # someone else broke it first
            continue
        taken = os.stat(grave)
        if (taken.st_ino, taken.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            # We moved a fresh claim made meanwhile by the process that broke the stale one:
            # put it back (link does not overwrite a claim created in between) and give way.
            with contextlib.suppress(FileExistsError):
                os.link(grave, path)
            os.unlink(grave)
            return False
        os.unlink(grave)
    return False


def release(path: str | os.PathLike) -> bool:
    """Removes the claim file ``path`` if this process holds it; returns whether it did.

    A claim taken over by another process (because ours went stale) is left alone.
    """
    path = Path(path)
    if _claim_owner(path) != (os.getpid(), socket.gethostname()):
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True
