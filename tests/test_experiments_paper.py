"""Smoke runs of the paper experiments (gradient cost, dynamics, 2-D densities) into tmp_path."""

import json
import math
import runpy
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _main(name: str):
    return runpy.run_path(str(EXPERIMENTS / f"{name}.py"))["main"]


def _table_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_gradient_cost_smoke(tmp_path):
    _main("gradient_cost")(["--smoke", "--out", str(tmp_path)])
    records = json.loads((tmp_path / "gradient_cost.json").read_text())
    methods = ("relative", "ordinary", "autodiff", "backprop")
    assert {(r["dim"], r["method"]) for r in records} == {(d, m) for d in (8, 16) for m in methods}
    for r in records:
        assert r["repeats"] >= 3 and math.isfinite(r["median_s"]) and r["median_s"] > 0
        assert (r["batch"], r["depth"]) == (100, 2)
    rows = _table_rows(tmp_path / "gradient_cost.md")
    assert [row[0] for row in rows] == ["8", "16"]
    assert all(float(cell) > 0 for row in rows for cell in row[5:])
    assert (tmp_path / "gradient_cost.png").stat().st_size > 0


def test_gradient_cost_skip_reason():
    skip = runpy.run_path(str(EXPERIMENTS / "gradient_cost.py"))["autodiff_skip_reason"]
    kwargs = dict(max_dim=512, max_bytes=2**30, max_seconds=60.0, calls=12)
    assert skip(256, 100, previous=None, **kwargs) is None
    assert "max-dim" in skip(1024, 100, previous=None, **kwargs)
    assert "GiB" in skip(512, 1000, previous=None, **kwargs)
    assert "predicted" in skip(512, 100, previous=(256, 1.0), **kwargs)


def test_dynamics_smoke(tmp_path):
    rows = _main("dynamics")(["--smoke", "--out", str(tmp_path)])
    assert {(r["optimizer"], r["gradient"]) for r in rows} == {
        (o, g) for o in ("adam", "sgd") for g in ("relative", "ordinary")
    }
    record = json.loads((tmp_path / "dynamics.json").read_text())
    for by_grad in record["curves"].values():
        curves = [by_grad["relative"], by_grad["ordinary"]]
        assert all(len(c) == 2 and len(c[0]) == 21 for c in curves)
        # Shared initialisations: identical NLL before the first step.
        assert curves[0][0][0] == pytest.approx(curves[1][0][0])
        assert all(math.isfinite(v) for c in curves for run in c for v in run)
    assert len(_table_rows(tmp_path / "dynamics.md")) == 4
    assert (tmp_path / "dynamics.png").stat().st_size > 0


def test_density2d_smoke(tmp_path):
    rows = _main("density2d")(["--smoke", "--out", str(tmp_path)])
    assert len(rows) == 2
    for r in rows:
        assert math.isfinite(r["test_nll"]) and math.isfinite(r["gaussian_test_nll"])
    table = _table_rows(tmp_path / "density2d.md")
    assert [row[0] for row in table] == [r["name"] for r in rows]
    assert (tmp_path / "density2d.png").stat().st_size > 0
