"""Progress bars for the ``nica`` command: one per training phase, one over experiment cells.

The library reports progress as values (``nica.ProgressEvent`` to a ``progress`` callback,
``on_cell(done, total, label)`` from the experiment harness); this module turns them into
``tqdm`` bars on stderr. Bars are shown only on a terminal: :func:`progress_enabled` decides,
and a disabled context yields ``None`` callbacks so the library skips the reporting entirely.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from tqdm import tqdm

__all__ = [
    "CellBar",
    "LinesAboveBars",
    "PhaseBars",
    "fit_progress",
    "progress_enabled",
    "run_progress",
]

#: Bar labels of the phases of ``nica.fit`` (see ``nica.ProgressEvent``).
PHASE_LABELS = {"restarts": "restarts", "fit": "main fit"}


def progress_enabled(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """True when bars should be drawn: not ``quiet`` and ``stream`` (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not quiet and callable(isatty) and bool(isatty())


class PhaseBars:
    """A ``progress`` callback for ``nica.fit``: one bar (with ETA) per phase.

    An event with ``epoch == 0`` (or a new phase) closes the current bar and opens the next;
    later events move it to ``event.epoch`` of ``event.epochs``; a (finite) validation NLL is
    shown in the postfix and redrawn at once (evaluations are rare; epochs are rate-limited).

    Args:
      file: where bars are drawn (default: ``sys.stderr`` when first drawn).
      position: screen line of the bar (0 = top; 1 below a :class:`CellBar`).
      leave: keep each finished bar on screen.
    """

    def __init__(self, *, file: TextIO | None = None, position: int = 0, leave: bool = True):
        self._file, self._position, self._leave = file, position, leave
        self._bar: tqdm | None = None
        self._phase: str | None = None

    def __call__(self, event) -> None:
        if self._bar is None or event.phase != self._phase or event.epoch < self._bar.n:
            self._open(event.phase, event.epochs)
        self._bar.update(event.epoch - self._bar.n)
        if event.val_nll is not None and math.isfinite(event.val_nll):
            self._bar.set_postfix_str(f"val NLL {event.val_nll:.4f}")  # redrawn at once

    def _open(self, phase: str, epochs: int) -> None:
        self.close()
        self._phase = phase
        self._bar = tqdm(
            total=epochs,
            desc=PHASE_LABELS.get(phase, phase),
            unit="epoch",
            file=sys.stderr if self._file is None else self._file,
            position=self._position,
            leave=self._leave,
            dynamic_ncols=True,
        )

    def close(self) -> None:
        """Closes the open bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class CellBar:
    """An ``on_cell(done, total, label)`` callback: one bar over an experiment's cells."""

    def __init__(self, *, file: TextIO | None = None):
        self._file = file
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                desc="cells",
                unit="cell",
                file=sys.stderr if self._file is None else self._file,
                position=0,
                dynamic_ncols=True,
            )
        self._bar.total = total
        self._bar.update(done - self._bar.n)
        self._bar.set_postfix_str(label)  # redrawn at once: cells are slow

    def close(self) -> None:
        """Closes the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LinesAboveBars:
    """A text stream for log lines (``print(..., file=stream)``) that keeps the bars intact:
    each complete line is written above them with ``tqdm.write``."""

    def __init__(self, *, file: TextIO | None = None):
        self._file = file
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            tqdm.write(line, file=sys.stderr if self._file is None else self._file)
        return len(text)

    def flush(self) -> None:
        """Lines are written as they complete; nothing is held back but a partial line."""


@contextlib.contextmanager
def fit_progress(enabled: bool) -> Iterator[Callable | None]:
    """Yields the ``progress`` callback for ``nica.fit`` (``None`` when not ``enabled``).

    The bar is closed on exit, also on an exception or ``KeyboardInterrupt``, so a message
    printed afterwards starts on a line of its own.
    """
    if not enabled:
        yield None
        return
    bars = PhaseBars()
    try:
        yield bars
    finally:
        bars.close()


@contextlib.contextmanager
def run_progress(enabled: bool) -> Iterator[tuple[Callable | None, Callable | None, TextIO]]:
    """Yields ``(progress, on_cell, log)`` for ``run_experiment``: a cell bar with a fit bar
    below, and a stream for its log lines that prints them above the bars.

    When not ``enabled``: ``(None, None, sys.stderr)``. The bars are closed on exit.
    """
    if not enabled:
        yield None, None, sys.stderr
        return
    cells, fits = CellBar(), PhaseBars(position=1, leave=False)
    try:
        yield fits, cells, LinesAboveBars()
    finally:
        fits.close()
        cells.close()
