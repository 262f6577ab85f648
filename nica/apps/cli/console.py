"""How the ``nica`` command talks: one-line errors, status lines on stderr, help formatting,
Ctrl-C as one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nica

__all__ = ["Discard", "HelpFormatter", "Interrupted", "Parser", "abandon", "status", "version"]


class Parser(argparse.ArgumentParser):
    """Argument errors as one line (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(2, f"nica: error: {message}\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks; adds ``(default: X)`` to every option taking a value."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


class Discard:
    """A text stream that drops what is written (``nica run --quiet``)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what was kept."""


def status(message: str) -> None:
    """One line on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)


def version() -> str:
    """The installed package's version."""
    return nica.__version__


def abandon(err: BaseException, out: Path, created: bool) -> None:
    """After a fit that failed or was stopped: removes ``out`` if the command created it and it
    is still empty; Ctrl-C becomes the one line saying that nothing was written."""
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if isinstance(err, KeyboardInterrupt):
        raise Interrupted(f"the fit was stopped; nothing was written to {out}") from None
