"""The GPU suite's orchestration (experiments.gpu_suite) on stub parts: each part runs in its
own process, a failing or slow part is recorded and never stops the others, and the suite
never starts JAX itself (a child must find the GPU's memory free)."""

import json
import subprocess
import sys
import textwrap

import pytest

from experiments import gpu_suite
from experiments.gpu_suite import Part

STUBS = {
    "writes": """
        import sys, pathlib
        out = pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("# stub " + " ".join(sys.argv[1:]))
        print("wrote the stub report")
    """,
    "fails": """
        import sys
        print("stub failure: no GPU memory left", file=sys.stderr)
        sys.exit(3)
    """,
    "sleeps": """
        import time
        print("started", flush=True)
        time.sleep(60)
    """,
}


@pytest.fixture
def stubs(tmp_path, monkeypatch):
    package = tmp_path / "stubs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, code in STUBS.items():
        (package / f"{name}.py").write_text(textwrap.dedent(code))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


def test_parts_run_in_order_and_each_ending_is_recorded(stubs, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "device_info", lambda python: {"error": "not asked"})
    parts = [
        Part("slow", "stubs.sleeps", (), 1.0, "sleeps past its limit"),
        Part("broken", "stubs.fails", (), 30, "exits with status 3"),
        Part("good", "stubs.writes", ("--flag", "x"), 30, "writes a report"),
    ]
    out = tmp_path / "gpu"
    suite = gpu_suite.run_suite(parts, out)
    slow, broken, good = suite["parts"]
    assert slow["status"] == "stopped at its time limit" and slow["seconds"] < 30
    assert broken["status"] == "failed (exit status 3)"
    assert broken["output_tail"] == ["stub failure: no GPU memory left"]
    assert good["status"] == "done" and good["files"] == ["report.md"]
    assert (out / "good" / "report.md").read_text() == f"# stub --out {out / 'good'} --flag x"
    assert json.loads((out / "suite.json").read_text()) == suite
    report = (out / "report.md").read_text()
    assert "Device: not asked" in report
    assert "| good | writes a report | done |" in report and "[good/report.md]" in report
    assert "| slow | sleeps past its limit | stopped at its time limit |" in report


def test_the_device_is_read_by_a_child_process(monkeypatch):
    # The child's answer is passed on as it is; a child that fails or cannot start is an
    # error entry, never an exception (the suite runs on). The real device code runs in the
    # next test's child, which imports JAX anyway.
    answer = {"backend": "gpu", "device": "stub", "devices": 1, "jax": "0"}
    monkeypatch.setattr(gpu_suite, "_DEVICE_CODE", f"print({json.dumps(answer)!r})")
    assert gpu_suite.device_info() == answer
    monkeypatch.setattr(gpu_suite, "_DEVICE_CODE", "import sys; sys.exit('no device here')")
    assert gpu_suite.device_info() == {"error": "no device here"}
    assert "could not start" in gpu_suite.device_info(python=sys.executable + "-missing-x")["error"]


def test_importing_the_suite_starts_no_jax_backend_and_its_device_code_runs():
    code = (
        "import experiments.gpu_suite as suite; from jax._src import xla_bridge;"
        " print(bool(xla_bridge._backends)); exec(suite._DEVICE_CODE)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    started, device = done.stdout.strip().splitlines()
    assert started == "False"
    device = json.loads(device)
    assert device["backend"] == "cpu" and device["devices"] >= 1 and device["jax"]


def test_the_gpu_parts_fit_in_eight_minutes_and_smoke_mirrors_them():
    assert sum(p.limit_s for p in gpu_suite.PARTS) <= 470
    assert [p.name for p in gpu_suite.SMOKE_PARTS] == [p.name for p in gpu_suite.PARTS]
    assert [p.module for p in gpu_suite.SMOKE_PARTS] == [p.module for p in gpu_suite.PARTS]
