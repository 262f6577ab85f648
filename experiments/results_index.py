"""Writes ``results/README.md``, the index of the committed reports, from the reports themselves.

Every number in the index is copied from a report, so the index cannot drift from them;
``tests/test_results_index.py`` fails when a report changed and the index was not regenerated.

Command::

    .venv/bin/python -m experiments.results_index

A report is ``report.md`` in any folder under ``results/``; a folder without one contributes its
other Markdown files (the older ``NAME/NAME.md`` of the scripts, ``results/mcc_floor.md``). For
each report the index gives its title (first heading), the command that regenerates it (the
report's ``Command: `...``` line, else the ``Command::`` block of the script named like its
folder), its first Markdown table verbatim, and links to the figures and data next to it.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
EXPERIMENTS = ROOT / "experiments"
INDEX_NAME = "README.md"
COMMAND = ".venv/bin/python -m experiments.results_index"
# Files next to a report that the index links to (figures and data; never cells/ or claims).
LINKED_SUFFIXES = (".png", ".json", ".csv", ".txt")

_QUOTED_COMMAND = re.compile(r"Command: `([^`]+)`")
_DOC_COMMAND = re.compile(r"^Command[^\n]*::\n\n((?:    [^\n]*\n)+)", re.MULTILINE)

HEADER = f"""# Results

The committed reports, one section each (sorted by path). This file is generated from them:
after changing a report, run `{COMMAND}`
(`tests/test_results_index.py` checks that this file is up to date). Each section gives the
command that regenerates the report and its first table, copied verbatim; the report itself
says what the columns mean and what the numbers show.
"""


@dataclass(frozen=True)
class Report:
    """What the index shows of one report.

    Attributes:
      path: the report, relative to the results folder (POSIX form).
      title: its first ``# `` heading (the file name when it has none).
      command: the command that regenerates it, or ``None`` when neither the report nor a
        script says.
      table: its first Markdown table, verbatim (``None`` when it has none).
      files: figures and data next to it, relative to the results folder, sorted.
    """

    path: str
    title: str
    command: str | None
    table: str | None
    files: tuple[str, ...]


def find_reports(results: Path) -> list[Path]:
    """The reports under ``results``, sorted by path: ``report.md`` wherever it exists, and in a
    folder without one, its other Markdown files (the index itself excluded)."""
    reports = []
    for folder in sorted({p.parent for p in results.rglob("*.md")}):
        names = sorted(p for p in folder.glob("*.md") if p.is_file())
        if folder / "report.md" in names:
            names = [folder / "report.md"]
        reports.extend(p for p in names if not (folder == results and p.name == INDEX_NAME))
    return sorted(reports, key=lambda p: p.relative_to(results).as_posix())


def first_table(text: str) -> str | None:
    """The first Markdown table of ``text`` (a header line, a ``|---|`` line and its rows)."""
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]):
            end = i + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return "\n".join(lines[i:end])
    return None


def script_command(script: Path) -> str | None:
    """The command of a script's ``Command::`` docstring block: continuation lines (ending in
    ``\\``) joined, several commands in turn joined by ``&&``."""
    if not script.is_file():
        return None
    match = _DOC_COMMAND.search(script.read_text(encoding="utf-8"))
    if match is None:
        return None
    commands, current = [], []
    for line in (line.strip() for line in match.group(1).splitlines()):
        if line:
            current.append(line.rstrip("\\").strip())
        if current and not line.endswith("\\"):
            commands.append(" ".join(current))
            current = []
    return " && ".join([*commands, *([" ".join(current)] if current else [])])


def read_report(path: Path, results: Path, experiments: Path) -> Report:
    """The index entry of the report at ``path`` (under ``results``)."""
    text = path.read_text(encoding="utf-8")
    relative = path.relative_to(results)
    title = next(
        (line[2:].strip() for line in text.splitlines() if line.startswith("# ")), path.name
    )
    quoted = _QUOTED_COMMAND.search(text)
    if quoted is not None:
        command = quoted.group(1)
    else:
        script = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        command = script_command(experiments / f"{script}.py")
    files: tuple[str, ...] = ()
    if path.parent != results:
        files = tuple(
            sorted(
                p.relative_to(results).as_posix()
                for p in path.parent.iterdir()
                if p.is_file() and p.suffix in LINKED_SUFFIXES
            )
        )
    return Report(relative.as_posix(), title, command, first_table(text), files)


def render(reports: list[Report]) -> str:
    """The index: the header, then one section per report."""
    sections = [HEADER]
    for report in reports:
        lines = [f"## [{report.path}]({report.path})", "", f"**{report.title}**", ""]
        if report.command is None:
            lines.append("Command: not quoted in the report.")
        else:
            lines.append(f"Command: `{report.command}`")
        if report.files:
            links = ", ".join(f"[{Path(f).name}]({f})" for f in report.files)
            lines += ["", f"Files: {links}"]
        if report.table is not None:
            lines += ["", report.table]
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


def build_index(results: Path = RESULTS, experiments: Path = EXPERIMENTS) -> str:
    """The text of ``results/README.md`` for the reports now under ``results``."""
    return render([read_report(p, results, experiments) for p in find_reports(results)])


def main(argv: list[str] | None = None) -> int:
    """Writes the index (or, with ``--check``, exits 1 when the written one is out of date)."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    args = parser.parse_args(argv)
    index = args.results / INDEX_NAME
    reports = [read_report(p, args.results, EXPERIMENTS) for p in find_reports(args.results)]
    text = render(reports)
    if args.check:
        current = index.read_text(encoding="utf-8") if index.is_file() else None
        if current != text:
            print(f"{index} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    index.write_text(text, encoding="utf-8")
    print(f"wrote {index} ({len(reports)} reports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
