"""Progress bars for ``nica.fit`` and the ``nica`` command: one per training phase, one over
experiment cells.

The library reports progress as values (``nica.ProgressEvent`` to a ``progress`` callback,
``on_cell(done, total, label)`` from the experiment harness); this module turns them into
``tqdm`` bars on stderr. Bars are shown only where a person is watching (a terminal, or a
notebook): :func:`progress_enabled` and :func:`watching` decide, and a disabled context yields
``None`` callbacks so the library skips the reporting entirely. While bars are shown a
heartbeat redraws them every :data:`HEARTBEAT_S` seconds, so the elapsed time keeps moving
while XLA compiles (a phase's first epoch says so).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

from tqdm import tqdm

__all__ = [
    "HEARTBEAT_S",
    "CellBar",
    "LinesAboveBars",
    "PhaseBars",
    "display",
    "fit_progress",
    "progress_enabled",
    "run_progress",
    "watching",
]

#: Bar labels of the phases of ``nica.fit`` (see ``nica.ProgressEvent``).
PHASE_LABELS = {"restarts": "restarts", "fit": "main fit"}

#: Seconds between redraws of the open bar (elapsed time, rate) while nothing else moves it.
HEARTBEAT_S = 0.5

#: The postfix of a bar whose first epoch waits for XLA to compile the phase's program.
COMPILING = "XLA compiling the training program"


def progress_enabled(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """True when bars should be drawn: not ``quiet`` and ``stream`` (stderr) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not quiet and callable(isatty) and bool(isatty())


def _in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - an odd IPython: treat as no notebook
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def watching() -> bool:
    """True when a person is likely watching: stderr is a terminal, or a notebook runs us."""
    return progress_enabled() or _in_notebook()


class PhaseBars:
    """A ``progress`` callback for ``nica.fit``: one bar (with ETA) per phase.

    An event with ``epoch == 0`` (or a new phase) closes the current bar and opens the next;
    later events move it to ``event.epoch`` of ``event.epochs``; a (finite) validation NLL is
    shown in the postfix (nats per sample) and redrawn at once (evaluations are rare; epochs
    are rate-limited); an epoch-0 event with ``compiling`` says so until the first epoch ends.
    :meth:`status` shows a one-line status with its elapsed time before the first phase, and
    :meth:`note` prints a line above the bars. A heartbeat thread redraws the open bar every
    ``heartbeat`` seconds until :meth:`close`.

    Args:
      file: where bars are drawn (default: ``sys.stderr`` when first drawn).
      position: screen line of the bar (0 = top; 1 below a :class:`CellBar`).
      leave: keep each finished bar on screen.
      heartbeat: seconds between redraws (``None``: no heartbeat thread).
    """

    def __init__(
        self,
        *,
        file: TextIO | None = None,
        position: int = 0,
        leave: bool = True,
        heartbeat: float | None = HEARTBEAT_S,
    ):
        self._file, self._position, self._leave = file, position, leave
        self._bar: tqdm | None = None
        self._phase: str | None = None
        self._last_val = ""
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._heartbeat = heartbeat
        self._thread: threading.Thread | None = None

    def __call__(self, event) -> None:
        with self._lock:
            bar = self._bar
            if bar is None or event.phase != self._phase or event.epoch < bar.n:
                bar = self._open(event.phase, event.epochs)
            bar.update(event.epoch - bar.n)
            parts = []
            if event.val_nll is not None and math.isfinite(event.val_nll):
                parts.append(f"val NLL {event.val_nll:.4f}")
            if getattr(event, "compiling", False):
                parts.append(COMPILING)
            if parts or event.epoch == 1:  # the first epoch ends the compiling note
                bar.set_postfix_str(", ".join(parts) or self._last_val)  # redrawn at once
            if event.val_nll is not None and math.isfinite(event.val_nll):
                self._last_val = f"val NLL {event.val_nll:.4f}"

    def status(self, text: str) -> None:
        """Shows ``text`` with its elapsed time on the bar line until the first phase opens."""
        with self._lock:
            self._phase = None
            self._new_bar(total=None, desc=text, bar_format="{desc} ({elapsed})")

    def note(self, text: str) -> None:
        """Prints ``text`` as a line of its own, above the bars."""
        tqdm.write(text, file=self._stream())

    def _stream(self) -> TextIO:
        return sys.stderr if self._file is None else self._file

    def _new_bar(self, **kwargs) -> tqdm:
        self._close_bar()
        self._bar = tqdm(
            file=self._stream(),
            position=self._position,
            leave=self._leave,
            dynamic_ncols=True,
            **kwargs,
        )
        if self._heartbeat is not None and self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="nica-progress", daemon=True)
            self._thread.start()
        return self._bar

    def _open(self, phase: str, epochs: int) -> tqdm:
        bar = self._new_bar(total=epochs, desc=PHASE_LABELS.get(phase, phase), unit="epoch")
        self._phase, self._last_val = phase, ""
        return bar

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat):
            with self._lock:
                if self._bar is not None:
                    self._bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Closes the open bar and stops the heartbeat (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            self._close_bar()


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
def fit_progress(enabled: bool) -> Iterator[PhaseBars | None]:
    """Yields the ``progress`` callback for ``nica.fit`` (``None`` when not ``enabled``), its
    status line already showing ("preparing").

    The bar is closed on exit, also on an exception or ``KeyboardInterrupt``, so a message
    printed afterwards starts on a line of its own.
    """
    if not enabled:
        yield None
        return
    bars = PhaseBars()
    bars.status("preparing: checking the data, building the model")
    try:
        yield bars
    finally:
        bars.close()


@contextlib.contextmanager
def display(progress) -> Iterator[tuple[Callable | None, Callable[[str], None] | None]]:
    """Resolves a library ``progress`` argument: yields ``(callback, note)``.

    ``"auto"``: bars and notes on stderr when a person is :func:`watching`, else
    ``(None, None)``; ``None``: nothing; a callable: ``(progress, None)``.
    """
    if isinstance(progress, str):
        if progress != "auto":
            raise ValueError(f"progress must be 'auto', None or a callable, got {progress!r}")
        with fit_progress(watching()) as bars:
            yield bars, None if bars is None else bars.note
        return
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be 'auto', None or a callable, got {progress!r}")
    yield progress, None


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
