"""``nica fit`` on degenerate data: exit status 2 and one line naming the column or row.

Issue 14 item 2: these used to fit garbage with exit status 0 (two identical columns gave an
impossibly low NLL, one row scaled to 1e30 an MCC of 0.008, ``x * 1e200`` an overflow warning).
"""

import re

import numpy as np
import pytest

from nica.apps.cli import main
from synthetic import make_preset


@pytest.fixture(scope="module")
def tiny():
    data = make_preset("tiny", 0)
    return data.x, data.u


def _scaled_row(x: np.ndarray, row: int, factor: float) -> np.ndarray:
    x = x.copy()
    x[row] *= factor
    return x


DEGENERATE = {
    "identical-columns": (
        lambda x: np.c_[x, x[:, 0]],
        r"columns 0 and 2 are identical or collinear",
    ),
    "row-scaled-1e30": (lambda x: _scaled_row(x, 7, 1e30), r"row 7 is a gross outlier in column"),
    "x-times-1e200": (lambda x: x * 1e200, r"column \d holds a value of magnitude"),
    "constant-column": (
        lambda x: np.c_[x[:, :1], np.full(len(x), 2.0), x[:, 1:]],
        r"column 1 is constant",
    ),
}


@pytest.mark.parametrize("case", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_fit_refuses_degenerate_data_with_one_line(case, tiny, tmp_path, capsys):
    make_x, match = case
    x, u = tiny
    path = tmp_path / "bad.npz"
    np.savez(path, x=make_x(x), u=u)
    argv = ["fit", "--data", str(path), "--out", str(tmp_path / "out")]
    code = main([*argv, "--epochs", "1", "--restarts", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("nica: error:")]
    assert code == 2, err
    assert len(errors) == 1 and errors[0] == err[-1], err
    assert re.search(match, errors[0]), errors[0]
    assert not (tmp_path / "out" / "metrics.json").exists()  # refused before any fit
