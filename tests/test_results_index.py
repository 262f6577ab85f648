"""``results/README.md`` is generated from the committed reports (``experiments/results_index.py``)
and must be up to date with them."""

from __future__ import annotations

from pathlib import Path

from experiments import results_index

TABLE = "| a | b |\n|---|---|\n| 1 | 2.5 |"


def test_committed_index_is_up_to_date():
    index = results_index.RESULTS / results_index.INDEX_NAME
    assert index.is_file(), f"{index} is missing: run `{results_index.COMMAND}`"
    expected = results_index.build_index()
    assert index.read_text(encoding="utf-8") == expected, (
        f"{index} is out of date with the reports under results/: run `{results_index.COMMAND}`"
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_extraction_on_a_results_folder(tmp_path):
    results, scripts = tmp_path / "results", tmp_path / "experiments"
    report = "# alpha\n\nWhat it is.\n\nCommand: `nica run alpha --out results/alpha`.\n"
    _write(results / "alpha" / "report.md", report + "\n" + TABLE + "\n\n| c |\n|---|\n| 9 |\n")
    _write(results / "alpha" / "mcc.png", "png")
    _write(results / "alpha" / "cells" / "x.json", "{}")  # a subfolder is not linked
    # An older script report next to the new name: report.md wins.
    _write(results / "beta" / "beta.md", "# old beta\n")
    _write(results / "beta" / "report.md", "# beta\n\nNo table here.\n")
    # No quoted command: the script's Command:: block, continuation lines joined, and the
    # block's commands in turn joined by &&.
    _write(results / "gamma.md", "# gamma\n\n" + TABLE + "\n")
    block = "    python g.py \\\n        --x 1\n    python g.py --report\n"
    doc = f'"""Gamma.\n\nCommand::\n\n{block}"""\n'
    _write(scripts / "gamma.py", doc)
    _write(results / "delta" / "delta.md", "# delta\n")  # no command anywhere
    _write(results / "README.md", "stale")

    paths = results_index.find_reports(results)
    assert [p.relative_to(results).as_posix() for p in paths] == [
        "alpha/report.md",
        "beta/report.md",
        "delta/delta.md",
        "gamma.md",
    ]
    alpha, beta, delta, gamma = (results_index.read_report(p, results, scripts) for p in paths)
    assert alpha == results_index.Report(
        "alpha/report.md", "alpha", "nica run alpha --out results/alpha", TABLE, ("alpha/mcc.png",)
    )
    assert (beta.title, beta.table, beta.command) == ("beta", None, None)
    command = "python g.py --x 1 && python g.py --report"
    assert (gamma.command, gamma.table, gamma.files) == (command, TABLE, ())
    assert delta.command is None

    text = results_index.build_index(results, scripts)
    assert text == results_index.build_index(results, scripts)  # deterministic
    assert text.index("## [alpha/report.md]") < text.index("## [gamma.md](gamma.md)")
    assert "Command: `nica run alpha --out results/alpha`" in text
    assert "[mcc.png](alpha/mcc.png)" in text and "| c |" not in text
    assert "Command: not quoted in the report." in text


def test_check_mode_says_what_to_run(tmp_path, capsys):
    _write(tmp_path / "a" / "report.md", "# a\n\n" + TABLE + "\n")
    assert results_index.main(["--results", str(tmp_path), "--check"]) == 1
    assert results_index.COMMAND in capsys.readouterr().err
    assert results_index.main(["--results", str(tmp_path)]) == 0
    assert results_index.main(["--results", str(tmp_path), "--check"]) == 0


def test_readme_demo_table_is_the_committed_reports():
    readme = (results_index.ROOT / "README.md").read_text(encoding="utf-8")
    report = (results_index.RESULTS / "demo" / "report.md").read_text(encoding="utf-8")
    table = results_index.first_table(report)
    assert table is not None and results_index.first_table(readme) == table, (
        "README.md's demo table differs from results/demo/report.md's: copy the report's table"
    )
