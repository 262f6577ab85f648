"""Where a result came from: package versions, platform, device and git commit.

Every ``config.json`` / ``metrics.json`` that ``nica`` writes, and every report, carries
:func:`environment` (or its one-line :func:`describe`), so a number can be traced to the
software and machine that produced it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

__all__ = ["PACKAGES", "describe", "environment", "git_commit"]

#: The distributions whose versions are recorded.
PACKAGES = ("nica", "jax", "jaxlib", "flax", "optax", "numpy", "scipy")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout this package was imported from (``+dirty`` when it has
    uncommitted changes to tracked files), or ``None`` outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        run = functools.partial(
            subprocess.run, cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        commit = run(["git", "rev-parse", "HEAD"]).stdout.strip()
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _device() -> str:
    import jax

    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return f"{jax.default_backend()}: {len(devices)} x {', '.join(kinds)}"


def environment() -> dict:
    """``{"versions": {package: version}, "python", "platform", "device", "git_commit"}``
    (JSON-ready; a package that is not installed has version ``None``)."""
    return {
        "versions": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": _device(),
        "git_commit": git_commit(),
    }


def describe(env: dict | None = None) -> str:
    """One line: ``nica 0.2.0, jax 0.10.2, ...; Python 3.11.7 on PLATFORM; DEVICE; commit C``."""
    env = environment() if env is None else env
    versions = ", ".join(f"{name} {v}" for name, v in env["versions"].items() if v is not None)
    commit = env.get("git_commit") or "not a git checkout"
    return (
        f"{versions}; Python {env['python']} on {env['platform']}; {env['device']}; commit {commit}"
    )
