"""The ``nica`` command: happy path, checkpoint reload, determinism, every bad-input case."""

import json

import numpy as np
import pytest

from nica.cli import main
from synthetic import make_preset

FAST = ["--epochs", "3", "--depth", "2"]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    make_preset("tiny", 0).save(path)
    return path


def _fit(data, out, *extra):
    return main(["fit", "--data", str(data), "--out", str(out), *FAST, *extra])


def test_fit_writes_every_output_and_transform_reloads(tiny_file, tmp_path, capsys):
    out = tmp_path / "fit"
    assert _fit(tiny_file, out, "--seed", "1") == 0
    assert "epoch" in capsys.readouterr().err  # progress is shown
    for name in ("config.json", "metrics.json", "recovered.npz", "scatter.png"):
        assert (out / name).is_file(), name
    assert (out / "training_curve.png").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "conditional" and config["seed"] == 1 and config["depth"] == 2
    assert config["prior"] == "laplace" and config["gradient"] == "relative_coords"
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_nll", "val_nll", "wall_s", "epochs_run", "mcc_pearson", "mcc_spearman"):
        assert np.isfinite(metrics[key]), key
    assert 0 < metrics["mcc_pearson"] <= 1 and metrics["epochs_run"] == 3
    restarts = metrics["restarts"]  # the default tries 8 initialisations and keeps the best
    assert len(restarts["val_nll"]) == 8
    assert restarts["val_nll"][restarts["chosen"]] == min(restarts["val_nll"])
    x = np.load(tiny_file)["x"]
    s_hat = np.load(out / "recovered.npz")["s_hat"]
    assert s_hat.shape == x.shape
    # The checkpoint reproduces the recovered sources on the same data.
    assert main(["transform", "--checkpoint", str(out / "checkpoint"), "--data", str(tiny_file),
                 "--out", str(tmp_path / "t.npz")]) == 0  # fmt: skip
    np.testing.assert_allclose(np.load(tmp_path / "t.npz")["s_hat"], s_hat, rtol=1e-6, atol=1e-6)


def test_unconditional_flag_and_data_without_u(tiny_file, tmp_path):
    assert _fit(tiny_file, tmp_path / "a", "--unconditional", "--prior", "logistic") == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"] == "unconditional"
    x_only = tmp_path / "x.npz"
    np.savez(x_only, x=np.load(tiny_file)["x"])
    assert _fit(x_only, tmp_path / "b", "--gradient", "ordinary") == 0
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "mcc_pearson" not in metrics and not (tmp_path / "b" / "scatter.png").exists()


def test_same_seed_gives_bit_identical_recovered_file(tiny_file, tmp_path):
    assert _fit(tiny_file, tmp_path / "a") == 0
    assert _fit(tiny_file, tmp_path / "b") == 0
    assert (tmp_path / "a/recovered.npz").read_bytes() == (
        tmp_path / "b/recovered.npz"
    ).read_bytes()
    assert _fit(tiny_file, tmp_path / "c", "--seed", "5") == 0
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
        "u-float-labels": ({"x": x, "u": u + 0.5}, "labels u must be integers"),
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


def _one_line_error(capsys, code, message):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("nica: error:"), err
    assert message in err[0]


@pytest.mark.parametrize("case", BAD_FILE_CASES)
def test_bad_files_get_one_clear_line(case, tiny_file, tmp_path, capsys):
    path, message = _bad_files(tmp_path, tiny_file)[case]
    capsys.readouterr()
    _one_line_error(capsys, _fit(path, tmp_path / "out"), message)


BAD_FLAGS = {
    "missing-file": (["--data", "{missing}"], "no such file"),
    "unknown-prior": (["--prior", "cauchy"], "unknown conditional prior 'cauchy'"),
    "unknown-gradient": (["--gradient", "natural"], "invalid choice: 'natural'"),
    "non-numeric-epochs": (["--epochs", "ten"], "invalid int value: 'ten'"),
    "non-numeric-seed": (["--seed", "1.5"], "invalid int value: '1.5'"),
    "zero-depth": (["--depth", "0"], "depth must be >= 1"),
    "zero-restarts": (["--restarts", "0"], "restarts must be >= 1"),
    "unknown-flag": (["--frobnicate"], "unrecognized arguments: --frobnicate"),
}


@pytest.mark.parametrize("case", BAD_FLAGS.values(), ids=BAD_FLAGS.keys())
def test_bad_flags_get_one_clear_line(case, tiny_file, tmp_path, capsys):
    flags, message = case
    flags = [f.format(missing=tmp_path / "missing.npz") for f in flags]
    argv = ["fit", "--data", str(tiny_file), "--out", str(tmp_path / "o"), *FAST, *flags]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits on its own errors
        code = exit_.code
    _one_line_error(capsys, code, message)
