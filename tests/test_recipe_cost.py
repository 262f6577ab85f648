"""experiments.recipe_cost: variants side by side, the report, and bad options."""

import json

import pytest

from experiments import recipe_cost


def test_smoke_fits_every_variant_in_turns_and_reports_ratios(tmp_path):
    text = recipe_cost.main(["--smoke", "--out", str(tmp_path), "--repeats", "2"])
    record = json.loads((tmp_path / "results.json").read_text())
    order = [(f["repeat"], f["variant"]) for f in record["fits"]]
    assert order == [(0, "defaults"), (0, "full-length restarts"),
                     (1, "defaults"), (1, "full-length restarts")]  # fmt: skip
    assert record["variants"]["full-length restarts"] == {"restarts": 2, "restart_epochs": 2}
    assert all(f["seconds"] > 0 and f["depth"] == 2 for f in record["fits"])
    rows = [line for line in text.splitlines() if line.startswith("| defaults |")]
    assert len(rows) == 1 and "| 1.00 |" in rows[0]
    assert "ratio to defaults" in (tmp_path / "report.md").read_text()


def test_summary_ratio_is_the_median_of_the_compiled_fits():
    times = {("a", 0): 9.0, ("b", 0): 9.0, ("a", 1): 2.0, ("b", 1): 3.0, ("a", 2): 4.0,
             ("b", 2): 5.0}  # fmt: skip
    fits = [
        {"variant": v, "settings": {}, "repeat": r, "seconds": s, "val_nll": 1.0, "depth": 4}
        for (v, r), s in times.items()
    ]
    rows = recipe_cost.summary_rows(fits, ["a", "b"])
    assert rows[0][2:5] == ("9.0", "3.0", "1.00") and rows[1][2:5] == ("9.0", "4.0", "1.33")


@pytest.mark.parametrize("text", ["nosettings", "x=[1]", "=1", "y={bad"])
def test_a_bad_variant_is_a_one_line_error(text):
    with pytest.raises(ValueError, match="--variant takes NAME="):
        recipe_cost.parse_variant(text)


def test_one_repeat_is_refused(capsys):
    with pytest.raises(SystemExit):
        recipe_cost.main(["--smoke", "--repeats", "1"])
    assert "--repeats must be >= 2" in capsys.readouterr().err
