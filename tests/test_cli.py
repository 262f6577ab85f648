"""The ``nica`` command: happy path, checkpoint reload, determinism, every bad-input case,
output-folder safety, help texts, progress bars and Ctrl-C."""

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import nica
import nica.apps.experiment
from nica.apps import cli
from nica.apps.cli import main
from nica.core.conditional import CONDITIONAL_FAMILIES
from nica.core.priors import PRIORS
from nica.util.progress import CellBar, PhaseBars, progress_enabled
from synthetic import make_preset

FAST = ["--epochs", "3", "--depth", "2"]
FASTEST = ["--epochs", "1", "--depth", "2", "--restarts", "1"]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    make_preset("tiny", 0).save(path)
    return path


@pytest.fixture
def x_only_file(tiny_file, tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.load(tiny_file)["x"])
    return path


@pytest.fixture
def no_fit(monkeypatch):
    """Makes ``nica.fit`` fail the test if the command gets as far as training."""

    def fit(*args, **kwargs):
        raise AssertionError("nica.fit was called")

    monkeypatch.setattr(nica, "fit", fit)


def _fit(data, out, *extra, fast=FAST):
    return main(["fit", "--data", str(data), "--out", str(out), *fast, *extra])


def _one_line_error(capsys, code, message, status=2):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == status
    assert len(err) == 1 and err[0].startswith("nica: error:"), err
    assert message in err[0]


def test_fit_writes_every_output_and_transform_reloads(tiny_file, tmp_path, capsys):
    out = tmp_path / "fit"
    assert (
        _fit(tiny_file, out, "--seed", "1", "--batch-size", "64", "--learning-rate", "0.005") == 0
    )
    err = capsys.readouterr().err.splitlines()  # not a terminal: one line at start, one at end
    assert len(err) == 2, err
    assert err[0].startswith("nica fit: conditional model")
    assert "8 initialisations" in err[0] and "3 epochs" in err[0]
    assert err[1].startswith("nica fit: done in") and "MCC" in err[1] and str(out) in err[1]
    for name in ("config.json", "metrics.json", "recovered.npz", "scatter.png"):
        assert (out / name).is_file(), name
    assert (out / "training_curve.png").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "conditional" and config["seed"] == 1 and config["depth"] == 2
    assert config["prior"] == "gennorm" and config["gradient"] == "relative_coords"
    assert config["batch_size"] == 64 and config["learning_rate"] == 0.005
    # Every resolved value: all FitConfig settings, the absolute data path, shape, aux, version.
    assert nica.FitConfig().to_dict().keys() <= config.keys()
    assert config["restart_epochs"] == 1  # resolved: a twelfth of 3 epochs, at least 1
    assert Path(config["data"]).is_absolute() and Path(config["data"]) == tiny_file.resolve()
    assert (config["n_samples"], config["dim"]) == np.load(tiny_file)["x"].shape
    assert config["aux"]["kind"] == "segments" and config["nica_version"] == cli.version()
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_nll", "val_nll", "wall_s", "epochs_run", "mcc_pearson", "mcc_spearman"):
        assert np.isfinite(metrics[key]), key
    assert 0 < metrics["mcc_pearson"] <= 1 and metrics["epochs_run"] == 3
    # The default conditional prior learns one exponent per component, Laplace (1) to Gaussian (2).
    shape = metrics["prior_shape"]
    assert len(shape) == config["dim"] and all(1 <= b <= 2 for b in shape), shape
    # A synthetic file carries its mixing: the held-out NLL gap to the true model is reported.
    assert metrics["nll_gap"] == pytest.approx(metrics["test_nll"] - metrics["true_nll"])
    assert metrics["train_gap"] == pytest.approx(metrics["train_nll"] - metrics["true_train_nll"])
    assert f"(on the training data {metrics['train_gap']:.3f})" in err[1]
    assert "NLL gap to the true model" in err[1]
    restarts = metrics["restarts"]  # the default tries 8 initialisations and keeps the best
    assert len(restarts["val_nll"]) == nica.FitConfig().to_dict()["restarts"] == 8
    assert restarts["val_nll"][restarts["chosen"]] == min(restarts["val_nll"])
    x = np.load(tiny_file)["x"]
    s_hat = np.load(out / "recovered.npz")["s_hat"]
    assert s_hat.shape == x.shape
    # The checkpoint reproduces the recovered sources on the same data.
    assert main(["transform", "--checkpoint", str(out / "checkpoint"), "--data", str(tiny_file),
                 "--out", str(tmp_path / "t.npz")]) == 0  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "t.npz")["s_hat"], s_hat, rtol=1e-6, atol=1e-6)


def test_unconditional_flag_and_data_without_u(tiny_file, x_only_file, tmp_path):
    fast = ["--epochs", "2", "--depth", "2", "--restarts", "1"]
    assert _fit(tiny_file, tmp_path / "a", "--unconditional", "--prior", "logistic", fast=fast) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"] == "unconditional"
    assert _fit(x_only_file, tmp_path / "b", "--gradient", "ordinary", fast=fast) == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["model"] == "unconditional" and config["aux"] is None
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "mcc_pearson" not in metrics and not (tmp_path / "b" / "scatter.png").exists()
    assert config["prior"] == "laplace" and metrics["prior_shape"] is None  # fixed shape


def test_same_seed_gives_bit_identical_recovered_file(tiny_file, tmp_path):
    fast = ["--epochs", "2", "--depth", "2", "--restarts", "2"]  # the restart choice included
    assert _fit(tiny_file, tmp_path / "a", fast=fast) == 0
    assert _fit(tiny_file, tmp_path / "b", fast=fast) == 0
    assert (tmp_path / "a/recovered.npz").read_bytes() == (
        tmp_path / "b/recovered.npz"
    ).read_bytes()
    assert _fit(tiny_file, tmp_path / "c", "--seed", "5", fast=fast) == 0
    assert (tmp_path / "a/recovered.npz").read_bytes() != (
        tmp_path / "c/recovered.npz"
    ).read_bytes()


def _bad_files(tmp_path, tiny_file):
    data = dict(np.load(tiny_file))
    x, u, s = data["x"], data["u"], data["s"]
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    inf_x = x.copy()
    inf_x[7, 0] = -np.inf
    cases = {
        "not-npz": (b"hello, not an archive", "cannot read as .npz"),
        "no-x": ({"u": u}, "no 'x' array"),
        "x-1d": ({"x": x[:, 0]}, "'x' must be 2-D"),
        "x-empty": ({"x": x[:0]}, "'x' is empty"),
        "x-nan": ({"x": nan_x}, "'x' contains NaN or Inf"),
        "x-inf": ({"x": inf_x}, "'x' contains NaN or Inf"),
        "x-text": ({"x": np.array([["a", "b"], ["c", "d"]])}, "'x' must be numeric"),
        "u-length": ({"x": x, "u": u[:-3]}, "'u' must have shape"),
        "u-nan": ({"x": x, "u": np.where(np.arange(len(u)) == 2, np.nan, u * 1.0)}, "'u' contains"),
        "u-float-labels": ({"x": x, "u": u + 0.5}, "segment labels must be whole numbers"),
        "s-shape": ({"x": x, "u": u, "s": s[:, :1]}, "'s' must have the shape"),
    }
    paths = {}
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.npz"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            np.savez(path, **content)
        paths[name] = (path, message)
    return paths


BAD_FILE_CASES = [
    "not-npz", "no-x", "x-1d", "x-empty", "x-nan", "x-inf", "x-text", "u-length", "u-nan",
    "u-float-labels", "s-shape",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_bad_files_get_one_clear_line(case, tiny_file, tmp_path, capsys):
    path, message = _bad_files(tmp_path, tiny_file)[case]
    capsys.readouterr()
    _one_line_error(capsys, _fit(path, tmp_path / "out"), message)


BAD_FLAGS = {
    "missing-file": (["--data", "{missing}"], "no such file"),
    "unknown-prior": (["--prior", "cauchy"], "unknown conditional prior 'cauchy'"),
    "conditional-logistic": (["--prior", "logistic"], "unknown conditional prior 'logistic'"),
    "unconditional-prior": (
        ["--unconditional", "--prior", "cauchy"],
        "unknown unconditional prior 'cauchy'",
    ),
    "unknown-gradient": (["--gradient", "natural"], "invalid choice: 'natural'"),
    "autodiff-gradient": (["--gradient", "autodiff"], "invalid choice: 'autodiff'"),
    "non-numeric-epochs": (["--epochs", "ten"], "invalid int value: 'ten'"),
    "non-numeric-seed": (["--seed", "1.5"], "invalid int value: '1.5'"),
    "non-numeric-learning-rate": (["--learning-rate", "fast"], "invalid float value: 'fast'"),
    "zero-depth": (["--depth", "0"], "depth must be >= 1"),
    "zero-depth-in-search": (["--depth", "4,0"], "depths to search must be integers >= 1"),
    "non-numeric-depth": (["--depth", "4,five"], "invalid depth value: '4,five'"),
    "zero-restarts": (["--restarts", "0"], "restarts must be >= 1"),
    "zero-restart-epochs": (["--restart-epochs", "0"], "restart_epochs must be >= 1"),
    "unknown-warm-start": (["--warm-start", "deep"], "invalid choice: 'deep'"),
    "zero-batch-size": (["--batch-size", "0"], "batch_size must be >= 1"),
    "negative-learning-rate": (["--learning-rate", "-1"], "learning_rate"),
    "unknown-flag": (["--frobnicate"], "unrecognized arguments: --frobnicate"),
}


@pytest.mark.parametrize("case", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_get_one_clear_line(case, tiny_file, tmp_path, capsys, no_fit):
    flags, message = case
    flags = [f.format(missing=tmp_path / "missing.npz") for f in flags]
    argv = ["fit", "--data", str(tiny_file), "--out", str(tmp_path / "o"), *FAST, *flags]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits on its own errors
        code = exit_.code
    _one_line_error(capsys, code, message)
    assert not (tmp_path / "o").exists()  # refused before the output folder was made


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping


def test_fit_help_shows_every_default_and_the_priors_each_model_takes(capsys):
    text = _help(capsys, "fit")
    defaults = nica.FitConfig().to_dict()  # the flat settings
    for option, field in [("--seed", "seed"), ("--epochs", "epochs"), ("--depth", "depth"),
                          ("--prior", "prior"), ("--gradient", "gradient"),
                          ("--restarts", "restarts"), ("--batch-size", "batch_size"),
                          ("--learning-rate", "learning_rate")]:  # fmt: skip
        metavar, rest = text.split("options:")[1].split(f"{option} ", 1)[1].split(" ", 1)
        help_text, default = rest.split("(default: ", 1)
        assert metavar.isupper() and len(help_text.split()) >= 2, option
        assert default.startswith(f"{defaults[field]})"), option
    for flag in ("--unconditional", "--quiet", "--force"):
        assert flag in text
    conditional = text.split("the conditional model (u given)")[1].split(";")[0]
    assert (
        all(name in conditional for name in CONDITIONAL_FAMILIES) and "logistic" not in conditional
    )
    unconditional = text.split("the unconditional one")[1].split(";")[0]
    assert all(name in unconditional for name in PRIORS)
    # Every option has a help text; the gradient choices come from the registry.
    fit_parser = cli.build_parser()._subparsers._group_actions[0].choices["fit"]
    for action in fit_parser._actions:
        assert action.help and action.help.strip(), action.dest
    (gradient,) = [a for a in fit_parser._actions if a.dest == "gradient"]
    assert list(gradient.choices) == ["auto", *(g for g in nica.GRADIENTS if g != "autodiff")]


def test_run_help_lists_configs_and_default_out(capsys):
    text = _help(capsys, "run")
    for name, config in nica.apps.experiment.EXPERIMENTS.items():
        assert f" {name} " in text, name
        assert " ".join(config.description.split())[:40] in text, name
    assert "(default: runs/CONFIG" in text and "--out results/CONFIG" in text
    assert "(default: demo)" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"nica {cli.version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", cli.version())


def test_unwritable_out_is_refused_before_training(tiny_file, tmp_path, capsys, no_fit):
    blocker = tmp_path / "file.txt"  # a regular file: no folder can be made under it, even by root
    blocker.write_text("not a folder")
    _one_line_error(capsys, _fit(tiny_file, blocker / "sub"), "cannot write there")
    _one_line_error(capsys, _fit(tiny_file, blocker), "cannot write there")
    assert blocker.read_text() == "not a folder"


def test_reused_out_is_refused_and_force_clears_the_earlier_fit(
    tiny_file, x_only_file, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "fit"
    assert _fit(tiny_file, out, fast=FASTEST) == 0
    (out / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert out / "scatter.png" in before
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(nica, "fit", lambda *a, **k: pytest.fail("trained into a used folder"))
        _one_line_error(capsys, _fit(x_only_file, out, fast=FASTEST), "pass --force")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # --force replaces the earlier fit: its scatter.png (x-only data make none) is gone.
    assert _fit(x_only_file, out, "--force", fast=FASTEST) == 0
    assert not (out / "scatter.png").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not an output of a fit: kept
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == str(x_only_file.resolve()) and config["model"] == "unconditional"
    assert not list(out.rglob("*.tmp")) and not list(out.glob(".nica-write-probe*"))


def test_transform_to_an_existing_folder_is_refused(tiny_file, tmp_path, capsys):
    assert _fit(tiny_file, tmp_path / "fit", fast=FASTEST) == 0
    target = tmp_path / "target"
    target.mkdir()
    capsys.readouterr()
    argv = ["transform", "--checkpoint", str(tmp_path / "fit" / "checkpoint")]
    code = main([*argv, "--data", str(tiny_file), "--out", str(target)])
    _one_line_error(capsys, code, "is a folder")
    code = main([*argv, "--data", str(tiny_file), "--out", str(tmp_path / "nowhere" / "s.npz")])
    _one_line_error(capsys, code, "does not exist")
    assert not list(tmp_path.rglob("*.tmp")) and not list(target.iterdir())


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_during_fit_keeps_nothing_and_exits_130(tiny_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nica, "fit", _interrupt)
    out = tmp_path / "new"
    assert _fit(tiny_file, out) == 130
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err), err  # the start line, then one
    assert err[1] == f"nica: interrupted: the fit was stopped; nothing was written to {out}"
    assert not out.exists()  # the folder it had made is gone again
    # An earlier fit in --out is left intact by an interrupted --force run.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "scatter.png").write_bytes(b"old figure")
    assert _fit(tiny_file, earlier, "--force") == 130
    assert (earlier / "scatter.png").read_bytes() == b"old figure"


def test_ctrl_c_during_run_says_the_cells_are_kept(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nica.apps.experiment, "run_experiment", _interrupt)
    assert main(["run", "demo", "--smoke", "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err), err
    assert err[1].startswith("nica: interrupted: the finished cells in")
    assert str(tmp_path / "r" / "cells") in err[1] and "resume" in err[1]


@pytest.mark.parametrize(
    ("terminal", "quiet", "bars"),
    [(True, True, False), (True, False, True)],  # not a terminal: see the first test
    ids=["quiet", "tty"],
)
def test_fit_progress_bars_only_on_a_terminal(
    terminal, quiet, bars, tiny_file, tmp_path, capsys, monkeypatch
):
    if terminal:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    extra = ["--quiet"] if quiet else []
    fast = ["--epochs", "2", "--depth", "2", "--restarts", "2"]
    assert _fit(tiny_file, tmp_path / "o", *extra, fast=fast) == 0
    err = capsys.readouterr().err
    assert not re.search(r"\bnan\b", err.lower())
    assert err.splitlines()[0].startswith("nica fit: conditional")
    assert err.rstrip().splitlines()[-1].startswith("nica fit: done in")
    shown = re.findall(r"(restarts|main fit):\s+\d+%\|", err)
    if bars:
        assert {"restarts", "main fit"} <= set(shown), err
        assert "2/2" in err and "val NLL" in err and "<" in err  # progress, postfix, ETA
    else:
        assert not shown and len(err.splitlines()) == 2, err


def _events(*events):
    return [nica.ProgressEvent(*e) for e in events]


def test_phase_bars_show_each_phase_with_its_validation_nll():
    stream = io.StringIO()
    bars = PhaseBars(file=stream)
    for event in _events(("restarts", 0, 3, 0.0, None), ("restarts", 3, 3, 1.0, 1.23456),
                         ("fit", 0, 4, 1.0, None), ("fit", 2, 4, 2.0, float("nan")),
                         ("fit", 4, 4, 3.0, 0.5)):  # fmt: skip
        bars(event)
    bars.close()
    bars.close()  # idempotent
    text = stream.getvalue()
    assert "restarts: 100%" in text and "3/3" in text and "val NLL 1.2346" in text
    assert "main fit: 100%" in text and "4/4" in text and "val NLL 0.5000" in text
    assert not re.search(r"\bnan\b", text.lower())


def test_cell_bar_counts_cells_and_names_the_last():
    stream = io.StringIO()
    bar = CellBar(file=stream)
    bar(0, 4, "demo / conditional")
    bar(3, 4, "demo / unconditional")
    bar.close()
    text = stream.getvalue()
    assert "cells:  75%" in text and "3/4" in text and "demo / unconditional" in text


def test_progress_enabled_needs_a_terminal_and_no_quiet():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert progress_enabled(stream=Terminal())
    assert not progress_enabled(quiet=True, stream=Terminal())
    assert not progress_enabled(stream=io.StringIO())


def test_run_wires_bars_passes_its_options_and_prints_the_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out, runs/NAME, is relative
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # capsys's stderr, as a terminal
    calls = []

    def run_experiment(name, **kwargs):
        calls.append((name, kwargs))
        out = Path(kwargs["out"] or nica.apps.experiment.default_out(name, smoke=kwargs["smoke"]))
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(f"# {name} report\n")
        if kwargs["on_cell"] is not None:
            kwargs["on_cell"](0, 2, "")
            kwargs["progress"](nica.ProgressEvent("fit", 0, 2, 0.0, None))
            kwargs["progress"](nica.ProgressEvent("fit", 2, 2, 1.0, 0.75))
            kwargs["on_cell"](2, 2, "demo / unconditional")
        print("  a finished cell", file=kwargs["log"], flush=True)
        return [{"setting": "s", "model": "m", "pending": 1 if name == "icebeem" else 0}]

    monkeypatch.setattr(nica.apps.experiment, "run_experiment", run_experiment)
    argv = ["run", "ivae", "--out", "r", "--seeds", "3", "1", "--force", "--sequential"]
    assert main(argv) == 0
    ((name, kwargs),) = calls
    assert name == "ivae" and kwargs["out"] == "r" and kwargs["seeds"] == [3, 1]
    assert kwargs["force"] and not kwargs["vmap"] and not kwargs["smoke"]
    captured = capsys.readouterr()
    assert captured.out == "# ivae report\n"  # the report goes to stdout
    err = captured.err
    assert "cells: 100%" in err and "2/2" in err and "val NLL 0.7500" in err
    assert "  a finished cell" in err  # log lines are printed above the bars
    # --quiet: no bars, no log lines; the default --out of the harness.
    assert main(["run", "ivae", "--quiet"]) == 0
    assert calls[-1][1]["progress"] is None and calls[-1][1]["on_cell"] is None
    assert calls[-1][1]["out"] is None
    captured = capsys.readouterr()
    assert captured.out == "# ivae report\n"
    err = captured.err.splitlines()
    assert len(err) == 2 and "runs/ivae" in err[0] and "runs/ivae" in err[1], err
    # Cells still running in another process: no report yet, and none is printed.
    assert main(["run", "icebeem", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no report yet" in captured.err


@pytest.mark.parametrize(
    ("text", "want"), [("auto", "auto"), ("4", 4), ("4,5", [4, 5]), ("7,", None)]
)
def test_depth_flag_reads_auto_an_integer_or_the_depths_to_search(text, want, tmp_path):
    from nica.apps.cli.parser import build_parser

    argv = ["fit", "--data", "x.npz", "--out", str(tmp_path), "--depth", text]
    if want is None:  # "7," is not a list of integers
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
        return
    depth = build_parser().parse_args(argv).depth
    assert depth == want
    assert nica.FitConfig.from_flat({"depth": depth}).flat()["depth"] == want
