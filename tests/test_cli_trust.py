"""``nica fit`` says what it did and refuses what cannot work (issue 24: how u was read,
identifiability refusals and warnings as one line, outliers, units, the input named in errors,
provenance, and no long silence on a terminal)."""

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import nica
from nica.apps.cli import NLL_UNITS, main
from nica.fitting.data import isolation
from nica.util.provenance import PACKAGES, describe, environment
from synthetic import make_preset

FASTEST = ["--epochs", "1", "--depth", "2", "--restarts", "1"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    data = make_preset("tiny", 0)
    data.save(path)
    return path, data


def _write(tmp_path, name, **arrays) -> Path:
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    return path


def _fit(path, out, *extra):
    return main(["fit", "--data", str(path), "--out", str(out), *FASTEST, *extra])


def _lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "u, said",
    [
        (lambda u: u[:, None], "u read as 5 segment labels (one column, dtype int64)"),
        (lambda u: np.eye(5)[u], "u read as 5 one-hot segment labels (500, 5)"),
        (lambda u: 7 * u + 3, "u read as 5 segment labels (1-D, dtype int64)"),
        (lambda u: u[:, None] / 4.0, "u read as a continuous covariate (float, shape (500, 1))"),
    ],
)
def test_fit_says_in_its_first_line_how_u_was_read(u, said, tiny, tmp_path, capsys, monkeypatch):
    path, data = tiny
    path = _write(tmp_path, "data", x=data.x, u=u(data.u), s=data.s)

    def stopped(*args, **kwargs):  # the first line is what is tested: no need to train
        raise KeyboardInterrupt

    monkeypatch.setattr(nica, "fit", stopped)
    assert _fit(path, tmp_path / "out") == 130
    lines = _lines(capsys)
    assert len(lines) == 2 and said in lines[0] and "interrupted" in lines[1], lines


def test_refusals_are_one_line_naming_the_file(tiny, tmp_path, capsys):
    path, data = tiny
    x_constant = data.x.copy()
    x_constant[:, 1] = 2.0
    row_1e4 = data.x.copy()
    row_1e4[7] = 1e4  # every other |x| is below 13
    cases = {
        "one-segment": ({"x": data.x, "u": np.zeros(len(data.x), int)}, "a single segment label"),
        "arange": ({"x": data.x, "u": np.arange(len(data.x))}, "fewer than 5 rows"),
        "one-column": ({"x": data.x[:, :1], "u": data.u}, "x has a single column"),
        "constant": ({"x": x_constant, "u": data.u}, "column 1 is constant"),
        "row-1e4": ({"x": row_1e4, "u": data.u}, "row 7 is a gross outlier"),
    }
    for name, (arrays, message) in cases.items():
        path = _write(tmp_path, name, **arrays)
        assert _fit(path, tmp_path / f"out-{name}") == 2, name
        (line,) = _lines(capsys)
        assert line.startswith(f"nica: error: {path}: ") and message in line, line
        assert "seed" not in line


def test_a_small_validation_split_is_refused_before_training(tiny, tmp_path, capsys):
    path, data = tiny
    path = _write(tmp_path, "small", x=data.x[:50], u=np.arange(50) % 5)
    code = main(["fit", "--data", str(path), "--out", str(tmp_path / "o"), "--epochs", "1"])
    (line,) = _lines(capsys)
    assert code == 2 and "the validation split has 5 rows" in line


def test_the_identifiability_warning_is_one_line(tiny, tmp_path, capsys):
    path, data = tiny
    path = _write(tmp_path, "three", x=data.x, u=data.u % 3)
    assert _fit(path, tmp_path / "out") == 0
    lines = _lines(capsys)
    warning = [line for line in lines if line.startswith("nica: warning:")]
    assert len(lines) == 3 and len(warning) == 1, lines
    assert "3 segments for 2 sources" in warning[0] and "2D+1 = 5" in warning[0]


def test_a_far_but_not_gross_outlier_is_a_one_line_warning(tiny, tmp_path, capsys):
    path, data = tiny
    x = data.x.copy()
    median = np.median(x[:, 0])
    fifth = abs(x[isolation(x)[0][-1, 0], 0] - median)  # the 5th farthest row's distance
    x[7, 0] = median + 20.0 * fifth  # 20x the next rows' distance: warned, not refused
    path = _write(tmp_path, "far", x=x, u=data.u)
    assert _fit(path, tmp_path / "out") == 0
    lines = _lines(capsys)
    warning = [line for line in lines if line.startswith("nica: warning:")]
    assert len(lines) == 3 and len(warning) == 1, lines
    assert "row 7 lies far out in column 0" in warning[0]


def test_every_nll_is_in_the_units_of_x_and_says_so(tiny, tmp_path, capsys):
    path, data = tiny
    scaled = _write(tmp_path, "scaled", x=data.x * 1000.0, u=data.u)
    assert _fit(scaled, tmp_path / "out") == 0
    done = _lines(capsys)[-1]
    assert "nats/sample (units of x)" in done
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["nll_units"] == NLL_UNITS
    fitted = nica.load(tmp_path / "out" / "checkpoint")
    # The best validation NLL is that of x's units: 2 log(1000) nats above the unscaled data's.
    assert _fit(path, tmp_path / "plain") == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert metrics["best_val_nll"] - plain["best_val_nll"] == pytest.approx(
        2 * np.log(1000.0), abs=1e-3
    )
    assert fitted.log_scale - nica.load(tmp_path / "plain" / "checkpoint").log_scale == (
        pytest.approx(2 * np.log(1000.0))
    )


def test_outputs_record_versions_platform_device_and_commit(tiny, tmp_path, capsys):
    path, _ = tiny
    assert _fit(path, tmp_path / "out") == 0
    for name in ("config.json", "metrics.json"):
        env = json.loads((tmp_path / "out" / name).read_text())["environment"]
        assert set(PACKAGES) <= env["versions"].keys()
        assert env["versions"]["jax"] == version("jax") and env["device"].startswith("cpu")
        assert env["platform"] and env["python"]
        if (ROOT / ".git").exists():
            assert len(env["git_commit"].split("+")[0]) == 40
    assert "jax " + version("jax") in describe(environment())


def test_version_licence_citation_and_changelog():
    assert nica.__version__ == version("nica")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT")
    assert f"version: {nica.__version__}" in (ROOT / "CITATION.cff").read_text()
    assert f"## {nica.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def _silences(argv: list[str], cwd: Path) -> tuple[float, str, int]:
    """Runs ``nica`` with stderr on a pseudo-terminal; returns the longest gap between two
    writes after the first, the text and the exit status."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a size
    env = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nica.apps.cli", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        cwd=cwd,
        env=env,
    )
    os.close(follower)
    stamps, chunks = [], []
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        stamps.append(time.monotonic())
        chunks.append(chunk)
    os.close(leader)
    status = process.wait(timeout=60)
    gaps = np.diff(stamps)
    if os.environ.get("NICA_DEBUG_GAPS"):
        for i in np.argsort(gaps)[-5:]:
            print(gaps[i], repr(chunks[i][-150:]), repr(chunks[i + 1][:150]))
    return float(gaps.max()) if gaps.size else 0.0, b"".join(chunks).decode(), status


def test_a_terminal_never_waits_long_for_a_sign_of_life(tiny, tmp_path):
    """The bars redraw every HEARTBEAT_S seconds, also while XLA compiles (issue 24 asks for
    no silence above 5 s in a default fit; the compile of the first epoch took 15 s)."""
    path, _ = tiny
    argv = ["fit", "--data", str(path), "--out", str(tmp_path / "o"), "--epochs", "2"]
    longest, text, status = _silences([*argv, "--depth", "2", "--restarts", "2"], tmp_path)
    assert status == 0, text
    assert "compiling the training program" in text and "main fit" in text
    assert longest < 3.0, (longest, text[-2000:])


def test_the_library_shows_progress_where_a_person_watches(tiny, monkeypatch, capsys):
    _, data = tiny
    fast = {"epochs": 2, "depth": 2, "restarts": 2}
    nica.fit(data.x, data.u, **fast)  # stderr is not a terminal here: silent
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # capsys's stderr, as a terminal
    nica.fit(data.x, data.u, **fast)
    err = capsys.readouterr().err
    assert "u read as 5 segment labels" in err and "preparing" in err
    assert "restarts" in err and "main fit" in err and "val NLL" in err
    nica.fit(data.x, data.u, progress=None, **fast)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress must be 'auto', None or a callable"):
        nica.fit(data.x, data.u, progress="bars", **fast)
