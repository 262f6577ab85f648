"""What the experiment scripts share: their command line and their output files.

A script runs as a module from the repository root (``python -m experiments.dynamics --out
results/dynamics``) and keeps a ``main(argv)`` that the tests call. It builds its parser with
:func:`experiment_parser` (the common ``--out`` and ``--smoke`` options; ``--smoke`` replaces
the named arguments by a size small enough for a test), adds its own arguments, and writes its
results with :func:`write_report` and :func:`save_figure`. The out folder then holds what ``nica
run`` writes: ``results.json`` (the record), ``report.md`` (built from :func:`markdown_document`
and :func:`markdown_table`) and the figures. Every file is written atomically: a reader sees
the old file or the new one, never half of one.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import nica
from nica.util import files as storage
from nica.util.files import write_json, write_text
from nica.util.provenance import describe, environment

__all__ = [
    "COMPARED_GRADIENTS",
    "assignment_value",
    "assignments",
    "experiment_parser",
    "markdown_document",
    "markdown_table",
    "RECORD_FILE",
    "REPORT_FILE",
    "positive_int",
    "pyplot",
    "save_figure",
    "write_markdown",
    "write_record",
    "write_records_as_they_come",
    "write_report",
]

#: The names of the record and of the report in an out folder, as ``nica run`` writes them.
RECORD_FILE, REPORT_FILE = "results.json", "report.md"

#: The gradient modes the experiments compare: every mode of the registry ``nica.GRADIENTS``
#: but ``autodiff``, whose step is ``ordinary``'s at O(B L D^3) cost (per-sample Jacobians).
COMPARED_GRADIENTS: tuple[str, ...] = tuple(name for name in nica.GRADIENTS if name != "autodiff")


class _SmokeParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose ``--smoke`` flag replaces arguments by their smoke values."""

    def __init__(self, *, smoke: Mapping[str, object], **kwargs):
        super().__init__(**kwargs)
        self.smoke_values = dict(smoke)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        if parsed.smoke:
            unknown = sorted(set(self.smoke_values) - set(vars(parsed)))
            if unknown:
                raise TypeError(f"smoke values for arguments the parser lacks: {unknown}")
            vars(parsed).update(copy.deepcopy(self.smoke_values))
        return parsed, extra


def experiment_parser(
    doc: str, *, out: Path | None, smoke: Mapping[str, object] | None = None
) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--out`` and ``--smoke``.

    Args:
      doc: the script's docstring.
      out: default of ``--out``, the out folder (``None``: the script picks one).
      smoke: argument destinations and the values ``--smoke`` gives them (shown in its help);
        a script may also read ``args.smoke`` itself.
    """
    smoke = dict(smoke or {})
    parser = _SmokeParser(smoke=smoke, description=doc.strip().splitlines()[0])
    where = "where the results go" + (f" (default: {out})" if out else "")
    parser.add_argument("--out", type=Path, default=out, help=where)
    sizes = ", ".join(f"{k}={v}" for k, v in smoke.items())
    parser.add_argument(
        "--smoke", action="store_true", help=f"tiny run for the tests ({sizes or 'see the doc'})"
    )
    return parser


def one_core() -> set[int] | None:
    """The CPU a timed job is pinned to (the lowest this process may use), or ``None`` where
    the platform cannot pin (then the job uses every core, and its report says so)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    return {min(os.sched_getaffinity(0))}


def positive_int(text: str) -> int:
    """``argparse`` type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table: ``header`` cells, then one line per row (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"table row has {len(row)} cells, header {len(header)}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def assignment_value(text: str):
    """A ``NAME=VALUE`` option's value: JSON when it parses (numbers, null, true), else the
    string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def assignments(items) -> dict:
    """``["NAME=VALUE", ...]`` (``--set`` options) as a dict of :func:`assignment_value` s."""
    return {k: assignment_value(v) for k, _, v in (item.partition("=") for item in items)}


def markdown_document(title: str, *blocks: str) -> str:
    """``# title`` and the non-empty ``blocks``, separated by blank lines, ending in a newline."""
    return "\n\n".join([f"# {title}", *(b for b in blocks if b)]) + "\n"


def write_record(path: Path, record, *, indent: int | None = 2) -> Path:
    """Writes ``record`` as JSON to ``path`` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json(path, record, indent=indent)


def write_markdown(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, text)


def write_records_as_they_come(path: Path, batches: Iterable[Sequence[dict]]) -> list[dict]:
    """Collects the records of every batch; after each, prints its last record and rewrites
    ``path`` (JSON) with all so far, so that a killed run keeps the finished ones."""
    records: list[dict] = []
    for batch in batches:
        records += batch
        print(records[-1], flush=True)
        write_record(path, records)
    return records


def write_report(out: Path, record, table: str, *, indent: int | None = 2) -> None:
    """Writes ``out/results.json`` (``record``) and ``out/report.md`` (``table``); prints the
    table.

    Both record where they were made (``nica.util.provenance``): a dict ``record`` gains an
    ``environment`` key (a list is written as it is), and the Markdown ends with a line naming
    the versions, platform, device and commit."""
    env = environment()
    if isinstance(record, dict):
        record = {**record, "environment": env}
    write_record(out / RECORD_FILE, record, indent=indent)
    table = f"{table.rstrip()}\n\nRun with {describe(env)}.\n"
    write_markdown(out / REPORT_FILE, table)
    print(table)


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, *, dpi: int) -> Path:
    """Saves ``fig`` to ``path`` atomically (``nica.util.files.save_figure``) and closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return storage.save_figure(fig, path, dpi=dpi)
    finally:
        pyplot().close(fig)
